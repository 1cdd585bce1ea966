"""
### Weekly retraining of both tiers

Runs every Sunday at 03:00 UTC **or** when `drift_check` emits the drift Asset. Trains the Fast
and Elite tiers in parallel mapped tasks with `mlcore.training.train_tier`, applies the promotion
gate (a candidate becomes champion unless it is worse than the current one on the same holdout by
more than the margin), records the reason (`schedule`, `drift`, `manual`) and emits the champions Asset.

A drift-triggered run retrains the tiers named in the drift event, each weighting the outcomes
logged since its own drift began. Params override everything: `tiers`, `as_of` (default: the run's day),
`reason`, `since`.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task

from client_scoring.assets import CHAMPIONS, DRIFT
from client_scoring.wiring import default_args


@dag(
    dag_id="weekly_retrain",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * 0", timezone="UTC"), assets=DRIFT),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(execution_timeout=pendulum.duration(hours=2)),
    tags=["client-scoring", "training"],
    doc_md=__doc__,
    params={
        "tiers": Param(["fast", "elite"], type="array", items={"type": "string", "enum": ["fast", "elite"]}),
        "as_of": Param(None, type=["null", "string"], format="date", description="Default: the run's day"),
        "reason": Param(None, type=["null", "string"], enum=[None, "schedule", "drift", "manual"]),
        "since": Param(None, type=["null", "string"], format="date", description="Drift began (weights)"),
    },
)
def weekly_retrain():
    @task
    def resolve(params=None) -> list[dict]:
        """Decide tiers, as-of date, reason and drift start per tier (mlcore.drift.retrain_plan)."""
        from client_scoring.wiring import logical_day
        from mlcore.drift import retrain_plan

        context = get_current_context()
        events = [e.extra for evs in (context.get("triggering_asset_events") or {}).values() for e in evs]
        return retrain_plan(dict(params), events, str(getattr(context["dag_run"], "run_type", "")),
                            logical_day(context))

    @task(map_index_template="{{ task.op_kwargs['spec']['tier'] }}")
    def train(spec: dict) -> dict:
        import datetime as dt

        from client_scoring.wiring import engine, enforce, settings
        from mlcore.history_io import any_outcomes, any_transactions
        from mlcore.readiness import training_readiness
        from mlcore.training import train_tier

        s = settings()
        eng, as_of = engine(s), dt.date.fromisoformat(spec["as_of"])
        # A fresh install (no outcomes or transactions yet) is skipped, not failed; too few labels fail in train_tier.
        enforce(training_readiness(spec["tier"], as_of, any_outcomes(eng) or any_transactions(eng)))
        since = dt.date.fromisoformat(spec["since"]) if spec["since"] else None
        res = train_tier(eng, s, spec["tier"], as_of, spec["reason"], since=since)
        return {"tier": spec["tier"], "version": res.model.version, "promoted": res.promoted,
                "why": res.gate["why"], "reason": spec["reason"], "fit_seconds": round(res.fit_seconds, 1),
                "holdout": {t: res.metrics[t]["auc" if t != "clv" else "r2"]["value"] for t in res.metrics}}

    @task(outlets=[CHAMPIONS])
    def publish_champions(results: list[dict]) -> list[dict]:
        results = list(results[:])  # one slice read of the mapped results
        get_current_context()["outlet_events"][CHAMPIONS].extra = {"models": results}
        return results

    publish_champions(train.expand(spec=resolve()))


weekly_retrain()
