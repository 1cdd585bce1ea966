"""A fresh install's scheduled runs are skipped with a reason, not failed; a live install's real problems still fail."""
import datetime as dt

from dagrun import failure_alerts, run_once, states
from mlcore.ingest import ingest_file

DAY = dt.date(2025, 3, 2)    # a Sunday: weekly_retrain's cron slot


def test_nightly_scoring_on_an_empty_database_is_skipped(scoring_env):
    run = run_once("nightly_elite_scoring", DAY)
    assert str(run.state) == "success"
    assert states(run)["check_inputs"] == ["skipped"]
    assert all(s == ["skipped"] for s in states(run).values())
    assert failure_alerts(scoring_env) == []


def test_nightly_scoring_with_notes_but_no_champion_yet_is_skipped(scoring_env, tmp_path):
    notes = tmp_path / "notes_first.csv"
    notes.write_text(f"note_id,client_id,date\nn1,C0000001,{DAY}\n")
    ingest_file(scoring_env, "notes", notes)
    run = run_once("nightly_elite_scoring", DAY)
    assert str(run.state) == "success" and states(run)["check_inputs"] == ["skipped"]
    assert failure_alerts(scoring_env) == []


def test_weekly_retrain_without_any_outcome_is_skipped(scoring_env):
    run = run_once("weekly_retrain", DAY, {"reason": "schedule"})
    assert str(run.state) == "success"
    assert states(run)["train"] == ["skipped", "skipped"]                # both tiers
    assert states(run)["publish_champions"] == ["skipped"]               # so no champions Asset event
    assert failure_alerts(scoring_env) == []


def test_weekly_retrain_with_too_few_outcomes_still_fails(scoring_env, tmp_path):
    outcomes = tmp_path / "outcomes_first.csv"
    outcomes.write_text(f"client_id,purchased,churned,lifetime_value,date\nC0000001,1,0,10,{DAY}\n")
    ingest_file(scoring_env, "outcomes", outcomes)
    run = run_once("weekly_retrain", DAY, {"reason": "schedule", "tiers": ["fast"]})
    assert str(run.state) == "failed" and states(run)["train"] == ["failed"]
    [(key, title, payload)] = failure_alerts(scoring_env)
    assert key == f"task_failure:weekly_retrain:train:{run.run_id}:0" and "training rows" in payload["error"]
