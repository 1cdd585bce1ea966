"""Fixtures: a real PostgreSQL (DATABASE_URL, or the embedded server), one fresh database per use."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.config import Settings
from mlcore.synth import WorldSpec, write_world
from pg import fresh_database, test_server_url


@pytest.fixture(scope="session")
def server_url() -> str:
    return test_server_url()


@pytest.fixture
def engine(server_url):
    with fresh_database(server_url) as e:
        yield e


@pytest.fixture
def settings(tmp_path, engine) -> Settings:
    return Settings(database_url=engine.url.render_as_string(hide_password=False), home=tmp_path,
                    valid_days=60, n_bootstrap=50)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """A 2,000-client, two-year world (fixed seed) shared by the integration tests."""
    out = tmp_path_factory.mktemp("world")
    write_world(WorldSpec(n_clients=2000, days=730, seed=11), out)
    return out
