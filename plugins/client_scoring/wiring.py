"""Settings and defaults shared by the client-scoring DAGs (imported inside tasks, never at parse time)."""
from __future__ import annotations

import datetime as dt
import os

DB_CONN_ID = "client_scoring_db"
SMTP_CONN_ID = "client_scoring_smtp"
WEBHOOK_CONN_ID = "client_scoring_webhook"


def connection_url(conn_id: str = DB_CONN_ID) -> str | None:
    """SQLAlchemy URL of an Airflow connection, or None when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    host = conn.host or ""
    extra = conn.extra_dejson
    auth = conn.login or ""
    if conn.password:
        auth += f":{conn.password}"
    port = f":{conn.port}" if conn.port else ""
    query = "&".join(f"{k}={v}" for k, v in extra.items() if k in ("host", "sslmode", "options"))
    return f"postgresql+psycopg2://{auth}@{host}{port}/{conn.schema or 'postgres'}" + (f"?{query}" if query else "")


def settings():
    """mlcore Settings: the ``client_scoring_db`` connection, else ``DATABASE_URL``."""
    from mlcore.config import Settings

    url = connection_url() or os.environ.get("DATABASE_URL")
    return Settings.from_env(database_url=url)


def engine(s=None):
    from mlcore import db
    return db.make_engine(s or settings())


def logical_day(context) -> dt.date:
    """The run's logical date as a calendar day (UTC); the run-after time for runs without one."""
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date()


def default_args(**overrides) -> dict:
    from client_scoring.notifier import ClientScoringNotifier

    args = {
        "owner": "ml-platform",
        # CLIENT_SCORING_TASK_RETRIES=0 makes replays and tests fail fast instead of waiting for a retry.
        "retries": int(os.environ.get("CLIENT_SCORING_TASK_RETRIES", "2")),
        "retry_delay": dt.timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=30),
        "execution_timeout": dt.timedelta(minutes=30),
        "on_failure_callback": ClientScoringNotifier(kind="task_failure"),
    }
    args.update(overrides)
    return args
