"""Test database helpers: the server under test and throwaway databases on it."""
from __future__ import annotations

import functools
import os
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

from mlcore import db


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
