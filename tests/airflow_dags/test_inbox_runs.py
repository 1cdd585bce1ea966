"""ingest_inbox through real Airflow runs: claiming the inbox, rejected files, the day an upload is scored for."""
import datetime as dt

import sqlalchemy as sa

from dagrun import asset_events, failure_alerts, run_once, run_triggered, states
from pg import count
from mlcore.config import Settings
from mlcore.ingest import ingest_file
from mlcore.training import train_tier

DAY = dt.date(2025, 3, 3)
NOTES_URI, CONCEPTS_URI = "client_scoring://inputs/notes", "client_scoring://inputs/note_concepts"


def notes(day, *ids):
    return "note_id,client_id,date\n" + "".join(f"{i},C{i},{day}\n" for i in ids)


def concepts(*ids):
    return "note_id,concept_id,start,end,confidence\n" + "".join(f"{i},golf,0,4,0.9\n" for i in ids)


def drop(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.csv").write_text(text)


def test_a_rejected_file_fails_the_run_after_the_good_files_are_loaded_and_announced(scoring_env, tmp_path):
    inbox = tmp_path / "inbox"
    drop(inbox, notes_good=notes(DAY, "n1", "n2"), note_concepts_good=concepts("n1"),
         notes_bad="note_id,client_id,date\nn9,C9,yesterday\n",
         outcomes_bad="client_id,purchased,churned,lifetime_value,date\nC1,2,0,5,2025-01-01\n",
         transactions_good="client_id,date,amount\nCn1,2025-03-01,120.50\nC7,2025-03-02,-20\n")
    run = run_once("ingest_inbox", DAY, {"inbox": str(inbox)})

    assert str(run.state) == "failed"
    assert states(run) == {"claim": ["success"], "load_notes": ["success"], "load_concepts": ["success"],
                           "load_outcomes": ["skipped"], "load_transactions": ["success"],
                           "report_rejections": ["failed"]}
    assert count(scoring_env, "notes") == 2 and count(scoring_env, "note_concepts") == 1
    [(_, notes_event)] = asset_events(NOTES_URI, run)              # the good files are announced
    assert notes_event["files"] == ["notes_good.csv"] and notes_event["rejected"] == ["notes_bad.csv"]
    assert len(asset_events(CONCEPTS_URI, run)) == 1
    assert count(scoring_env, "transactions") == 2
    [(_, sales_event)] = asset_events("client_scoring://inputs/transactions", run)
    assert sales_event["files"] == ["transactions_good.csv"] and sales_event["n_clients"] == 2
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == [
        "notes_bad.csv", "notes_bad.csv.report.txt", "outcomes_bad.csv", "outcomes_bad.csv.report.txt"]
    assert "transactions_good.csv" in {p.name for p in (inbox / "processed").iterdir()}
    [(key, title, payload)] = failure_alerts(scoring_env)
    assert key == f"task_failure:ingest_inbox:report_rejections:{run.run_id}"
    assert title == f"Task failed: ingest_inbox.report_rejections ({run.run_id})"
    for name in ("notes_bad.csv", "outcomes_bad.csv"):
        assert f"{name}: see {inbox / 'rejected' / name}.report.txt" in payload["error"]
    assert list((inbox / "claimed").iterdir()) == []               # the run's claimed folder is gone


def test_a_drop_landing_during_a_run_waits_whole_for_the_next_run(scoring_env, tmp_path, monkeypatch):
    import mlcore.ingest

    inbox = tmp_path / "inbox"
    drop(inbox, notes_a=notes(DAY, "a1"), note_concepts_a=concepts("a1"))
    read = mlcore.ingest._open

    def read_then_drop(kind, fh, source):      # the next drop lands while the run loads its first file
        if not (inbox / "notes_b.csv").exists() and "/processed/" not in source:
            drop(inbox, notes_b=notes(DAY, "b1"), note_concepts_b=concepts("b1"))
        return read(kind, fh, source)

    monkeypatch.setattr(mlcore.ingest, "_open", read_then_drop)
    first = run_once("ingest_inbox", DAY, {"inbox": str(inbox)})
    assert str(first.state) == "success"
    assert sorted(p.name for p in inbox.glob("*.csv")) == ["note_concepts_b.csv", "notes_b.csv"]   # not split
    assert not (inbox / "rejected").exists()
    assert count(scoring_env, "notes") == 1 and count(scoring_env, "note_concepts") == 1

    monkeypatch.setattr(mlcore.ingest, "_open", read)
    second = run_once("ingest_inbox", DAY + dt.timedelta(days=1), {"inbox": str(inbox)})
    assert str(second.state) == "success" and not list(inbox.glob("*.csv"))
    assert count(scoring_env, "notes") == 2 and count(scoring_env, "note_concepts") == 2
    [(_, extra)] = asset_events(CONCEPTS_URI, second)
    assert extra["files"] == ["note_concepts_b.csv"] and extra["clients"] == ["Cb1"]


def test_files_left_claimed_by_a_crashed_run_are_loaded_by_the_next(scoring_env, tmp_path):
    inbox = tmp_path / "inbox"
    drop(inbox / "claimed" / "scheduled__2025-03-03T05_45_00+00_00", notes_left=notes(DAY, "l1"))
    drop(inbox, note_concepts_new=concepts("l1"))
    run = run_once("ingest_inbox", DAY, {"inbox": str(inbox)})
    assert str(run.state) == "success"
    assert count(scoring_env, "notes") == 1 and count(scoring_env, "note_concepts") == 1
    assert sorted(p.name for p in (inbox / "processed").glob("*.csv")) == ["note_concepts_new.csv", "notes_left.csv"]
    assert list((inbox / "claimed").iterdir()) == []


def test_an_upload_is_scored_for_the_day_of_its_notes_not_the_day_it_arrived(scoring_env, small_world, tmp_path,
                                                                               monkeypatch):
    engine = scoring_env
    for kind, name in (("notes", "notes.csv"), ("concepts", "note_concepts.csv"), ("outcomes", "outcomes.csv")):
        ingest_file(engine, kind, small_world / name)
    with engine.connect() as conn:
        last = conn.execute(sa.text("SELECT max(date) FROM outcomes")).scalar_one()
    train_tier(engine, Settings.from_env(database_url=engine.url.render_as_string(False), n_bootstrap=20),
               "fast", as_of=last)
    backfill, arrived = last - dt.timedelta(days=20), last + dt.timedelta(days=10)
    inbox = tmp_path / "inbox"
    drop(inbox, notes_backfill="note_id,client_id,date\nbf1,C0000001,{0}\nbf2,C0000002,{1}\n".format(
        backfill, backfill - dt.timedelta(days=3)), note_concepts_backfill=concepts("bf1", "bf2"))
    ingest = run_once("ingest_inbox", arrived, {"inbox": str(inbox)})
    [(event_id, extra)] = asset_events(CONCEPTS_URI, ingest)
    assert extra["max_note_date"] == str(backfill) and extra["clients"] == ["C0000001", "C0000002"]

    run = run_triggered("fast_scoring_on_upload", [event_id],
                        dt.datetime.combine(arrived, dt.time(7), tzinfo=dt.timezone.utc), monkeypatch)
    assert str(run.state) == "success" and run.logical_date is None
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT scored_for, client_id, run_id FROM predictions ORDER BY 2")).all()
    assert [tuple(r) for r in rows] == [(backfill, "C0000001", run.run_id), (backfill, "C0000002", run.run_id)]
