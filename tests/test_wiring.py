"""Which scoring database Airflow uses: the client_scoring_db connection, else DATABASE_URL, else an error."""
import asyncio

import pytest

from client_scoring import wiring
from mlcore import db
from mlcore.exceptions import ConfigError

URL = "postgresql+psycopg2://scorer@db.example:5432/client_scoring"
OTHER = "postgresql+psycopg2://other@db.example:5432/other"


@pytest.fixture(autouse=True)
def _no_embedded_server(monkeypatch):
    """Whatever a case does, Airflow-side code never starts mlcore's embedded Postgres."""
    def refuse(*args, **kwargs):
        raise AssertionError("the embedded Postgres was started from Airflow-side code")

    monkeypatch.setattr(db, "start_embedded", refuse)


@pytest.mark.parametrize("connection, database_url, expected", [
    (URL, None, URL),
    (URL, OTHER, URL),                 # the connection wins over the environment
    (None, URL, URL),                  # no connection: DATABASE_URL (the demo, `make airflow-ui`)
])
def test_the_connection_else_database_url(monkeypatch, connection, database_url, expected):
    if database_url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", database_url)
    assert wiring.settings(lambda: connection).database_url == expected


@pytest.mark.parametrize("database_url", [None, ""])
def test_neither_is_an_error_naming_both_and_the_fix(monkeypatch, database_url):
    if database_url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", database_url)
    with pytest.raises(ConfigError) as err:
        wiring.settings(lambda: None)
    message = str(err.value)
    for needle in ("'client_scoring_db'", "DATABASE_URL", "AIRFLOW_CONN_CLIENT_SCORING_DB=postgres://",
                   "airflow connections add client_scoring_db"):
        assert needle in message


def test_model_health_answers_503_naming_the_missing_connection(monkeypatch):
    from fastapi import HTTPException

    from client_scoring import model_health

    monkeypatch.setattr(wiring, "server_connection_url", lambda: None)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    model_health._engine.cache_clear()
    with pytest.raises(HTTPException) as err:
        asyncio.run(model_health.health(days=120))
    assert err.value.status_code == 503 and "client_scoring_db" in err.value.detail


@pytest.mark.parametrize("action, raised", [("skip", "AirflowSkipException"), ("fail", "AirflowFailException")])
def test_enforce_skips_or_fails_the_task_with_the_reason(action, raised):
    from mlcore.readiness import Readiness

    with pytest.raises(Exception, match="because") as info:
        wiring.enforce(Readiness(action, "because"))
    assert type(info.value).__name__ == raised


def test_enforce_lets_a_ready_task_run():
    from mlcore.readiness import Readiness

    assert wiring.enforce(Readiness("run")) is None
