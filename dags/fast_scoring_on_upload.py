"""
### Fast scoring on upload

When new note concepts land (the note_concepts Asset from `ingest_inbox`), scores just the
affected clients with the **Fast** champion, so fresh predictions exist within minutes (tier
`fast` in `predictions`). The Elite nightly batch replaces them with better ones overnight.

An upload is scored for its own day: the newest date of the notes it is about (`max_note_date`
in the Asset event's extra), so a backfilled upload is not scored under the day it arrived; an
asset-triggered run has no logical date to go by. Several uploads in one run are scored for the
newest of their days. A manual run scores for its logical day the clients in the `clients`
param, or else the clients with notes dated on that day. Before the first Fast model is trained
(a fresh install), the run is skipped, not failed: its log says how to train one.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from client_scoring.assets import CONCEPTS
from client_scoring.wiring import default_args


@dag(
    dag_id="fast_scoring_on_upload",
    schedule=[CONCEPTS],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args=default_args(execution_timeout=pendulum.duration(minutes=10)),
    tags=["client-scoring", "scoring", "fast"],
    doc_md=__doc__,
    params={"clients": Param([], type="array", items={"type": "string"}, description="Clients to score")},
)
def fast_scoring_on_upload():
    @task
    def score_upload(params=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from client_scoring.wiring import engine, logical_day, settings
        from mlcore.registry import Registry
        from mlcore.scoring import score, upload_clients, upload_day, upload_skip_reason

        context = get_current_context()
        extras = [e.extra or {} for evs in (context.get("triggering_asset_events") or {}).values() for e in evs]
        day = upload_day(extras, fallback=logical_day(context))
        s = settings()
        eng = engine(s)
        clients = upload_clients(eng, day, params["clients"], extras)
        champion = Registry(eng, s.model_store).champion("fast")
        reason = upload_skip_reason("fast", champion.version if champion else None, clients, day)
        if reason:
            raise AirflowSkipException(reason)
        res = score(eng, s, "fast", day, run_id=context["run_id"], clients=clients)
        return {"scored_for": str(day), "clients": res.n_clients, "model_version": res.model_version,
                "seconds": round(res.seconds, 2)}

    score_upload()


fast_scoring_on_upload()
