"""
### Drift check

Runs daily at 06:00 UTC **and** whenever new outcomes land (outcomes Asset). For each tier's
champion it matches the outcomes of the last `CLIENT_SCORING_DRIFT_WINDOW_DAYS` days with the
predictions made H days before them, computes live AUC, accuracy, Brier, CLV MAE and R² with
bootstrap intervals, compares them with the model's validation baseline and decides with an
anti-flapping rule (2 of the last 3 checks in breach opens an episode; 2 clean checks close it).
Too few matured outcomes is `insufficient_data`, never `ok`. Every check is a row in
`drift_checks`, with score PSI and concept-mix drift as diagnostics.

A new episode raises one alert (table `alerts`, e-mail and webhook); its retraining request
(the drift Asset, which schedules `weekly_retrain`) follows once labels since the drift exist,
at most once per cooldown.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, get_current_context, task

from client_scoring.assets import DRIFT, OUTCOMES
from client_scoring.wiring import default_args


@dag(
    dag_id="drift_check",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=OUTCOMES),
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
        from mlcore.drift import check_tier, retrain_since

        s = settings()
        eng = engine(s)
        result = check_tier(eng, s, tier, logical_day(get_current_context()), get_current_context()["run_id"])
        if result is None:
            return None
        out = {k: v for k, v in dataclasses.asdict(result).items() if k not in ("live", "baseline", "diagnostics")}
        out.update(check_date=str(result.check_date), wants_alert=result.wants_alert,
                   wants_retrain=result.wants_retrain, live_auc={t: result.live[t]["auc"]["value"]
                                                                 for t in ("purchase", "churn")} if result.live else {},
                   baseline_auc={t: result.baseline[t]["auc"]["value"] for t in ("purchase", "churn")})
        if result.wants_retrain:
            out["since"] = str(retrain_since(eng, result.episode_id, s.drift_window_days))
        return out

    @task
    def alert(results: list[dict | None]) -> list[int]:
        """One alert per new drift episode (repeats of the same episode are suppressed)."""
        from client_scoring.notifier import ClientScoringNotifier

        raised = []
        for r in filter(None, results[:]):  # one slice read, not an item-by-item walk past the end
            if r["wants_alert"]:
                ClientScoringNotifier(
                    kind="drift", tier=r["tier"], dedup_key=f"drift:{r['tier']}:{r['episode_id']}",
                    title=f"Drift: {r['tier']} v{r['model_version']} live AUC below its baseline on {r['check_date']}",
                    payload={k: r[k] for k in ("tier", "model_version", "check_date", "n", "decision", "action",
                                               "episode_id", "live_auc", "baseline_auc")},
                ).notify(get_current_context())
                raised.append(r["episode_id"])
        return raised

    @task(outlets=[DRIFT])
    def request_retrain(results: list[dict | None], alerted: list[int]) -> list[str]:
        """Emit the drift Asset (which schedules weekly_retrain) for tiers whose episode is due a retraining."""
        from airflow.sdk.exceptions import AirflowSkipException

        due = [r for r in filter(None, results[:]) if r["wants_retrain"]]
        if not due:
            raise AirflowSkipException("no tier is due a drift retraining")
        events = get_current_context()["outlet_events"][DRIFT]
        r = due[0]
        events.extra = {"tier": r["tier"], "as_of": r["check_date"], "since": r["since"],
                        "episode_id": r["episode_id"], "tiers": [d["tier"] for d in due]}
        return [d["tier"] for d in due]

    results = check.expand(tier=["elite", "fast"])
    request_retrain(results, alert(results))


drift_check()
