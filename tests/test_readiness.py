"""Readiness rules: a fresh install skips, a live install's missing or stale inputs fail. Table-driven, no database."""
import datetime as dt

import pytest

from mlcore.readiness import FAIL, RUN, SKIP, Readiness, scoring_readiness, training_readiness

DAY = dt.date(2025, 6, 10)


@pytest.mark.parametrize("any_notes, newest, champion, expected, says", [
    (False, None, None, SKIP, "no notes or transactions are loaded yet"),           # fresh install: nothing at all
    (False, None, 3, SKIP, "no notes or transactions are loaded yet"),  # a model, no inputs (restored registry)
    (True, DAY, None, SKIP, "no elite champion is registered yet"),  # notes loaded, first model not trained
    (True, dt.date(2024, 1, 1), None, SKIP, "no elite champion"),   # history loaded, not trained: still fresh
    (True, None, 3, FAIL, "no notes or transactions dated on or before 2025-06-10"),  # notes exist, all after the day
    (True, dt.date(2025, 6, 6), 3, FAIL, "inputs are stale: the newest note or transaction is from 2025-06-06, 4 days"),
    (True, dt.date(2025, 6, 7), 3, RUN, None),                      # exactly max_staleness_days old
    (True, DAY, 3, RUN, None),
])
def test_scoring_readiness(any_notes, newest, champion, expected, says):
    r = scoring_readiness("elite", DAY, any_notes, newest, 3, champion)
    assert r.action == expected
    assert r.reason is None if says is None else r.reason.startswith(says)


def test_the_skip_reasons_say_what_to_do():
    no_notes = scoring_readiness("elite", DAY, False, None, 3, None).reason
    no_model = scoring_readiness("elite", DAY, True, DAY, 3, None).reason
    assert "ingest_inbox" in no_notes and "`mlcore ingest notes PATH`" in no_notes
    assert "`mlcore ingest transactions PATH`" in no_notes
    assert "weekly_retrain" in no_model and "`mlcore train --tier elite`" in no_model


@pytest.mark.parametrize("any_outcomes, expected", [
    (False, SKIP),           # fresh install: skipped; train_tier is not called
    (True, RUN),             # outcomes exist: train_tier runs, and fails if they are too few for a split
])
def test_training_readiness(any_outcomes, expected):
    r = training_readiness("fast", DAY, any_outcomes)
    assert r.action == expected
    assert (r.reason is None) == (expected == RUN)
    if r.reason:
        assert "no outcomes or transactions are loaded yet" in r.reason and "`mlcore ingest outcomes PATH`" in r.reason


@pytest.mark.parametrize("action, reason", [("go", None), (RUN, "why"), (SKIP, None), (FAIL, None)])
def test_a_decision_is_one_of_three_and_only_run_has_no_reason(action, reason):
    with pytest.raises(ValueError):
        Readiness(action, reason)
