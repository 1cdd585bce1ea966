"""The inbox rules: which files a run claims and in what order, what it reports. Table-driven, no database."""
import datetime as dt

import pytest

from mlcore.inbox import (KindLoad, claim, claim_folder_name, event_extra, kind_of, plan_claim, rejection_message,
                          select)
from mlcore.ingest import LoadResult


@pytest.mark.parametrize("name, kind", [
    ("notes.csv", "notes"), ("notes_2025-06-01.csv", "notes"),
    ("note_concepts_x.csv", "concepts"), ("concepts.csv", "concepts"),
    ("outcomes_june.csv", "outcomes"), ("transactions_2025-06.csv", "transactions"),
    ("notes_x.csv.part", None),          # still being written under another name
    (".notes_x.csv", None), ("Notes.csv", None), ("notes.txt", None), ("notes_x.csv.report.txt", None),
    ("note_x.csv", None), ("clients.csv", None),
])
def test_kind_of(name, kind):
    assert kind_of(name) == kind


def test_select_orders_kinds_for_loading_and_files_by_name():
    names = ["outcomes_b.csv", "concepts_2.csv", "notes_b.csv", "readme.md", "note_concepts_1.csv", "notes_a.csv"]
    assert select(names) == {"notes": ["notes_a.csv", "notes_b.csv"],
                             "concepts": ["concepts_2.csv", "note_concepts_1.csv"],
                             "outcomes": ["outcomes_b.csv"], "transactions": []}
    assert select([]) == {"notes": [], "concepts": [], "outcomes": [], "transactions": []}


@pytest.mark.parametrize("waiting, leftovers, held, moves", [
    ([], [], [], []),
    (["notes_a.csv", "x.txt"], [], [], [(None, "notes_a.csv")]),                      # only input files
    (["notes_a.csv"], [("r1", ["concepts_a.csv"])], [],                                # leftovers first
     [("r1", "concepts_a.csv"), (None, "notes_a.csv")]),
    (["notes_a.csv"], [("r1", ["notes_a.csv"])], [], [("r1", "notes_a.csv")]),        # same name: older first,
    (["notes_a.csv"], [("r1", ["notes_a.csv"]), ("r2", ["notes_a.csv"])], [],          # newer waits for next run
     [("r1", "notes_a.csv")]),
    (["notes_a.csv", "notes_b.csv"], [], ["notes_a.csv"], [(None, "notes_b.csv")]),   # a retried claim
])
def test_plan_claim(waiting, leftovers, held, moves):
    assert plan_claim(waiting, leftovers, held) == moves


@pytest.mark.parametrize("run_id, folder", [
    ("scheduled__2025-06-01T00:15:00+00:00", "scheduled__2025-06-01T00_15_00+00_00"),
    ("manual__2025-06-01T06:00:00+00:00", "manual__2025-06-01T06_00_00+00_00"),
    ("a/../b", "a_.._b"),
])
def test_claim_folder_name(run_id, folder):
    assert claim_folder_name(run_id) == folder


def test_claim_moves_the_waiting_files_and_adopts_leftovers(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "claimed" / "old_run").mkdir(parents=True)
    (inbox / "claimed" / "old_run" / "concepts_old.csv").write_text("x")
    (inbox / "notes_new.csv").write_text("x")
    (inbox / "readme.txt").write_text("x")
    c = claim(inbox, "manual__2025-06-01T06:00:00+00:00")
    assert c.folder == inbox / "claimed" / "manual__2025-06-01T06_00_00+00_00"
    assert c.files == {"notes": ["notes_new.csv"], "concepts": ["concepts_old.csv"], "outcomes": [], "transactions": []}
    assert sorted(p.name for p in inbox.iterdir()) == ["claimed", "readme.txt"]
    assert [p.name for p in (inbox / "claimed").iterdir()] == [c.folder.name]      # the empty leftover is gone


def test_claim_of_a_missing_or_empty_inbox_creates_nothing(tmp_path):
    c = claim(tmp_path / "absent", "r1")
    assert not (tmp_path / "absent").exists() and c.files == {"notes": [], "concepts": [], "outcomes": [], "transactions": []}


def _result(name, clients, newest=None):
    return LoadResult("concepts", f"/inbox/claimed/r/{name}", 3, 3, "0" * 64, tuple(clients), newest)


@pytest.mark.parametrize("loaded, max_clients, expected", [
    ([_result("c1.csv", ["B", "A"], dt.date(2025, 5, 1)), _result("c2.csv", ["A"], dt.date(2025, 5, 3))], 10,
     {"files": ["c1.csv", "c2.csv"], "rejected": ["bad.csv"], "n_clients": 2, "clients": ["A", "B"],
      "max_note_date": "2025-05-03"}),
    ([_result("c1.csv", ["B", "A"], dt.date(2025, 5, 1))], 1,                        # too many clients to list
     {"files": ["c1.csv"], "rejected": ["bad.csv"], "n_clients": 2, "max_note_date": "2025-05-01"}),
    ([_result("o.csv", ["A"])], 10,                                                  # outcomes: no note date
     {"files": ["o.csv"], "rejected": ["bad.csv"], "n_clients": 1, "clients": ["A"]}),
])
def test_event_extra(loaded, max_clients, expected):
    load = KindLoad("concepts", tuple(loaded), ({"file": "bad.csv", "report": "/inbox/rejected/bad.csv.report.txt"},))
    assert event_extra(load, max_clients) == expected


def test_rejection_message_names_each_file_and_its_report():
    assert rejection_message([]) is None
    message = rejection_message([{"file": "notes_bad.csv", "report": "/in/rejected/notes_bad.csv.report.txt"},
                                 {"file": "outcomes_bad.csv", "report": "/in/rejected/outcomes_bad.csv.report.txt"}])
    assert message.startswith("2 inbox file(s) rejected")
    assert "- notes_bad.csv: see /in/rejected/notes_bad.csv.report.txt" in message
    assert "- outcomes_bad.csv: see /in/rejected/outcomes_bad.csv.report.txt" in message


@pytest.mark.parametrize("rejected, reason", [
    ((), "no notes files were claimed by this run"),
    (({"file": "notes_bad.csv", "report": "r"},), "every notes file was rejected: notes_bad.csv"),
])
def test_why_a_load_with_nothing_loaded_is_skipped(rejected, reason):
    assert KindLoad("notes", (), rejected).skip_reason().startswith(reason)
