"""Fault injection: ``mlcore ingest`` and ``mlcore db upgrade`` killed (SIGKILL, SIGTERM) at chosen moments.

After every fault the invariants are checked: the table holds nothing of the file or all of it (never
part, never twice), the audit row exists exactly when the data does, no lock is left behind, and the
next command works. A summary table is printed (``pytest -s`` shows it).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from pg import count, create_database, drop_database

ROWS = 100_000
#: When to strike, as fractions of the same command's measured clean run: from start-up and reading
#: through validation to the COPY, the checks and the commit.
FRACTIONS = (0.4, 0.7, 0.9, 0.98)
SUMMARY: list[tuple] = []


@pytest.fixture(scope="module")
def big_outcomes(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "outcomes_big.csv"
    with path.open("w") as f:
        f.write("client_id,purchased,churned,lifetime_value,date\n")
        for i in range(ROWS):
            f.write(f"C{i:07d},{i % 2},{(i // 2) % 2},{i % 997}.5,2025-0{1 + i % 9}-1{i % 10}\n")
    return path


@pytest.fixture(scope="module")
def clean_seconds(server_url, big_outcomes, tmp_path_factory) -> dict:
    """Wall time of an uninterrupted ``db upgrade`` and ``ingest`` of the big file, on a throwaway database."""
    home = tmp_path_factory.mktemp("clean")
    name = create_database(server_url)
    url = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        seconds = {}
        for key, args in (("upgrade", ("db", "upgrade")), ("ingest", ("ingest", "outcomes", str(big_outcomes)))):
            started = time.monotonic()
            proc = _cli(*args, url=url, home=home)
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            seconds[key] = time.monotonic() - started
        return seconds
    finally:
        drop_database(server_url, name)


def _cli(*args, url, home, **kwargs):
    env = {**os.environ, "DATABASE_URL": url, "CLIENT_SCORING_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "mlcore.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _kill_after(proc, sig, seconds) -> bool:
    """Send ``sig`` after ``seconds``; False when the command had already finished."""
    try:
        proc.wait(seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
        proc.wait(30)
        return True


def _no_lock_left(engine) -> bool:
    with engine.connect() as conn:
        advisory = conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid() "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).scalar_one()
        rows = 0
        if conn.execute(sa.text("SELECT to_regclass('yoyo_lock')")).scalar() is not None:
            rows = conn.execute(sa.text("SELECT count(*) FROM yoyo_lock")).scalar_one()
        return advisory == 0 and rows == 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("fraction", FRACTIONS)
def test_a_killed_ingest_leaves_nothing_or_everything(engine, tmp_path, big_outcomes, clean_seconds, sig, fraction):
    url = engine.url.render_as_string(hide_password=False)
    moment = round(fraction * clean_seconds["ingest"], 2)
    killed = _kill_after(_cli("ingest", "outcomes", str(big_outcomes), url=url, home=tmp_path), sig, moment)
    rows, runs = count(engine, "outcomes"), count(engine, "ingest_runs")
    held = rows in (0, ROWS) and runs == (rows == ROWS)
    # Postgres ends a killed client's session within moments; the lock goes with it.
    deadline = time.monotonic() + 10
    while not _no_lock_left(engine) and time.monotonic() < deadline:
        time.sleep(0.2)
    unlocked = _no_lock_left(engine)
    again = _cli("ingest", "outcomes", str(big_outcomes), url=url, home=tmp_path)
    out, err = again.communicate(timeout=180)
    works = again.returncode == 0 and count(engine, "outcomes") == ROWS
    SUMMARY.append(("ingest", sig.name, moment, "killed" if killed else "had finished", rows, held, unlocked, works))
    # (a kill after the commit leaves every row: "all" is as good an outcome as "nothing")
    assert held, f"{rows} of {ROWS} rows and {runs} audit rows after {sig.name} at {moment}s"
    assert unlocked and works, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("fraction", (0.7, 0.95))
def test_a_killed_db_upgrade_leaves_a_database_the_next_upgrade_completes(server_url, tmp_path, clean_seconds,
                                                                           sig, fraction):
    moment = round(fraction * clean_seconds["upgrade"], 2)
    name = create_database(server_url)
    url = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    try:
        killed = _kill_after(_cli("db", "upgrade", url=url, home=tmp_path), sig, moment)
        again = _cli("db", "upgrade", url=url, home=tmp_path)
        started = time.monotonic()
        out, err = again.communicate(timeout=120)
        seconds = time.monotonic() - started
        works = again.returncode == 0 and count(engine, "model_versions") == 0
        unlocked = _no_lock_left(engine)
        SUMMARY.append(("db upgrade", sig.name, moment, "killed" if killed else "had finished", "-", True,
                        unlocked, works))
        assert works and seconds < 30, err
        assert unlocked
    finally:
        engine.dispose()
        drop_database(server_url, name)


def teardown_module():
    if SUMMARY:
        print("\ncommand     signal   at (s)  state          rows     all-or-nothing  no lock left  next works")
        for cmd, sig, at, state, rows, held, unlocked, works in SUMMARY:
            print(f"{cmd:11s} {sig:8s} {at:6.1f}  {state:13s} {rows!s:>8s}  {held!s:14s}  {unlocked!s:12s}  {works}")
        print(f"{len(SUMMARY)} faults injected, {3 * len(SUMMARY)} invariants checked, "
              f"all held: {all(all(r[5:]) for r in SUMMARY)}")
