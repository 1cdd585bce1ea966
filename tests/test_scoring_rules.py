"""The scoring decision rules as plain functions: table-driven, no database."""
import datetime as dt

import pytest

from mlcore.scoring import upload_day, upload_skip_reason

DAY = dt.date(2025, 6, 1)


@pytest.mark.parametrize("champion, clients, expected", [
    (3, ["C1", "C2"], None),                                              # a champion and an upload: score
    (None, ["C1"], "no fast champion is registered yet"),                 # fresh install: skip, do not fail
    (None, [], "no fast champion is registered yet"),                     # the missing model is the news
    (3, [], "no uploaded clients to score for 2025-06-01"),
])
def test_an_upload_is_scored_only_with_a_champion_and_clients(champion, clients, expected):
    reason = upload_skip_reason("fast", champion, clients, DAY)
    assert reason == expected if expected is None else reason.startswith(expected)


def test_the_no_champion_reason_says_how_to_train_one():
    reason = upload_skip_reason("fast", None, ["C1"], DAY)
    assert "weekly_retrain" in reason and "`mlcore train --tier fast`" in reason and str(DAY) in reason


@pytest.mark.parametrize("extras, expected", [
    ([], DAY),                                                                    # a manual run: its logical day
    ([{"clients": ["C1"]}], DAY),                                                 # an event from before max_note_date
    ([{"max_note_date": "2025-03-14", "clients": ["C1"]}], dt.date(2025, 3, 14)),   # a backfill: its notes' day
    ([{"max_note_date": "2025-03-14"}, {"max_note_date": "2025-03-20"}, {}], dt.date(2025, 3, 20)),  # newest
    ([{"max_note_date": None}], DAY),
])
def test_an_upload_is_scored_for_the_day_of_its_newest_note(extras, expected):
    assert upload_day(extras, fallback=DAY) == expected


@pytest.mark.parametrize("requested, events, expected", [
    (["C9"], [{"clients": ["C2", "C1"]}], ["C1", "C2", "C9"]),   # the param and every event's clients
    ([], [{"clients": ["C3"]}, {}], ["C3"]),
    ([], [{"n_clients": 60_000}], ["C1", "C2"]),                 # too many to list: the day's notes
    ([], [], ["C1", "C2"]),                                      # a manual run without clients
])
def test_the_clients_an_upload_run_scores(engine, tmp_path, requested, events, expected):
    from mlcore.ingest import ingest_file
    from mlcore.scoring import upload_clients

    notes = tmp_path / "notes.csv"
    notes.write_text(f"note_id,client_id,date\nn1,C1,{DAY}\nn2,C2,{DAY}\nn3,C3,{DAY - dt.timedelta(days=1)}\n")
    ingest_file(engine, "notes", notes)
    assert upload_clients(engine, DAY, requested, events) == expected
