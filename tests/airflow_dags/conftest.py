"""Airflow test harness: a migrated metadata DB (its own Postgres database) and the project's DAGs.

Airflow reads its configuration when first imported, so the environment is set here, before any
test module imports it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from pg import conn_uri, create_database, drop_database, test_server_url

ROOT = Path(__file__).resolve().parents[2]
_SERVER = test_server_url()
_META_DB = create_database(_SERVER, "cs_airflow")
_HOME = Path(tempfile.mkdtemp(prefix="cs-airflow-"))
for folder in (ROOT / "plugins", ROOT / "dags"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
from demo.replay import airflow_env  # noqa: E402  (plugins is on sys.path only now)

os.environ.update({
    **airflow_env(sa.make_url(_SERVER).set(database=_META_DB).render_as_string(False), _HOME),
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "CLIENT_SCORING_TASK_RETRIES": "0",
})
subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ)


@pytest.fixture(scope="session", autouse=True)
def _drop_metadata_db():
    yield
    from airflow import settings
    settings.dispose_orm()  # close Airflow's sessions now, not in its atexit hook after the database is gone
    drop_database(_SERVER, _META_DB)


@pytest.fixture
def scoring_env(engine, tmp_path, monkeypatch):
    """Point the DAGs at a fresh scoring database and a private model store."""
    url = engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("AIRFLOW_CONN_CLIENT_SCORING_DB", conn_uri(url))
    monkeypatch.setenv("CLIENT_SCORING_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return engine


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]
