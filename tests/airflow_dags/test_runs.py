"""End-to-end DAG runs through real Airflow (dag.test on a migrated metadata DB) against the real Postgres."""
import datetime as dt

import pytest
import sqlalchemy as sa

from demo.replay import run_dag
from dagrun import run_once, states
from pg import count
from mlcore.config import Settings
from mlcore.ingest import ingest_file
from mlcore.training import train_tier


def load(engine, world, kinds=("notes", "concepts", "outcomes")):
    names = {"notes": "notes.csv", "concepts": "note_concepts.csv", "outcomes": "outcomes.csv"}
    for kind in kinds:
        ingest_file(engine, kind, world / names[kind])
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT max(date) FROM outcomes")).scalar_one()


def asset_events(uri, run=None):
    """The extras of the events of asset ``uri`` (only those emitted by ``run`` when given), oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.settings import Session
    with Session() as session:
        query = session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id) \
            .filter(AssetModel.uri == uri)
        if run is not None:
            query = query.filter(AssetEvent.source_run_id == run.run_id, AssetEvent.source_dag_id == run.dag_id)
        return [dict(e.extra or {}) for e in query.order_by(AssetEvent.id)]


def predictions(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT scored_for, tier, client_id, model_version, purchase_likelihood, churn_risk, predicted_clv "
            "FROM predictions ORDER BY tier, client_id"))]


def test_weekly_retrain_then_nightly_scoring(scoring_env, small_world):
    engine = scoring_env
    last = load(engine, small_world)
    run_dag("weekly_retrain", last, {"reason": "schedule", "tiers": ["elite"]})
    retrain = run_dag("weekly_retrain", last, {"reason": "manual"})     # default tiers: both, not the last run's
    with engine.connect() as conn:
        models = conn.execute(sa.text("SELECT tier, version, reason, status FROM model_versions "
                                      "ORDER BY tier, version")).all()
    assert [(m.tier, m.version, m.reason) for m in models] == [("elite", 1, "schedule"), ("elite", 2, "manual"),
                                                                ("fast", 1, "manual")]
    assert sorted(m.tier for m in models if m.status == "champion") == ["elite", "fast"]
    assert asset_events("client_scoring://models/champions", retrain)

    first = run_dag("nightly_elite_scoring", last, {"partitions": 3})
    with engine.connect() as conn:
        clients = conn.execute(sa.text("SELECT count(DISTINCT client_id) FROM notes WHERE date <= :d"),
                               {"d": last}).scalar_one()
    assert count(engine, "predictions") == clients > 1000
    three = predictions(engine)
    second = run_dag("nightly_elite_scoring", last, {"partitions": 1})      # a re-run replaces the day
    assert predictions(engine) == three          # 3 partitions give exactly the predictions of one
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT DISTINCT run_id FROM predictions")).scalars().all()
    assert count(engine, "predictions") == clients and runs == [second.run_id] != [first.run_id]
    assert count(engine, "prediction_batches") == 0
    [event] = asset_events("client_scoring://predictions/elite", second)
    assert event["rows"] == clients


def test_nightly_scoring_refuses_stale_inputs(scoring_env, small_world):
    engine = scoring_env
    last = load(engine, small_world)
    train_tier(engine, Settings.from_env(database_url=engine.url.render_as_string(False), n_bootstrap=20),
               "elite", as_of=last)
    with pytest.raises(RuntimeError, match="check_inputs"):
        run_dag("nightly_elite_scoring", last + dt.timedelta(days=40))
    assert count(engine, "predictions") == 0


def test_ingest_inbox_and_fast_scoring_on_upload(scoring_env, small_world, tmp_path, monkeypatch):
    engine = scoring_env
    last = load(engine, small_world)
    settings = Settings.from_env(database_url=engine.url.render_as_string(False), n_bootstrap=20)
    train_tier(engine, settings, "fast", as_of=last)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("CLIENT_SCORING_INBOX", str(inbox))
    day = last + dt.timedelta(days=1)
    (inbox / "notes_new.csv").write_text(f"note_id,client_id,date\nnew1,C0000001,{day}\nnew2,C0000002,{day}\n")
    (inbox / "note_concepts_new.csv").write_text("note_id,concept_id,start,end,confidence\n"
                                                 "new1,golf,0,4,0.9\nnew2,gift_birthday,3,16,1\n")
    (inbox / "outcomes_bad.csv").write_text("client_id,purchased,churned,lifetime_value,date\nC0000001,2,0,5,2025-01-01\n")
    run = run_once("ingest_inbox", day)          # the loads succeed; the rejected file fails the run after them
    assert states(run)["report_rejections"] == ["failed"] and states(run)["load_concepts"] == ["success"]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == [
        "note_concepts_new.csv", "note_concepts_new.csv.report.txt", "notes_new.csv", "notes_new.csv.report.txt"]
    report = (inbox / "rejected" / "outcomes_bad.csv.report.txt").read_text()
    assert "row 2, column 'purchased': expected 0 or 1, found '2'" in report
    assert not list(inbox.glob("*.csv")) and not list((inbox / "claimed").iterdir())
    [event] = asset_events("client_scoring://inputs/note_concepts", run)
    assert event["clients"] == ["C0000001", "C0000002"]
    assert not asset_events("client_scoring://inputs/outcomes", run)     # nothing loaded: no event

    run_dag("fast_scoring_on_upload", day, {"clients": event["clients"]})
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT client_id, tier FROM predictions WHERE scored_for = :d ORDER BY 1"),
                            {"d": day}).all()
    assert [tuple(r) for r in rows] == [("C0000001", "fast"), ("C0000002", "fast")]


def test_fast_scoring_before_the_first_fast_model_is_skipped_not_failed(scoring_env, tmp_path):
    engine = scoring_env                     # a fresh install: notes uploaded, no model trained yet
    day = dt.date(2025, 3, 1)
    notes = tmp_path / "notes_first.csv"
    notes.write_text(f"note_id,client_id,date\nn1,C0000001,{day}\nn2,C0000002,{day}\n")
    ingest_file(engine, "notes", notes)
    run = run_dag("fast_scoring_on_upload", day)           # the run succeeds: a skipped task is no failure
    assert [(ti.task_id, str(ti.state)) for ti in run.get_task_instances()] == [("score_upload", "skipped")]
    with engine.connect() as conn:
        failures = conn.execute(sa.text("SELECT count(*) FROM alerts WHERE kind = 'task_failure'")).scalar_one()
    assert failures == 0 and count(engine, "predictions") == 0


@pytest.mark.slow
def test_a_client_base_known_by_purchases_alone_is_trained_and_scored_on_schedule(scoring_env, tmp_path):
    """CDNOW sample, transactions only: the scheduled retrain derives its labels, the nightly run
    accepts fresh transactions as inputs and scores every customer; stale transactions still fail it; the drift
    check matures the scores served H days before from the transactions."""
    import pandas as pd
    from mlcore.datasets import write_cdnow
    engine = scoring_env
    sample = pd.read_csv(write_cdnow(tmp_path / "cdnow_sample.csv", "sample"), parse_dates=["date"])
    sample["date"] = (sample["date"] + pd.DateOffset(years=28)).dt.date    # after the DAGs' start_date
    sample.to_csv(tmp_path / "shifted.csv", index=False)
    ingest_file(engine, "transactions", tmp_path / "shifted.csv")
    with engine.connect() as conn:
        last = conn.execute(sa.text("SELECT max(date) FROM transactions")).scalar_one()
    retrain = run_once("weekly_retrain", last, {"reason": "schedule", "tiers": ["elite"]})
    assert states(retrain).get("train") == ["success"], states(retrain)
    nightly = run_once("nightly_elite_scoring", last, {"partitions": 2})
    assert str(nightly.state) == "success" and "skipped" not in str(states(nightly)), states(nightly)
    assert count(engine, "predictions") == 2357
    with pytest.raises(RuntimeError, match="check_inputs"):
        run_dag("nightly_elite_scoring", last + dt.timedelta(days=10))
    # The drift check matures what was served H days before from the transactions alone.
    served = run_once("nightly_elite_scoring", last - dt.timedelta(days=90), {"partitions": 1})
    assert str(served.state) == "success"
    assert states(run_once("drift_check", last))["check"] == ["success", "success"]
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT n, decision, diagnostics -> 'outcomes' AS src FROM drift_checks "
                                   "WHERE tier = 'elite' AND check_date = :d"), {"d": last}).one()
    assert row.n == row.src["transactions"]["derived"] == 2357 and row.src["outcome_log"] == 0
    assert row.decision in ("ok", "breach")
