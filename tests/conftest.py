"""Fixtures: a real PostgreSQL (DATABASE_URL, or the embedded server), one fresh database per use."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mlcore.alerts import raise_alert
from mlcore.config import Settings
from mlcore.monitoring import check_tier
from mlcore.scoring import score
from mlcore.synth import WorldSpec, write_world
from mlcore.training import train_tier
from pg import fresh_database, ingest_world, test_server_url


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


@pytest.fixture(scope="module")
def populated(server_url, small_world, tmp_path_factory):
    """Both tiers trained, Elite scored weekly before the outcomes it forecasts, Fast on the last day,
    three drift checks and an alert: every
    analyst view and the Model Health page have something to show."""
    with fresh_database(server_url) as engine:
        last = ingest_world(engine, small_world)
        settings = Settings(database_url=engine.url.render_as_string(hide_password=False),
                            home=tmp_path_factory.mktemp("home"), n_bootstrap=30, drift_min_n=50)
        train_as_of = last - dt.timedelta(days=120)
        for tier in ("fast", "elite"):
            train_tier(engine, settings, tier, as_of=train_as_of)
        H = settings.horizon_days
        for weeks_back in (4, 3, 2, 1, 0):
            score(engine, settings, "elite", last - dt.timedelta(days=H + 7 * weeks_back), run_id=f"w{weeks_back}")
        score(engine, settings, "fast", last - dt.timedelta(days=H), run_id="fast")
        checks = [check_tier(engine, settings, "elite", last - dt.timedelta(days=d)) for d in (14, 7, 0)]
        raise_alert(engine, "test", "test:populated", "A recorded test alert", {"why": "fixture"}, tier="elite")
        yield engine, settings, checks
