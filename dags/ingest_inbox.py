"""
### Ingest inbox

Picks up CSV drops from the inbox folder (`CLIENT_SCORING_INBOX`, default `var/inbox`, or the
`inbox` param): `notes*.csv`, then `note_concepts*.csv` / `concepts*.csv`, then `outcomes*.csv`, then
`transactions*.csv` (point-of-sale lines: `client_id, date, amount`, see the data contract).

1. `claim` — moves every waiting file into `claimed/<run_id>/` (one atomic rename each), together
   with the files a crashed or failed earlier run left in its own `claimed/` folder. The load
   tasks read only from there, so a drop that lands during the run waits whole for the next one.
2. `load_notes`, `load_concepts`, `load_outcomes`, `load_transactions` — each file is validated and loaded with
   `mlcore.ingest` in one transaction, then moved to `processed/` or `rejected/` beside a
   `<file>.report.txt` that says what was loaded or exactly which row and column was wrong. Each
   task emits its Asset (notes, note_concepts, outcomes, transactions) only when it loaded a file,
   which starts `fast_scoring_on_upload` (notes) and `drift_check` (outcomes, transactions); the note_concepts event carries `max_note_date`,
   the newest date of the notes it is about, the day the upload is scored for.
3. `report_rejections` — fails the run when any file was rejected, naming each file and its
   report (the failure alert carries them), after the good files were loaded and announced.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from client_scoring.assets import CONCEPTS, NOTES, OUTCOMES, TRANSACTIONS
from client_scoring.wiring import default_args

LOADS = ("load_notes", "load_concepts", "load_outcomes", "load_transactions")


def _load(kind: str, claimed: dict, asset) -> dict:
    """Load the run's claimed files of ``kind``; emit ``asset`` only if one loaded.

    The rejected files are pushed as XCom ``rejections`` before anything else can end the task, for
    ``report_rejections``: a task that fails emits no Asset event in Airflow 3, so the load tasks
    never fail for a rejected file, and the run fails after them instead.
    """
    from pathlib import Path

    from airflow.sdk.exceptions import AirflowSkipException

    from client_scoring.wiring import engine
    from mlcore.inbox import event_extra, load_claimed

    context = get_current_context()
    result = load_claimed(engine(), kind, Path(claimed["folder"]), Path(claimed["inbox"]))
    # A dict, not a bare list: xcom_pull unwraps a one-element list pulled from one task.
    context["ti"].xcom_push(key="rejections", value={"kind": kind, "rejected": list(result.rejected)})
    if not result.loaded:
        raise AirflowSkipException(result.skip_reason())
    extra = event_extra(result)
    context["outlet_events"][asset].extra = extra
    return extra


@dag(
    dag_id="ingest_inbox",
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["client-scoring", "ingest"],
    doc_md=__doc__,
    params={"inbox": Param(None, type=["null", "string"], description="Default: $CLIENT_SCORING_INBOX")},
)
def ingest_inbox():
    @task
    def claim(params=None) -> dict:
        """Move the waiting files (and unfinished runs' leftovers) into this run's claimed/<run_id>/."""
        import os
        from pathlib import Path

        from mlcore.inbox import claim as claim_files

        inbox = Path(params["inbox"] or os.environ.get("CLIENT_SCORING_INBOX", "var/inbox"))
        claimed = claim_files(inbox, get_current_context()["run_id"])
        return {"inbox": str(inbox), "folder": str(claimed.folder), "files": claimed.files}

    @task(outlets=[NOTES])
    def load_notes(claimed: dict) -> dict:
        return _load("notes", claimed, NOTES)

    @task(outlets=[CONCEPTS], trigger_rule="none_failed")
    def load_concepts(claimed: dict) -> dict:
        return _load("concepts", claimed, CONCEPTS)

    @task(outlets=[OUTCOMES], trigger_rule="none_failed")
    def load_outcomes(claimed: dict) -> dict:
        return _load("outcomes", claimed, OUTCOMES)

    @task(outlets=[TRANSACTIONS], trigger_rule="none_failed")
    def load_transactions(claimed: dict) -> dict:
        return _load("transactions", claimed, TRANSACTIONS)

    @task(trigger_rule="none_failed")
    def report_rejections(claimed: dict) -> None:
        """Fail (no retry) when a load task rejected a file; the failure alert names files and reports."""
        from pathlib import Path

        from airflow.sdk.exceptions import AirflowFailException

        from mlcore.inbox import rejection_message, release

        ti = get_current_context()["ti"]
        rejected = [r for task_id in LOADS
                    for r in (ti.xcom_pull(task_ids=task_id, key="rejections") or {}).get("rejected", [])]
        release(Path(claimed["folder"]))
        message = rejection_message(rejected)
        if message:
            raise AirflowFailException(message)

    claimed = claim()
    loads = [load_notes(claimed), load_concepts(claimed), load_outcomes(claimed), load_transactions(claimed)]
    loads[0] >> loads[1] >> loads[2] >> loads[3]
    loads >> report_rejections(claimed)


ingest_inbox()
