"""
### Drift check

Runs daily at 06:00 UTC **and** whenever new outcomes or transactions land (their Assets). For each
tier it matches the outcomes of the last `CLIENT_SCORING_DRIFT_WINDOW_DAYS` days with the predictions
the tier **served** H days before them, whichever model version made each one, and compares the live
AUC (within each version, weighted by its share of the matches) with the validation AUC of those
same versions. A promotion never makes the check blind: it watches what was served.
Where transactions are loaded, the dates the outcome log does not cover mature from them: each
client's latest prediction served H days before the window gets the label policy's outcome (as
training derives it), no later than the newest transaction loaded.
Anti-flapping: 2 of the last 3 checks in breach opens an episode; 2 recovered checks
(every target's live AUC back within the tolerance of its baseline) close it. Too few
matured outcomes is `insufficient_data`, never `ok`.

For the predictions too young to have outcomes (the newest model's first H days) the check
**estimates** the AUC from the calibrated probabilities (CBPE) and compares it with the same
estimate on the validation window. An estimated drop raises one *warning* per episode, never a
retraining; a poorly calibrated model's estimate is shown but decides nothing.

A new realized episode raises one alert (table `alerts`, e-mail and webhook); its retraining
request (the drift Asset, which schedules `weekly_retrain`) follows once labels since the drift
exist, at most once per cooldown. `mlcore drift check --tier T --date D` runs the same check.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, get_current_context, task

from client_scoring.assets import DRIFT, OUTCOMES, TRANSACTIONS
from client_scoring.wiring import default_args


@dag(
    dag_id="drift_check",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=OUTCOMES | TRANSACTIONS),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["client-scoring", "monitoring", "drift"],
    doc_md=__doc__,
)
def drift_check():
    @task(map_index_template="{{ task.op_kwargs['tier'] }}")
    def check(tier: str) -> dict | None:
        import dataclasses

        from client_scoring.wiring import engine, logical_day, settings
        from mlcore.monitoring import alerts_for, check_tier, summary

        s = settings()
        context = get_current_context()
        result = check_tier(engine(s), s, tier, logical_day(context), context["run_id"])
        if result is None:
            return None
        return {**summary(result), "alerts": [dataclasses.asdict(a) for a in alerts_for(result)]}

    @task
    def alert(results: list[dict | None]) -> list[str]:
        """One alert per new drift episode and one warning per new estimated episode (repeats suppressed)."""
        from client_scoring.notifier import ClientScoringNotifier

        raised = []
        for r in filter(None, results[:]):  # one slice read, not an item-by-item walk past the end
            for a in r["alerts"]:
                ClientScoringNotifier(kind=a["kind"], tier=a["tier"], dedup_key=a["dedup_key"], title=a["title"],
                                      payload=a["payload"]).notify(get_current_context())
                raised.append(a["dedup_key"])
        return raised

    @task(outlets=[DRIFT])
    def request_retrain(results: list[dict | None], alerted: list[str]) -> list[str]:
        """Emit the drift Asset (which schedules weekly_retrain) for tiers whose episode is due a retraining."""
        from airflow.sdk.exceptions import AirflowSkipException

        from mlcore.drift import retrain_request

        due = [r for r in filter(None, results[:]) if r["wants_retrain"]]
        if not due:
            raise AirflowSkipException("no tier is due a drift retraining")
        get_current_context()["outlet_events"][DRIFT].extra = retrain_request(due)
        return [d["tier"] for d in due]

    results = check.expand(tier=["elite", "fast"])
    request_retrain(results, alert(results))


drift_check()
