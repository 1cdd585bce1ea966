"""Settings and defaults shared by the client-scoring DAGs (imported inside tasks, never at parse time)."""
from __future__ import annotations

import datetime as dt
import os

DB_CONN_ID = "client_scoring_db"
SMTP_CONN_ID = "client_scoring_smtp"
WEBHOOK_CONN_ID = "client_scoring_webhook"


def connection_url(conn_id: str = DB_CONN_ID) -> str | None:
    """SQLAlchemy URL of an Airflow connection (as a task sees it), or None when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return _url(BaseHook.get_connection(conn_id))
    except AirflowNotFoundException:
        return None


def _url(conn) -> str:
    """A psycopg2 SQLAlchemy URL for a Postgres connection (credentials escaped; socket host in extra)."""
    import sqlalchemy as sa

    query = {k: str(v) for k, v in conn.extra_dejson.items() if k in ("host", "sslmode", "options")}
    url = sa.engine.URL.create("postgresql+psycopg2", username=conn.login or None, password=conn.password or None,
                               host=conn.host or None, port=conn.port or None, database=conn.schema or "postgres",
                               query=query)
    return url.render_as_string(hide_password=False)


def server_connection_url(conn_id: str = DB_CONN_ID) -> str | None:
    """The same URL read inside Airflow's API server, where there is no task context."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        return _url(Connection.get_connection_from_secrets(conn_id))
    except AirflowNotFoundException:
        return None


def settings(lookup=connection_url):
    """mlcore Settings: the ``client_scoring_db`` connection (read by ``lookup``), else ``DATABASE_URL``.

    Raises ConfigError when neither is set: mlcore would otherwise start its embedded Postgres inside
    the worker, an empty database on that machine that no other component sees. The embedded server
    is for the ``mlcore`` CLI and the demo only.
    """
    from mlcore.config import Settings
    from mlcore.exceptions import ConfigError

    url = lookup() or os.environ.get("DATABASE_URL")
    if not url:
        raise ConfigError(
            f"no scoring database: the Airflow connection {DB_CONN_ID!r} is not defined and DATABASE_URL is not "
            f"set. Define the connection (environment variable AIRFLOW_CONN_{DB_CONN_ID.upper()}="
            f"postgres://user:password@host:5432/client_scoring, or `airflow connections add {DB_CONN_ID} "
            f"--conn-uri ...`) or set DATABASE_URL to the same URL in every Airflow component's environment.")
    return Settings.from_env(database_url=url)


def engine(s=None):
    from mlcore import db
    return db.make_engine(s or settings())


def logical_day(context) -> dt.date:
    """The run's logical date as a calendar day (UTC); the run-after time for runs without one."""
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date()


def enforce(readiness) -> None:
    """Act on an mlcore readiness decision inside a task: skip it or fail it (no retry) with the reason.

    A ``run`` decision returns, and the task goes on.
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    if readiness.action == "skip":
        raise AirflowSkipException(readiness.reason)
    if readiness.action == "fail":
        raise AirflowFailException(readiness.reason)


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
