"""Faults and hostile input: a killed migration, a lock held by an analyst, artifacts the store did not write,
bad connection settings. Each case failed (hung, wedged, unpickled or printed a traceback) before its fix."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sklearn.dummy import DummyClassifier

from mlcore import db
from mlcore.cli import EXIT_ENVIRONMENT, EXIT_USER_ERROR
from mlcore.exceptions import ArtifactIntegrityError, LockTimeoutError
from mlcore.registry import Registry, artifact_name
from pg import count, create_database, drop_database

DAY = dt.date(2025, 6, 1)


class _Payload:
    """Unpickling this runs os.mkdir(marker): the proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture
def registry(engine, tmp_path):
    reg = Registry(engine, tmp_path / "store")
    mv = reg.register("fast", DummyClassifier(), reason="manual", as_of=DAY, metrics={}, windows={
        "train_start": DAY, "train_end": DAY, "valid_start": DAY, "valid_end": DAY}, n_train=1, n_valid=1,
        fit_seconds=0.0)
    return reg, mv


def _point_row_at(engine, mv, path: str, sha: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE model_versions SET artifact_path = :p, sha256 = :s WHERE id = :i"),
                     {"p": path, "s": sha, "i": mv.id})


@pytest.mark.parametrize("where", ["absolute", "dot-dot", "symlink", "other name in the store"])
def test_a_pickle_the_store_did_not_write_is_never_loaded(registry, engine, tmp_path, where):
    reg, mv = registry
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.joblib"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    sha = hashlib.sha256(evil.read_bytes()).hexdigest()        # the attacker writes a matching hash too
    if where == "absolute":
        path = str(evil)
    elif where == "dot-dot":
        path = "fast/../../evil.joblib"
    elif where == "symlink":
        path = artifact_name("fast", mv.version, sha, reg.key)
        (reg.store / path).symlink_to(evil)
    else:
        path = "fast/evil.joblib"
        (reg.store / path).parent.mkdir(parents=True, exist_ok=True)
        (reg.store / path).write_bytes(evil.read_bytes())
    _point_row_at(engine, mv, path, sha)
    with pytest.raises(ArtifactIntegrityError, match="refusing to load"):
        reg.load(reg.get("fast", mv.version))
    assert not marker.exists(), "the hostile pickle was unpickled"


def test_an_artifact_replaced_by_a_directory_is_a_clear_error(registry):
    reg, mv = registry
    path = reg.store / mv.artifact_path
    path.unlink()
    path.mkdir()
    with pytest.raises(ArtifactIntegrityError, match="is not a file"):
        reg.load(mv)


def test_the_registered_artifact_still_loads(registry):
    reg, mv = registry
    assert isinstance(reg.load(mv), DummyClassifier)


def _hold_lock_as_analyst(engine, key: str, release: threading.Event):
    """An analyst session holding a session-level advisory lock until ``release`` is set."""
    conn = engine.connect()
    conn.execute(sa.text("SET ROLE analyst"))
    conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": key})
    held = threading.Event()

    def hold():
        held.set()
        release.wait(60)
        conn.close()

    threading.Thread(target=hold, daemon=True).start()
    held.wait()


def test_an_analyst_holding_a_lock_stalls_no_write_for_longer_than_the_timeout(registry, engine, monkeypatch):
    reg, mv = registry
    monkeypatch.setattr(db, "LOCK_TIMEOUT_SECONDS", 1)
    release = threading.Event()
    _hold_lock_as_analyst(engine, "model_versions:fast", release)
    outcome = {}

    def promote():
        try:
            reg.promote("fast", mv.version, {"why": "test"})
            outcome["result"] = "promoted"
        except LockTimeoutError as exc:
            outcome["result"] = str(exc)

    worker = threading.Thread(target=promote, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(30)
    release.set()
    assert not worker.is_alive(), "the write waited on the analyst's lock without a timeout"
    assert time.monotonic() - started < 15
    assert "waited 1s for the lock 'model_versions:fast'" in outcome["result"]
    assert reg.get("fast", mv.version).status == "candidate"       # nothing was written


def test_a_stale_yoyo_lock_row_does_not_wedge_the_next_upgrade(engine):
    # What a `db upgrade` killed inside yoyo's lock left behind (a committed row of a dead process).
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)"))
    started = time.monotonic()
    assert db.upgrade(engine) == []
    assert time.monotonic() - started < 8


def test_an_upgrade_killed_while_holding_the_migration_lock_leaves_no_lock(engine):
    url = engine.url.render_as_string(hide_password=False)
    code = ("import sys, time, sqlalchemy as sa; from mlcore import db; "
            "e = sa.create_engine(sys.argv[1]); cm = db.migration_lock(e); cm.__enter__(); "
            "print('locked', flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        started = time.monotonic()
        assert db.upgrade(engine) == []
        assert time.monotonic() - started < 10
    finally:
        if child.poll() is None:
            child.kill()


def test_the_analyst_cannot_create_temporary_tables(engine):
    with engine.connect() as conn:
        conn.execute(sa.text("SET ROLE analyst"))
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("CREATE TEMP TABLE t (i int)"))


def _mlcore(*args, url: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "CLIENT_SCORING_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "mlcore.cli", *args], env=env, capture_output=True, text=True,
                           timeout=120)


@pytest.mark.parametrize("case, code, needle", [
    ("unreachable server", EXIT_ENVIRONMENT, "cannot reach the scoring database"),
    ("unknown database", EXIT_ENVIRONMENT, "cannot reach the scoring database"),
    ("unknown role", EXIT_ENVIRONMENT, "cannot reach the scoring database"),
    ("not a URL", EXIT_USER_ERROR, "DATABASE_URL is not a usable database URL"),
])
def test_bad_connection_settings_get_one_line_and_their_exit_code(server_url, tmp_path, case, code, needle):
    base = sa.make_url(server_url)
    url = {"unreachable server": "postgresql+psycopg2://nobody@127.0.0.1:9/none",
           "unknown database": base.set(database="no_such_db_here").render_as_string(False),
           "unknown role": base.set(username="no_such_role_here").render_as_string(False),
           "not a URL": "definitely not a url"}[case]
    out = _mlcore("models", url=url, home=tmp_path)
    assert out.returncode == code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr


def test_read_only_commands_do_not_migrate(server_url, engine, tmp_path):
    url = engine.url.render_as_string(hide_password=False)
    holder = engine.connect()
    holder.execute(sa.text("SELECT pg_advisory_lock(hashtext('client_scoring:migrations'))"))
    try:
        for args in (["models"], ["drift", "history"]):
            out = _mlcore(*args, url=url, home=tmp_path)        # would wait for the migration lock
            assert out.returncode == 0, out.stderr
    finally:
        holder.close()
    empty = create_database(server_url)
    try:
        out = _mlcore("models", url=sa.make_url(server_url).set(database=empty).render_as_string(False), home=tmp_path)
        assert out.returncode == EXIT_USER_ERROR and "run `mlcore db upgrade` first" in out.stderr
        check = sa.create_engine(sa.make_url(server_url).set(database=empty))
        with check.connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('model_versions')")).scalar() is None   # not migrated
        check.dispose()
    finally:
        drop_database(server_url, empty)
    assert count(engine, "model_versions") == 0


@pytest.mark.parametrize("args", [["score", "--tier", "elite", "--date", "9999-12-31"],
                                  ["train", "--tier", "fast", "--as-of", "3000-01-01"],
                                  ["drift", "check", "--date", "1800-01-01"]])
def test_a_mistyped_day_is_refused_unless_meant(engine, tmp_path, args):
    url = engine.url.render_as_string(hide_password=False)
    out = _mlcore(*args, url=url, home=tmp_path)
    assert out.returncode == EXIT_USER_ERROR and "Pass --allow-any-date" in out.stderr, out.stderr
    assert count(engine, "predictions") == 0
    meant = _mlcore(*args, "--allow-any-date", url=url, home=tmp_path)
    assert "--allow-any-date" not in meant.stderr          # past the bound (then: no model trained, no outcomes)


def _register(reg, gate):
    return reg.register("fast", DummyClassifier(), reason="manual", as_of=DAY, metrics={}, windows={
        "train_start": DAY, "train_end": DAY, "valid_start": DAY, "valid_end": DAY}, n_train=1, n_valid=1,
        fit_seconds=0.0, gate=gate)


def test_a_rollback_keeps_every_promotion_and_each_versions_gate(engine, tmp_path):
    reg = Registry(engine, tmp_path / "store")
    v1 = _register(reg, {"promote": True, "why": "first model of its tier"})
    v2 = _register(reg, {"promote": True, "why": "not worse than champion v1"})
    v3 = _register(reg, {"promote": False, "why": "worse than champion v2 on churn"})
    assert (v1.status, v2.status, v3.status) == ("champion", "champion", "candidate")
    reg.promote("fast", 1, {"why": "rollback after an incident"})
    with engine.connect() as conn:
        gates = dict(conn.execute(sa.text("SELECT version, gate ->> 'why' FROM model_versions")).all())
        status = dict(conn.execute(sa.text("SELECT version, status FROM model_versions")).all())
    assert gates == {1: "first model of its tier", 2: "not worse than champion v1",
                     3: "worse than champion v2 on churn"}                   # no gate record overwritten
    assert status == {1: "champion", 2: "retired", 3: "candidate"}
    history = [(p["version"], p["previous_version"], p["kind"], p["decision"]["why"]) for p in reg.promotions("fast")]
    assert history == [(1, None, "gate", "first model of its tier"), (2, 1, "gate", "not worse than champion v1"),
                       (1, 2, "manual", "rollback after an incident")]


def test_a_failed_registration_leaves_neither_a_row_nor_an_artifact(engine, tmp_path, monkeypatch):
    reg = Registry(engine, tmp_path / "store")
    monkeypatch.setattr(Registry, "_make_champion", staticmethod(lambda *a: (_ for _ in ()).throw(OSError("crash"))))
    with pytest.raises(OSError):
        _register(reg, {"promote": True, "why": "first model of its tier"})
    assert count(engine, "model_versions") == 0
    assert not list((tmp_path / "store").rglob("*.joblib"))


def test_a_killed_registrations_artifact_is_swept_by_the_next_registration(engine, tmp_path):
    """kill -9 between writing the artifact and committing its row runs no cleanup: the next one does."""
    reg = Registry(engine, tmp_path / "store")
    first = _register(reg, {"promote": True, "why": "first model of its tier"})
    tier_dir = tmp_path / "store" / reg.key / first.tier
    left = [tier_dir / f"{first.tier}-v2-{'a' * 12}.joblib", tier_dir / f"{first.tier}-v2-{'b' * 12}.joblib.tmp4242",
            tier_dir / f"{first.tier}-v7-{'c' * 12}.joblib"]
    for path in left:
        path.write_bytes(b"not vouched for")
    kept = tier_dir / "notes.txt"                        # not an artifact name: left alone
    kept.write_text("an operator's file")
    second = _register(reg, {"promote": False, "why": "worse than champion v1"})
    assert second.version == 2 and not any(p.exists() for p in left) and kept.exists()
    assert sorted(p.name for p in tier_dir.glob("*.joblib")) == sorted(
        Path(reg.artifact_file(mv)).name for mv in (first, second))


def test_databases_sharing_one_store_never_sweep_each_others_artifacts(server_url, engine, tmp_path):
    """Two databases, one CLIENT_SCORING_HOME: each registers version 1; both stay loadable."""
    from pg import fresh_database

    ours = Registry(engine, tmp_path / "store")
    mine = _register(ours, {"promote": True, "why": "first model of its tier"})
    with fresh_database(server_url) as other_engine:
        other = Registry(other_engine, tmp_path / "store")
        theirs = _register(other, {"promote": True, "why": "first model of its tier"})
        assert other.key != ours.key and theirs.version == mine.version == 1
        assert mine.artifact_path.startswith(ours.key + "/") and theirs.artifact_path.startswith(other.key + "/")
        ours.load(mine), other.load(theirs)                     # neither registration swept the other's file
    # A version registered before migration 0019 keeps its old name and still loads; no other name does.
    legacy = artifact_name("fast", mine.version, mine.sha256)
    (tmp_path / "store" / legacy).parent.mkdir(parents=True)
    (tmp_path / "store" / mine.artifact_path).rename(tmp_path / "store" / legacy)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE model_versions SET artifact_path = :p WHERE tier = 'fast' AND version = 1"),
                     {"p": legacy})
    ours.load(ours.get("fast", 1))
