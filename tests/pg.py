"""Test database helpers: the server under test and throwaway databases on it."""
from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

from mlcore import db
from mlcore.ingest import ingest_file


@functools.lru_cache(maxsize=1)
def test_server_url() -> str:
    """DATABASE_URL's server, or an embedded one started once for the whole run."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return db.normalise_url(url)
    return db.start_embedded(Path(tempfile.mkdtemp(prefix="cs-test-pg-")) / "pgdata")


def create_database(server_url: str, prefix: str = "cs_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name


def drop_database(server_url: str, name: str) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextlib.contextmanager
def fresh_database(server_url: str):
    """Create an empty, migrated database on the server; drop it afterwards."""
    name = create_database(server_url)
    engine = sa.create_engine(sa.make_url(server_url).set(database=name))
    try:
        db.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        drop_database(server_url, name)


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def conn_uri(url: str) -> str:
    """An Airflow connection URI for a SQLAlchemy Postgres URL (host may be a socket folder)."""
    u = sa.make_url(url)
    if u.host:
        return f"postgres://{u.username or ''}@{u.host}:{u.port or 5432}/{u.database}"
    return f"postgres://{u.username or ''}@/{u.database}?host={u.query['host']}"


def ingest_world(engine, world: Path):
    """Load a written world's three files; returns the newest outcome date."""
    for kind, name in (("notes", "notes.csv"), ("concepts", "note_concepts.csv"), ("outcomes", "outcomes.csv")):
        ingest_file(engine, kind, world / name)
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT max(date) FROM outcomes")).scalar_one()


def prediction_slice(engine, day, tier: str = "elite") -> tuple:
    """(rows, distinct run ids, md5 of the rows) of ``tier``'s predictions for ``day``: equal iff unchanged."""
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT run_id), md5(coalesce(string_agg(concat_ws(',', client_id, "
            "model_version, purchase_likelihood, churn_risk, predicted_clv, run_id), ';' ORDER BY client_id), '')) "
            "FROM predictions WHERE tier = :t AND scored_for = :d"), {"t": tier, "d": day}).one())


def advisory_locks(engine) -> int:
    """Advisory locks other sessions hold in ``engine``'s database."""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid() "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).scalar_one()
