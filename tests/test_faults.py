"""Fault injection: ``mlcore ingest``, ``db upgrade``, ``train``, ``score`` and ``drift check`` killed
(SIGKILL, SIGTERM) at chosen moments, and every write command run twice at once.

After every fault the invariants are checked: the table holds nothing of the file or all of it (never
part, never twice), the audit row exists exactly when the data does, exactly one champion per tier,
every registry row's artifact present and matching its sha256, the previous scoring slice unchanged
and the new one absent or whole, no lock left behind, and the next command works. A summary table is
printed (``pytest -s`` shows it).
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from mlcore import db
from mlcore.config import Settings
from mlcore.registry import Registry
from pg import advisory_locks, count, create_database, drop_database, ingest_world, prediction_slice as _slice

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
    env = {**os.environ, "DATABASE_URL": url, "CLIENT_SCORING_HOME": str(home), "CLIENT_SCORING_N_BOOTSTRAP": "30"}
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
    advisory = advisory_locks(engine)
    with engine.connect() as conn:
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


@pytest.fixture(scope="module")
def modelled(server_url, small_world, tmp_path_factory):
    """A database with the small world, both tiers trained and Elite scored once, all through the CLI."""
    home = tmp_path_factory.mktemp("modelled")
    name = create_database(server_url)
    url = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    try:
        db.upgrade(engine)
        last = ingest_world(engine, small_world)
        H = Settings().horizon_days
        days = {"train": last - dt.timedelta(days=120), "previous": last - dt.timedelta(days=H + 7),
                "score": last - dt.timedelta(days=H), "check": last}
        commands = {"train": ("train", "--tier", "elite", "--as-of", str(days["train"])),
                    "score": ("score", "--tier", "elite", "--date", str(days["score"])),
                    "drift check": ("drift", "check", "--tier", "elite", "--date", str(days["check"]))}
        for args in (("train", "--tier", "fast", "--as-of", str(days["train"])), commands["train"],
                     ("score", "--tier", "elite", "--date", str(days["previous"]))):
            _run(*args, url=url, home=home)
        seconds = {}
        for key, args in commands.items():          # the clean run of each command under test
            started = time.monotonic()
            _run(*args, url=url, home=home)
            seconds[key] = time.monotonic() - started
        store = Settings(database_url=url, home=home).model_store
        yield {"url": url, "engine": engine, "home": home, "store": store, "days": days, "commands": commands,
               "seconds": seconds, "previous": _slice(engine, days["previous"]),
               "expected": count_scored(engine, days["score"])}
    finally:
        engine.dispose()
        drop_database(server_url, name)


def _run(*args, url, home):
    proc = _cli(*args, url=url, home=home)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"mlcore {' '.join(args)}: {err}"
    return out


def count_scored(engine, day) -> int:
    return _slice(engine, day)[0]


def _model_invariants(m) -> dict:
    """Each invariant of the registry and the predictions, by name -> held."""
    engine = m["engine"]
    with engine.connect() as conn:
        champions = dict(conn.execute(sa.text(
            "SELECT tier, count(*) FROM model_versions WHERE status = 'champion' GROUP BY tier")).all())
        versions = conn.execute(sa.text("SELECT tier, version FROM model_versions")).all()
        checks = conn.execute(sa.text("SELECT count(*) FROM drift_checks WHERE tier = 'elite' AND check_date = :d"),
                              {"d": m["days"]["check"]}).scalar_one()
    registry = Registry(engine, m["store"])
    loads = True
    for tier, version in versions:
        try:
            registry.load(registry.get(tier, version))
        except Exception:  # noqa: BLE001 - the invariant is that none fails
            loads = False
    rows, runs, _ = _slice(engine, m["days"]["score"])
    return {"one champion per tier": champions == {"fast": 1, "elite": 1},
            "every artifact present and matching": loads,
            "previous slice unchanged": _slice(engine, m["days"]["previous"]) == m["previous"],
            "new slice absent or whole": rows in (0, m["expected"]) and runs <= 1,
            "at most one check per day": checks <= 1,
            "no lock left": _no_lock_left(engine)}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("fraction", (0.4, 0.75))
@pytest.mark.parametrize("command", ("train", "score", "drift check"))
def test_a_killed_train_score_or_drift_check_keeps_every_invariant(modelled, tmp_path, command, fraction, sig):
    m = modelled
    moment = round(fraction * m["seconds"][command], 2)
    killed = _kill_after(_cli(*m["commands"][command], url=m["url"], home=m["home"]), sig, moment)
    deadline = time.monotonic() + 10
    while not _no_lock_left(m["engine"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    held = _model_invariants(m)
    again = _cli(*m["commands"][command], url=m["url"], home=m["home"])
    _, err = again.communicate(timeout=600)
    after = _model_invariants(m)
    works = again.returncode == 0 and after["new slice absent or whole"] and count_scored(
        m["engine"], m["days"]["score"]) == m["expected"]
    orphans = {p.name for p in m["store"].rglob("*") if p.is_file()} - {
        p.name for p in (m["store"] / r for r in _artifact_paths(m["engine"]))}
    if command == "train":                         # the next registration sweeps a killed one's file
        held["no artifact without a row"] = not orphans
    SUMMARY.append((command, sig.name, moment, "killed" if killed else "had finished", "-", all(held.values()),
                    held["no lock left"], works and all(after.values()), len(held) + len(after) + 1))
    assert all(held.values()), f"{command} {sig.name} at {moment}s: {held}"
    assert works and all(after.values()), (after, err)


def _artifact_paths(engine) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT artifact_path FROM model_versions")).scalars().all()


@pytest.mark.slow
@pytest.mark.parametrize("command", ("train", "score", "drift check"))
def test_every_write_command_run_twice_at_once_keeps_every_invariant(modelled, command):
    m = modelled
    with m["engine"].connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM model_versions WHERE tier = 'elite'")).scalar_one()
    pair = [_cli(*m["commands"][command], url=m["url"], home=m["home"]) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in pair]
    assert [p.returncode for p in pair] == [0, 0], [err for _, err in results]
    held = _model_invariants(m)
    with m["engine"].connect() as conn:
        after = conn.execute(sa.text("SELECT count(*) FROM model_versions WHERE tier = 'elite'")).scalar_one()
    held["each run registered once"] = after - before == (2 if command == "train" else 0)
    held["the slice is whole"] = count_scored(m["engine"], m["days"]["score"]) == m["expected"]
    SUMMARY.append((f"{command} x2", "-", 0.0, "concurrent", "-", all(held.values()), held["no lock left"], True,
                    len(held) + 1))
    assert all(held.values()), held


def teardown_module():
    if SUMMARY:
        print("\ncommand         signal   at (s)  state          rows     invariants held  no lock left  next works")
        for cmd, sig, at, state, rows, held, unlocked, works, *_ in SUMMARY:
            print(f"{cmd:15s} {sig:8s} {at:6.1f}  {state:13s} {rows!s:>8s}  {held!s:15s}  {unlocked!s:12s}  {works}")
        checked = sum(r[8] if len(r) > 8 else 3 for r in SUMMARY)
        print(f"{len(SUMMARY)} faults injected, {checked} invariants checked, "
              f"all held: {all(all(r[5:8]) for r in SUMMARY)}")
