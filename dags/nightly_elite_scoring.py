"""
### Nightly Elite scoring

Scores every client with notes as of the run's logical date with the **Elite** champion and
replaces that day's Elite slice of `predictions`.

1. `check_inputs` — notes exist and are fresh (newest note at most `max_staleness_days` old), a champion exists.
   On a fresh install (no notes loaded yet, or no Elite champion yet) the run is skipped with a
   reason, not failed; stale or missing notes on a live install fail it;
2. `plan_partitions` — splits the clients into `partitions` id ranges (a DAG param);
3. `score_partition` — one mapped task per range, staged in `prediction_batches` (re-runnable);
4. `publish` — one transaction replaces the day's slice with the staged rows;
5. `quality_checks` — one row per scored client, no nulls, values in range; emits the predictions Asset.

A re-run of a day replaces that day. Scale out by raising `partitions` and running workers
(CeleryExecutor or KubernetesExecutor); each mapped task opens its own database connections.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from client_scoring.assets import ELITE_PREDICTIONS
from client_scoring.wiring import default_args

TIER = "elite"


@dag(
    dag_id="nightly_elite_scoring",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["client-scoring", "scoring", "elite"],
    doc_md=__doc__,
    params={
        "partitions": Param(4, type="integer", minimum=1, maximum=256, description="Mapped scoring tasks"),
        "max_staleness_days": Param(3, type="integer", minimum=0, description="Newest note may be this old"),
    },
)
def nightly_elite_scoring():
    @task
    def check_inputs(params=None) -> dict:
        """Skip on a fresh install (no inputs or no champion yet); fail without fresh notes or transactions."""
        from client_scoring.wiring import engine, enforce, logical_day, settings
        from mlcore.readiness import scoring_readiness
        from mlcore.registry import Registry
        from mlcore.scoring import input_facts

        context = get_current_context()
        day = logical_day(context)
        s = settings()
        eng = engine(s)
        any_inputs, newest = input_facts(eng, day)
        champion = Registry(eng, s.model_store).champion(TIER)
        enforce(scoring_readiness(TIER, day, any_inputs, newest, params["max_staleness_days"],
                                  champion.version if champion else None))
        return {"scored_for": str(day), "model_version": champion.version, "run_id": context["run_id"]}

    @task
    def plan_partitions(info: dict, params=None) -> list[dict]:
        import datetime as dt

        from client_scoring.wiring import engine
        from mlcore.scoring import plan_partitions as plan

        parts = plan(engine(), dt.date.fromisoformat(info["scored_for"]), params["partitions"])
        return [{**p, **info} for p in parts]

    @task(map_index_template="{{ task.op_kwargs['part']['partition'] }}")
    def score_partition(part: dict) -> int:
        import datetime as dt

        from client_scoring.wiring import engine, settings
        from mlcore.scoring import score_partition as score

        s = settings()
        return score(engine(s), s, TIER, dt.date.fromisoformat(part["scored_for"]), part["run_id"], part,
                     part["model_version"])

    @task
    def publish(info: dict, parts: list[dict], counts: list[int]) -> int:
        import datetime as dt

        from client_scoring.wiring import engine
        from mlcore.scoring import publish as publish_run

        return publish_run(engine(), TIER, dt.date.fromisoformat(info["scored_for"]), info["run_id"], parts)

    @task(outlets=[ELITE_PREDICTIONS])
    def quality_checks(info: dict, published: int) -> dict:
        import datetime as dt

        from client_scoring.wiring import engine
        from mlcore.scoring import quality_checks as checks

        report = checks(engine(), TIER, dt.date.fromisoformat(info["scored_for"]))
        get_current_context()["outlet_events"][ELITE_PREDICTIONS].extra = {
            "scored_for": info["scored_for"], "rows": report["rows"], "model_version": info["model_version"]}
        return report

    info = check_inputs()
    parts = plan_partitions(info)
    counts = score_partition.expand(part=parts)
    quality_checks(info, publish(info, parts, counts))


nightly_elite_scoring()
