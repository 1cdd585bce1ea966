"""
### Ingest inbox

Picks up CSV drops from the inbox folder (`CLIENT_SCORING_INBOX`, default `var/inbox`, or the
`inbox` param): `notes*.csv`, then `note_concepts*.csv` / `concepts*.csv`, then `outcomes*.csv`.
Each file is validated and loaded with `mlcore.ingest` in one transaction, then moved to
`processed/` or `rejected/` beside a `<file>.report.txt` that says what was loaded or exactly
which row and column was wrong. Each load task emits its Asset (notes, note_concepts, outcomes)
only when it loaded a file, which starts `fast_scoring_on_upload` and `drift_check`.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from client_scoring.assets import CONCEPTS, NOTES, OUTCOMES
from client_scoring.wiring import default_args

PATTERNS = {"notes": ("notes*.csv",), "concepts": ("note_concepts*.csv", "concepts*.csv"),
            "outcomes": ("outcomes*.csv",)}
MAX_CLIENTS_IN_EVENT = 50_000


def _load(kind: str, inbox: str | None, asset) -> dict:
    import datetime as dt
    import os
    import shutil
    from pathlib import Path

    from airflow.sdk.exceptions import AirflowSkipException

    from client_scoring.wiring import engine
    from mlcore.exceptions import InputDataError
    from mlcore.ingest import ingest_file

    folder = Path(inbox or os.environ.get("CLIENT_SCORING_INBOX", "var/inbox"))
    files = sorted({f for pattern in PATTERNS[kind] for f in folder.glob(pattern) if f.is_file()})
    if not files:
        raise AirflowSkipException(f"no {kind} files in {folder}")
    eng = engine()
    loaded, rejected, clients = [], [], set()
    for f in files:
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            r = ingest_file(eng, kind, f)
        except InputDataError as exc:
            target, report = folder / "rejected", f"REJECTED {stamp}\n{exc}\n"
            rejected.append(f.name)
        else:
            target = folder / "processed"
            report = (f"LOADED {stamp}\n{r.rows_in_file} rows read, {r.rows_inserted} new rows loaded into "
                      f"{kind}\nsha256 {r.sha256}\n")
            loaded.append(f.name)
            clients.update(r.clients)
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(str(f), target / f.name)
        (target / f"{f.name}.report.txt").write_text(report)
    if not loaded:
        raise AirflowSkipException(f"every {kind} file was rejected: {rejected} (see rejected/*.report.txt)")
    extra = {"files": loaded, "rejected": rejected, "n_clients": len(clients)}
    if len(clients) <= MAX_CLIENTS_IN_EVENT:
        extra["clients"] = sorted(clients)
    get_current_context()["outlet_events"][asset].extra = extra
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
    @task(outlets=[NOTES])
    def load_notes(params=None) -> dict:
        return _load("notes", params["inbox"], NOTES)

    @task(outlets=[CONCEPTS], trigger_rule="none_failed")
    def load_concepts(params=None) -> dict:
        return _load("concepts", params["inbox"], CONCEPTS)

    @task(outlets=[OUTCOMES], trigger_rule="none_failed")
    def load_outcomes(params=None) -> dict:
        return _load("outcomes", params["inbox"], OUTCOMES)

    load_notes() >> load_concepts() >> load_outcomes()


ingest_inbox()
