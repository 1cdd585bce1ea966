"""Load CSV files that follow the data contract into ``notes``, ``note_concepts``, ``outcomes`` and ``transactions``.

A file is read in blocks, so a load runs in bounded memory whatever the file's size: pyarrow
parses each block, it is validated column by column and COPYed into a temporary staging table.
Only when the whole file is valid are the rows checked against the database and the new ones
inserted, all in one transaction: a bad file leaves the database as it was, and loading the
same file twice changes nothing.

Example:
    >>> from mlcore.ingest import ingest_file
    >>> ingest_file(engine, "notes", "data/notes.csv")  # doctest: +SKIP
    LoadResult(kind='notes', rows_in_file=1200, rows_inserted=1200, ...)
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import datetime as dt
import hashlib
import io
import logging
import queue
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2.errors
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import sqlalchemy as sa
from psycopg2.extensions import quote_ident

from mlcore.db import LOCK_TIMEOUT_SECONDS, advisory_xact_lock, raw_transaction
from mlcore.exceptions import InputDataError, LockTimeoutError
from mlcore.progress import Progress

progress_log = logging.getLogger("mlcore.progress")
MAX_REPORTED = 5
MAX_ID_LENGTH = 256            # ids longer than this are a broken export, not an identifier
MAX_INT4 = 2**31 - 1           # span offsets are stored as integer
MAX_MONEY = 1e12               # a transaction line larger than this is a unit or export error
MAX_SHOWN = 60                 # characters of a found value quoted in a message
BLOCK_BYTES = 2 << 20          # bytes parsed at a time (pyarrow reads about 8 blocks ahead): memory stays bounded
MAX_LINE_BYTES = 1 << 20       # a longer line is not a row of the contract (ids are at most 256 characters)
BULK_MIN_ROWS = 200_000        # a load of this many new rows, and at least the table's size, rebuilds its indexes
#: How far after today (UTC) a date may lie: none of the inputs can be dated in the future.
FUTURE_SLACK_DAYS = 1


EARLIEST_DAY = dt.date(1900, 1, 1)


def latest_day(today: dt.date | None = None) -> dt.date:
    """The latest day an input or a command may name: today (UTC) plus ``FUTURE_SLACK_DAYS``."""
    return (today or dt.datetime.now(dt.timezone.utc).date()) + dt.timedelta(days=FUTURE_SLACK_DAYS)


def day_problem(day: dt.date, today: dt.date | None = None) -> str | None:
    """Why ``day`` is outside the days the platform accepts (1900-01-01 to :func:`latest_day`), or None.

    Example:
        >>> day_problem(dt.date(9999, 12, 31), today=dt.date(2026, 1, 1))
        '9999-12-31 is after 2026-01-02: nothing can be observed or scored in the future'
    """
    if day < EARLIEST_DAY:
        return f"{day} is before {EARLIEST_DAY}"
    if day > latest_day(today):
        return f"{day} is after {latest_day(today)}: nothing can be observed or scored in the future"
    return None


def _show(value) -> str:
    """``repr`` of a found value, cut to ``MAX_SHOWN`` characters (a 200 MB line is not echoed)."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(str(value)):,} characters)"


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    kind: str  # id, text, date, language, count, unit, flag, amount
    required: bool


@dataclasses.dataclass(frozen=True)
class Spec:
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    aliases: dict

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


SPECS = {
    "notes": Spec("notes", (
        Column("note_id", "id", True), Column("client_id", "id", True), Column("date", "date", True),
        Column("language", "language", False)), key=("note_id",), aliases={}),
    "concepts": Spec("note_concepts", (
        Column("note_id", "id", True), Column("client_id", "id", False), Column("concept_id", "id", True),
        Column("matched_alias", "text", False), Column("evidence_span_start", "count", False),
        Column("evidence_span_end", "count", False), Column("detection_method", "text", False),
        Column("confidence", "unit", False)),
        key=("note_id", "concept_id", "evidence_span_start", "evidence_span_end"),
        aliases={"start": "evidence_span_start", "end": "evidence_span_end",
                 "span_start": "evidence_span_start", "span_end": "evidence_span_end"}),
    "outcomes": Spec("outcomes", (
        Column("client_id", "id", True), Column("purchased", "flag", True), Column("churned", "flag", True),
        Column("lifetime_value", "amount", True), Column("date", "date", True)),
        key=("client_id", "date"), aliases={}),
    "transactions": Spec("transactions", (
        Column("client_id", "id", True), Column("date", "date", True), Column("amount", "money", True),
        Column("transaction_id", "id", False), Column("store", "text", False), Column("category", "text", False),
        Column("quantity", "quantity", False)),
        key=("client_id", "transaction_id", "date", "amount", "store", "category", "quantity"),
        aliases={"customer_id": "client_id", "value": "amount", "sales": "amount", "order_id": "transaction_id",
                 "qty": "quantity"}),
}
KINDS = tuple(SPECS)

_EXPECTED = {
    "id": "a non-empty identifier",
    "date": "an ISO-8601 date or timestamp (e.g. 2025-03-14)",
    "language": "an ISO language code (e.g. en, fr, zh-Hant)",
    "count": f"a whole number from 0 to {2**31 - 1}",
    "unit": "a number between 0 and 1",
    "flag": "0 or 1",
    "amount": "a finite number >= 0",
    "money": f"a number at most {MAX_MONEY:g} in size (negative: a return)",
    "quantity": f"a whole number other than 0, from -{MAX_INT4} to {MAX_INT4} (negative: a return)",
}
_LANG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


@dataclasses.dataclass(frozen=True)
class LoadResult:
    kind: str
    source: str
    rows_in_file: int
    rows_inserted: int
    sha256: str
    clients: tuple[str, ...] = ()
    newest_note: dt.date | None = None  # notes: the file's newest note; concepts: the newest note they are about


class _Problems:
    """Collects the row-level problems of one file, batch by batch, and raises them together."""

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []
        self.total = 0

    def add(self, mask: np.ndarray, first_row: int, column: str, expected: str, found: pa.Array):
        """Record the rows of ``mask`` (row numbers count from ``first_row``), quoting ``found``."""
        idx = np.flatnonzero(mask)
        if not len(idx):
            return
        self.total += len(idx)
        room = max(0, min(MAX_REPORTED, 2 * MAX_REPORTED - len(self.lines)))
        for i, value in zip(idx[:room], found.take(pa.array(idx[:room])).to_pylist()):
            self.lines.append(f"{self.source}: row {first_row + i}, column '{column}': expected {expected}, "
                              f"found {_show(value)}")

    def raise_if_any(self):
        if self.total:
            more = self.total - len(self.lines)
            tail = f"\n... and {more} more problem(s) not shown" if more > 0 else ""
            raise InputDataError("\n".join(self.lines) + tail
                                 + "\nNothing from this file was loaded; fix the rows above and load it again.")


NEWLINE = b"\n"


class _CheckedReader:
    """The file's bytes as pyarrow reads them: hashed, and refused at a NUL byte, bad UTF-8 or an overlong line.

    Line numbers in the messages count every newline read so far, so they hold for a file of any size.
    """

    def __init__(self, fh, source: str):
        self._fh, self.source = fh, source
        self.sha = hashlib.sha256()
        self.bytes_read = 0
        self.closed = False
        self._lines = 0          # newlines before the data being checked
        self._run = 0            # bytes since the last newline
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._ahead = b""        # read past the header, not yet handed to pyarrow

    def _next(self, size: int) -> bytes:
        data = self._fh.read(min(size, BLOCK_BYTES))
        self._check(data)
        return data

    def _check(self, data: bytes) -> None:
        self.sha.update(data)
        nul = data.find(b"\x00")
        if nul >= 0:
            line = self._lines + data.count(NEWLINE, 0, nul) + 1
            raise InputDataError(f"{self.source}: line {line} contains a NUL "
                                 f"byte (offset {self.bytes_read + nul}); expected a text CSV file. "
                                 "Re-export it as UTF-8 text.")
        held = self._decoder.getstate()[0]
        try:
            self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            pos = max(exc.start - len(held), 0)
            byte = (held + data)[exc.start] if exc.start < len(held) + len(data) else 0
            line = self._lines + data.count(NEWLINE, 0, pos) + 1
            raise InputDataError(
                f"{self.source}: line {line} is not valid UTF-8 (byte "
                f"0x{byte:02x} at offset {self.bytes_read + pos}); expected a UTF-8 encoded CSV file. "
                "Re-export it as UTF-8.") from None
        first, last = data.find(NEWLINE), data.rfind(NEWLINE)
        if self._run + (first if first >= 0 else len(data)) > MAX_LINE_BYTES:
            raise InputDataError(f"{self.source}: line {self._lines + 1} is longer than {MAX_LINE_BYTES >> 20} MiB; "
                                 "expected CSV rows of the data contract (one row per line).")
        self._run = len(data) - last - 1 if last >= 0 else self._run + len(data)
        self._lines += data.count(NEWLINE)
        self.bytes_read += len(data)

    def header(self) -> str | None:
        """The first non-blank line (BOM and line end removed), or None when the file holds only blanks."""
        while True:
            line = b""
            while NEWLINE not in line:
                data = self._next(1 << 16)
                if not data:
                    break
                line += data
            line, _, self._ahead = line.partition(NEWLINE)
            text = line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")
            if text.strip():
                return text
            if not self._ahead and not data:
                return None

    def read(self, size: int = -1) -> bytes:
        if self._ahead:
            data, self._ahead = self._ahead, b""
            return data
        return self._next(size if size and size > 0 else BLOCK_BYTES)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


@dataclasses.dataclass
class _Stream:
    """An open contract file: its header checked, its rows yielded as validated, typed Arrow tables."""
    kind: str
    source: str
    reader: _CheckedReader
    present: dict            # contract column -> the file's own column name
    problems: _Problems
    rows: int = 0

    def batches(self, progress=None):
        """Typed tables with the contract's columns plus ``row_no``; problems are collected, not raised."""
        spec = _spec(self.kind)
        invalid: list = []

        def on_invalid(row):
            invalid.append(row)
            return "skip"

        names = list(self.present.values())
        try:
            batches = pcsv.open_csv(
                self.reader,
                read_options=pcsv.ReadOptions(column_names=names, block_size=BLOCK_BYTES, use_threads=False),
                parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
                convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                    strings_can_be_null=False, quoted_strings_can_be_null=False))
            for batch in batches:
                first = self.rows + 2             # data rows start on line 2 (line 1 is the header)
                self.rows += batch.num_rows
                table = _typed(spec, batch, self.present, first, self.problems)
                if progress is not None:
                    progress(self.reader.bytes_read, self.rows)
                yield table
        except pa.ArrowInvalid as exc:
            if self.rows == 0 and "Empty CSV file" in str(exc):
                return                            # a header and nothing else: the caller says so
            if "straddl" in str(exc):             # one row (a quoted value over many lines) outgrew a block
                raise InputDataError(
                    f"{self.source}: the row after data row {self.rows} is longer than {BLOCK_BYTES >> 20} MiB "
                    "(a quoted value running over many lines?); expected CSV rows of the data contract. "
                    "Nothing from this file was loaded.") from None
            raise InputDataError(f"{self.source}: not a well-formed CSV file ({_cut(str(exc), 200)}).") from None
        if invalid:
            shown = "; ".join(f"row {r.number + 1} has {r.actual_columns} fields, expected {r.expected_columns}"
                              for r in invalid[:MAX_REPORTED])
            raise InputDataError(f"{self.source}: not a well-formed CSV file ({shown}"
                                 f"{f'; and {len(invalid) - MAX_REPORTED} more' if len(invalid) > MAX_REPORTED else ''}"
                                 "). Nothing from this file was loaded.")


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _open(kind: str, fh, source: str) -> _Stream:
    """Check the file's header against the contract; the rows are read by ``_Stream.batches``."""
    spec = _spec(kind)
    reader = _CheckedReader(fh, source)
    header = reader.header()
    if header is None:
        raise InputDataError(f"{source}: the file is empty; expected a header line with the columns "
                             f"{', '.join(spec.names)} and at least one row.")
    try:
        raw_names = next(csv.reader([header]))
    except csv.Error as exc:
        raise InputDataError(f"{source}: line 1 (the header) is not a well-formed CSV line ({exc}).") from None
    names = [spec.aliases.get(c.strip().lower(), c.strip().lower()) for c in raw_names]
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise InputDataError(f"{source}: column(s) {', '.join(_show(c) if len(c) > MAX_SHOWN else c for c in dupes)}"
                             " appear more than once in the header.")
    missing = [c.name for c in spec.columns if c.required and c.name not in names]
    unknown = [c for c in names if c not in spec.names]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing required column(s) {', '.join(missing)}")
        if unknown:
            shown = ", ".join(c if len(c) <= MAX_SHOWN else _show(c) for c in unknown[:MAX_REPORTED])
            more = f" and {len(unknown) - MAX_REPORTED} more" if len(unknown) > MAX_REPORTED else ""
            parts.append(f"unknown column(s) {shown}{more}")
        raise InputDataError(f"{source}: header: {'; '.join(parts)}. Expected the {kind} columns "
                             f"{', '.join(spec.names)} (required: "
                             f"{', '.join(c.name for c in spec.columns if c.required)}).")
    # pyarrow needs distinct column names: the file's own (unique once mapped, so unique as written)
    return _Stream(kind, source, reader, dict(zip(names, raw_names)), _Problems(source))


def _typed(spec: Spec, batch: pa.RecordBatch, present: dict, first: int, problems: _Problems) -> pa.Table:
    """One parsed batch, validated column by column, as the staging table's typed columns."""
    n = batch.num_rows
    trimmed = {name: pc.utf8_trim_whitespace(batch.column(column)) for name, column in present.items()}
    out = {}
    for col in spec.columns:
        out[col.name] = _convert(trimmed[col.name], col, first, problems) if col.name in trimmed else _default(col, n)
    if spec.table == "note_concepts" and "evidence_span_end" in present:
        bad = _np(pc.less(out["evidence_span_end"], out["evidence_span_start"]))
        problems.add(bad, first, "evidence_span_end", "a value >= evidence_span_start", trimmed["evidence_span_end"])
    out["row_no"] = pa.array(np.arange(first, first + n, dtype=np.int64))
    return pa.table(out)


def _default(col: Column, n: int) -> pa.Array:
    if col.kind == "unit":
        return pa.array(np.ones(n))
    return pa.nulls(n, type=pa.int32() if col.kind == "count" else pa.string())


def _np(mask) -> np.ndarray:
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _null_where(mask: np.ndarray, s: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), s)


def _convert(s: pa.Array, col: Column, first: int, problems: _Problems) -> pa.Array:
    """Validate one trimmed string column; returns it typed (empty cells are null, or the default)."""
    empty = _np(pc.equal(s, ""))
    present = ~empty

    def flag(mask, expected):
        problems.add(mask, first, col.name, expected, s)

    if col.required:
        flag(empty, f"{_EXPECTED.get(col.kind, 'a value')} (the column is required)")
    kind = col.kind
    if kind in ("id", "text"):
        if kind == "id":
            flag(_np(pc.greater(pc.utf8_length(s), MAX_ID_LENGTH)), f"an identifier of at most {MAX_ID_LENGTH} characters")
        return _null_where(empty, s)
    if kind == "language":
        flag(present & ~_np(pc.match_substring_regex(s, _LANG.pattern)), _EXPECTED[kind])
        return pc.utf8_lower(_null_where(empty, s))
    if kind == "date":
        days = _days(s, empty)
        bad = present & np.isnat(days)
        flag(bad, _EXPECTED[kind])
        latest = latest_day()
        with np.errstate(invalid="ignore"):
            out_of_range = present & ~bad & ((days < np.datetime64(EARLIEST_DAY, "D"))
                                             | (days > np.datetime64(latest, "D")))
        flag(out_of_range, f"a date from {EARLIEST_DAY} to {latest} (not in the future)")
        return pa.array(days, type=pa.date32(), mask=np.isnat(days))
    if kind == "flag":
        ok = _np(pc.is_in(s, value_set=pa.array(["0", "1"])))
        flag(present & ~ok, _EXPECTED[kind])
        return pa.array(_np(pc.equal(s, "1")).astype(np.int16))
    num = _numbers(s, empty)
    not_number = present & np.isnan(num)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(num)
        if kind == "count":
            bad = present & (not_number | ~finite | (num < 0) | (num > MAX_INT4) | (np.mod(num, 1) != 0))
            flag(bad, _EXPECTED[kind])
            missing = empty | bad
            return pa.array(np.where(missing, 0, np.round(np.nan_to_num(num))).astype(np.int32), mask=missing)
        if kind == "unit":
            bad = present & (not_number | ~((num >= 0) & (num <= 1)))
            flag(bad, _EXPECTED[kind])
            return pa.array(np.where(empty | bad, 1.0, num))
        if kind == "amount":
            bad = present & (not_number | ~finite | (num < 0))
            flag(bad, _EXPECTED[kind])
            return pa.array(num, mask=np.isnan(num))
        if kind == "money":
            bad = present & (not_number | ~finite | (np.abs(num) > MAX_MONEY))
            flag(bad, _EXPECTED[kind])
            return pa.array(num, mask=empty | bad)
        if kind == "quantity":
            bad = present & (not_number | ~finite | (num == 0) | (np.abs(num) > MAX_INT4) | (np.mod(num, 1) != 0))
            flag(bad, _EXPECTED[kind])
            missing = empty | bad
            return pa.array(np.where(missing, 0, np.round(np.nan_to_num(num))).astype(np.int32), mask=missing)
    raise AssertionError(f"unknown column kind {kind}")


_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_ISO_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def _numbers(s: pa.Array, empty: np.ndarray) -> np.ndarray:
    """Parse numbers: plain decimals in Arrow, anything else the way ``pandas.to_numeric`` does; NaN if none."""
    out = np.full(len(s), np.nan)
    plain = _np(pc.match_substring_regex(s, _NUMBER))
    idx = np.flatnonzero(plain)
    if len(idx):
        out[idx] = pc.cast(s.take(pa.array(idx)), pa.float64()).to_numpy(zero_copy_only=False)
    other = np.flatnonzero(~plain & ~empty)
    if len(other):
        out[other] = pd.to_numeric(pd.Series(s.take(pa.array(other)).to_pylist(), dtype=object),
                                   errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return out


def _days(s: pa.Array, empty: np.ndarray) -> np.ndarray:
    """ISO-8601 dates or timestamps as UTC days (``datetime64[D]``, NaT where unparseable)."""
    days = np.full(len(s), np.datetime64("NaT"), dtype="datetime64[D]")
    plain = _np(pc.match_substring_regex(s, _ISO_DAY))
    idx = np.flatnonzero(plain)
    if len(idx):
        some = s.take(pa.array(idx))
        ts = pc.strptime(some, format="%Y-%m-%d", unit="s", error_is_null=True)
        exact = _np(pc.equal(pc.strftime(ts, format="%Y-%m-%d"), some))   # 2025-02-30 is not read as March 2
        days[idx[exact]] = ts.to_numpy(zero_copy_only=False)[exact].astype("datetime64[D]")
        plain[idx[~exact]] = False
    other = np.flatnonzero(~plain & ~empty)
    if len(other):
        parsed = pd.to_datetime(pd.Series(s.take(pa.array(other)).to_pylist(), dtype=object), format="ISO8601",
                                errors="coerce", utc=True)
        days[other] = parsed.dt.tz_convert(None).dt.normalize().to_numpy(dtype="datetime64[D]")
    return days


def _spec(kind: str) -> Spec:
    if kind not in SPECS:
        raise InputDataError(f"unknown input kind {kind!r}; expected one of {', '.join(KINDS)}.")
    return SPECS[kind]


def read_contract_csv(kind: str, data: bytes, source: str) -> pd.DataFrame:
    """Parse and validate one input file's bytes in memory; returns a typed frame with the contract's columns.

    Raises:
        InputDataError: naming the file, row, column, what was expected and what was found.
    """
    stream = _open(kind, io.BytesIO(data), source)
    tables = list(stream.batches())
    stream.problems.raise_if_any()
    if not stream.rows:
        raise InputDataError(f"{source}: the file has a header but no rows.")
    frame = pa.concat_tables(tables).to_pandas().drop(columns="row_no")
    key = list(_spec(kind).key)
    dup = frame.duplicated(key, keep=False).to_numpy()
    if dup.any():
        raise InputDataError(f"{source}: {int(dup.sum())} rows share a key ({', '.join(key)}) with another row, "
                             f"first at row {int(np.flatnonzero(dup)[0]) + 2}; each key must appear once.")
    return frame


def ingest_file(engine: sa.Engine, kind: str, path: str | Path, progress=None) -> LoadResult:
    """Validate one CSV file and load it in a single transaction (idempotent), in bounded memory.

    The file is read in blocks of ``BLOCK_BYTES``: each is parsed, validated and copied into a
    staging table before the next is read, so memory does not grow with the file. ``progress``
    is called as ``progress(bytes_read, rows_read)`` after each block; by default a bar on a
    terminal, a log line every 15 s otherwise (:class:`mlcore.progress.Progress`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: no such file.")
    with open(path, "rb") as fh, Progress(f"ingest {kind} {path.name}", total=path.stat().st_size,
                                          bytes_unit=True) as bar:
        stream = _open(kind, fh, str(path))
        return _load(engine, stream, progress or (lambda done, rows: bar.step(done, f"{rows:,} rows read")))


def _load(engine: sa.Engine, stream: _Stream, progress) -> LoadResult:
    """Stage the stream's rows, check them against the database and insert the new ones, in one transaction.

    Loads of one table are serialised (an advisory lock, taken once the rows are staged and held
    to the commit): two files loaded at once are checked one after the other, so the second is
    checked against the first's rows and a conflict between them is refused. The ``ingest_runs``
    row is written in the same transaction as the data.
    """
    kind, source = stream.kind, stream.source
    spec = _spec(kind)
    with raw_transaction(engine) as cur:
        cur.execute("SET LOCAL work_mem = '128MB'")
        _create_staging(cur, spec)
        _stage(cur, stream, progress)
        stream.problems.raise_if_any()
        if not stream.rows:
            raise InputDataError(f"{source}: the file has a header but no rows.")
        progress_log.info("%s: %d rows read and staged; checking them against the database and inserting",
                          source, stream.rows)
        advisory_xact_lock(cur, f"ingest:{spec.table}")
        cur.execute(_CLIENTS[kind])
        rows = cur.fetchall()
        _check_against_database(cur, kind, source, flagged=any(r[2] for r in rows))
        # Concept rows that all name their client (and agree with notes) are inserted without the join.
        inserted = _insert_new_rows(cur, kind, source, stream.rows, join_notes=not all(r[3] for r in rows))
        clients = tuple(sorted(r[0] for r in rows if r[0] is not None))
        newest_note = max((r[1] for r in rows if r[1] is not None), default=None)
        if inserted:
            # Fresh statistics right after a bulk load: without them the planner scans whole tables
            # for per-client reads (measured: 1.7 s -> 0.06 s for a 2,000-client upload at 1M clients).
            cur.execute(f"ANALYZE {spec.table}")
        sha = stream.reader.sha.hexdigest()
        cur.execute("INSERT INTO ingest_runs (kind, source, sha256, rows_in_file, rows_inserted) "
                    "VALUES (%s, %s, %s, %s, %s)", (kind, source, sha, stream.rows, inserted))
    return LoadResult(kind, source, stream.rows, inserted, sha, clients, newest_note)


def _create_staging(cur, spec: Spec) -> None:
    """A temporary ``staging`` table with the spec's columns, typed as in the target table, and ``row_no``.

    The types are read from the catalog rather than with ``LIKE``, which would hold a lock on the
    target table while this load waits for the table's advisory lock: a bulk load holding that
    lock and waiting to lock the table exclusively would then deadlock with it.
    """
    cur.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = CAST(%s AS regclass) AND attnum > 0 AND NOT attisdropped", (spec.table,))
    types = dict(cur.fetchall())
    columns = ", ".join(f"{c} {types[c]}" for c in spec.names)
    cur.execute(f"CREATE TEMP TABLE staging ({columns}, row_no bigint) ON COMMIT DROP")


_DONE = object()


def _stage(cur, stream: _Stream, progress) -> None:
    """COPY the stream's validated blocks into ``staging``, parsing the next block while one is copied.

    A reader thread parses and validates (pyarrow releases the GIL) while this thread copies
    (psycopg2 releases it while sending), so the file is read and the server writes at once. At
    most two blocks wait in between: memory stays bounded. After the first problem
    the rest of the file is only validated, so the message can count every bad row.
    """
    blocks: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def hand_on(item) -> None:
        while not stop.is_set():
            try:
                blocks.put(item, timeout=1)
                return
            except queue.Full:
                continue

    def read() -> None:
        try:
            for table in stream.batches(progress):
                if stop.is_set():
                    return
                if not stream.problems.total:
                    hand_on(_csv_block(table))
        except BaseException as exc:      # raised again in the copying thread
            hand_on(exc)
        finally:
            hand_on(_DONE)

    reader = threading.Thread(target=read, name="ingest-reader", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = blocks.get(timeout=1)
            except queue.Empty:
                if not reader.is_alive() and blocks.empty():
                    raise RuntimeError("the ingest reader thread ended without finishing the file") from None
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            _copy_batch(cur, item, "staging")
    finally:
        stop.set()
        reader.join()


def _csv_block(table: pa.Table) -> tuple[list[str], bytes]:
    """One Arrow table as CSV bytes for COPY (nulls as unquoted empty fields, as PostgreSQL's CSV reads them)."""
    buf = io.BytesIO()
    pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
    return table.column_names, buf.getvalue()


def _copy_batch(cur, block: tuple[list[str], bytes], target: str) -> None:
    """COPY one CSV block of ``_csv_block`` into ``target``."""
    columns, data = block
    cur.copy_expert(f"COPY {target} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '')",
                    io.BytesIO(data), size=1 << 20)


# Each table's key as expressions over a row alias (those of its unique index: a missing span counts as -1).
_KEY = {
    "notes": ("{a}.note_id",),
    "concepts": ("{a}.note_id", "{a}.concept_id", "coalesce({a}.evidence_span_start, -1)",
                 "coalesce({a}.evidence_span_end, -1)"),
    "outcomes": ("{a}.client_id", "{a}.date"),
    "transactions": ("{a}.client_id", "coalesce({a}.transaction_id, '')", "{a}.date", "{a}.amount",
                     "coalesce({a}.store, '')", "coalesce({a}.category, '')", "coalesce({a}.quantity, 0)"),
}


def _key(kind: str, alias: str) -> list[str]:
    return [e.format(a=alias) for e in _KEY[kind]]


def _insert_new_rows(cur, kind: str, source: str, staged: int, join_notes: bool = True) -> int:
    """Insert the staged rows whose key is not in the table yet; returns how many.

    Concept rows take their ``client_id`` from ``notes`` (``join_notes``) unless every one names it
    and the checks found it agrees with the note's.

    A load of at least ``BULK_MIN_ROWS`` new rows, and no fewer than the table holds, drops the
    table's own indexes and foreign keys for the insert and builds them again after it, as
    PostgreSQL's "Populating a Database" advises; the table is locked against readers meanwhile.
    A key that appears twice in the file is refused whole (the unique index or the count below).
    """
    spec = _spec(kind)
    cols = spec.names
    on = " AND ".join(f"{t} = {x}" for t, x in zip(_key(kind, "t"), _key(kind, "s")))
    cur.execute(f"SELECT count(*), count(DISTINCT t.ctid) FROM staging s JOIN {spec.table} t ON {on}")
    present, distinct = cur.fetchone()
    if present != distinct:
        _raise_duplicates(cur, kind, source)
    cur.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = CAST(%s AS regclass)", (spec.table,))
    bulk = staged - present >= BULK_MIN_ROWS and staged - present >= cur.fetchone()[0]
    col_list = ", ".join(cols)
    if kind == "concepts" and join_notes:
        select = ", ".join("n.client_id" if c == "client_id" else f"s.{c}" for c in cols)
        source_rows = "staging s JOIN notes n ON n.note_id = s.note_id"
    else:
        select, source_rows = ", ".join(f"s.{c}" for c in cols), "staging s"
    cur.execute("SAVEPOINT before_insert")
    try:
        rebuild = _drop_indexes(cur, spec.table) if bulk else []
        new_only = f" WHERE NOT EXISTS (SELECT 1 FROM {spec.table} t WHERE {on})" if present else ""
        cur.execute(f"INSERT INTO {spec.table} ({col_list}) SELECT {select} FROM {source_rows}{new_only}")
        inserted = cur.rowcount
        if rebuild:
            cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
            for statement in rebuild:
                cur.execute(statement)
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT before_insert")
        _raise_duplicates(cur, kind, source)
    if inserted + present != staged:
        _raise_duplicates(cur, kind, source)
    return inserted


def _drop_indexes(cur, table: str) -> list[str]:
    """Drop ``table``'s foreign keys and the indexes no constraint owns; returns the statements that rebuild them."""
    try:
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(LOCK_TIMEOUT_SECONDS * 1000)}ms",))
        cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    except psycopg2.errors.LockNotAvailable:
        raise LockTimeoutError(f"waited {LOCK_TIMEOUT_SECONDS:g}s to lock the table {table} for a bulk load, which "
                               "other sessions are reading or writing; nothing was written. Load the file again "
                               "when they are done.") from None
    cur.execute("SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "WHERE i.indrelid = CAST(%s AS regclass) "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)", (table,))
    indexes = cur.fetchall()
    cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = CAST(%s AS regclass) AND contype = 'f'", (table,))
    foreign = cur.fetchall()
    for name, _ in foreign:
        cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote_ident(name, cur)}")
    for name, _ in indexes:
        cur.execute(f"DROP INDEX {name}")
    return ([definition for _, definition in indexes]
            + [f"ALTER TABLE {table} ADD CONSTRAINT {quote_ident(name, cur)} {definition}" for name, definition in foreign])


def _raise_duplicates(cur, kind: str, source: str) -> None:
    """Raise the rows of the file that share a key (the transaction is rolled back)."""
    group = ", ".join(_key(kind, "staging"))
    cur.execute(f"SELECT array_agg(row_no ORDER BY row_no), {group} FROM staging GROUP BY {group} "
                f"HAVING count(*) > 1 ORDER BY min(row_no) LIMIT %s", (MAX_REPORTED,))
    shown = cur.fetchall()
    cur.execute(f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM staging GROUP BY {group} "
                "HAVING count(*) > 1) d")
    total = cur.fetchone()[0]
    names = ", ".join(_spec(kind).key)
    lines = [f"{source}: rows {', '.join(str(r) for r in rows)} repeat the key ({names}) = "
             f"{_show(values[0] if len(values) == 1 else tuple(values))}" for rows, *values in shown]
    raise InputDataError("\n".join(lines) + f"\n{total} rows share a key with another row; each key must appear "
                         "once. Nothing from this file was loaded.")


# Each client the staged rows are about, with the newest note date among them (notes and concepts),
# whether any of its rows disagrees with the notes table and whether all of them name their client
# (concepts: one pass over the join).
_CLIENTS = {
    "notes": "SELECT client_id, max(date), false, true FROM staging GROUP BY client_id",
    "concepts": "SELECT n.client_id, max(n.date), bool_or(n.note_id IS NULL OR (s.client_id IS NOT NULL AND "
                "s.client_id <> n.client_id)), bool_and(s.client_id IS NOT NULL) "
                "FROM staging s LEFT JOIN notes n USING (note_id) GROUP BY n.client_id",
    "outcomes": "SELECT DISTINCT client_id, CAST(NULL AS date), false, true FROM staging",
    "transactions": "SELECT DISTINCT client_id, CAST(NULL AS date), false, true FROM staging",
}


# Checks of the staged rows against the database: each query returns (row, column, expected, found, problem).
_CHECKS = {
    "notes": [
        "SELECT s.row_no, 'note_id', s.note_id || ' is already loaded for client ' || t.client_id || ' on ' || t.date,"
        " 'client ' || s.client_id || ' on ' || s.date, 'conflicts with a note already in the database' "
        "FROM staging s JOIN notes t USING (note_id) "
        "WHERE (t.client_id, t.date, t.language) IS DISTINCT FROM (s.client_id, s.date, s.language) "
        "ORDER BY s.row_no LIMIT 5"],
    "concepts": [
        # the rows _CLIENTS flags: unknown notes and disagreeing clients (run only when it flags any)
        "SELECT s.row_no, CASE WHEN n.note_id IS NULL THEN 'note_id' ELSE 'client_id' END, "
        " CASE WHEN n.note_id IS NULL THEN 'a note_id present in notes (load notes first)' "
        "  ELSE n.client_id || ' (the client of note ' || s.note_id || ')' END, "
        " CASE WHEN n.note_id IS NULL THEN s.note_id ELSE s.client_id END, "
        " CASE WHEN n.note_id IS NULL THEN 'refers to a note that is not in the notes table' "
        "  ELSE 'disagrees with the note''s client' END "
        "FROM staging s LEFT JOIN notes n USING (note_id) "
        "WHERE n.note_id IS NULL OR (s.client_id IS NOT NULL AND s.client_id <> n.client_id) "
        "ORDER BY s.row_no LIMIT 5",
        "SELECT s.row_no, 'concept_id', 'the values already loaded for this key', s.concept_id, "
        " 'conflicts with a concept row already in the database' "
        "FROM staging s JOIN note_concepts t ON t.note_id = s.note_id AND t.concept_id = s.concept_id "
        " AND coalesce(t.evidence_span_start, -1) = coalesce(s.evidence_span_start, -1)"
        " AND coalesce(t.evidence_span_end, -1) = coalesce(s.evidence_span_end, -1) "
        "WHERE (t.matched_alias, t.detection_method, t.confidence) IS DISTINCT FROM "
        " (s.matched_alias, s.detection_method, s.confidence) ORDER BY s.row_no LIMIT 5"],
    "outcomes": [
        "SELECT s.row_no, 'client_id/date', 'the values already loaded: purchased=' || t.purchased || "
        " ', churned=' || t.churned || ', lifetime_value=' || t.lifetime_value,"
        " 'purchased=' || s.purchased || ', churned=' || s.churned || ', lifetime_value=' || s.lifetime_value, "
        " 'conflicts with an outcome already in the database' "
        "FROM staging s JOIN outcomes t USING (client_id, date) "
        "WHERE (t.purchased, t.churned, t.lifetime_value) IS DISTINCT FROM (s.purchased, s.churned, s.lifetime_value) "
        "ORDER BY s.row_no LIMIT 5"],
    # a transaction_id names one transaction of its client: the same id with other values is a conflict,
    # in the file itself or with what is loaded
    "transactions": [
        "SELECT s.row_no, 'transaction_id', 'one set of values per transaction_id of a client (row ' || o.row_no "
        " || ' of the file has date ' || o.date || ', amount ' || o.amount || ')', s.transaction_id, "
        " 'repeats a transaction_id of the file with other values' "
        "FROM staging s JOIN staging o ON o.client_id = s.client_id AND o.transaction_id = s.transaction_id "
        " AND o.row_no < s.row_no "
        "WHERE (o.date, o.amount, o.store, o.category, o.quantity) IS DISTINCT FROM "
        " (s.date, s.amount, s.store, s.category, s.quantity) ORDER BY s.row_no LIMIT 5",
        "SELECT s.row_no, 'transaction_id', 'the values already loaded for it: date ' || t.date || ', amount ' "
        " || t.amount, s.transaction_id, 'conflicts with a transaction already in the database' "
        "FROM staging s JOIN transactions t ON t.client_id = s.client_id AND t.transaction_id = s.transaction_id "
        "WHERE (t.date, t.amount, t.store, t.category, t.quantity) IS DISTINCT FROM "
        " (s.date, s.amount, s.store, s.category, s.quantity) ORDER BY s.row_no LIMIT 5"],
}


def _check_against_database(cur, kind: str, source: str, flagged: bool = True) -> None:
    """Raise the staged rows that conflict with the database; ``flagged``: whether ``_CLIENTS`` flagged any."""
    for sql in _CHECKS[kind][0 if flagged or kind != "concepts" else 1:]:
        cur.execute(sql)
        rows = cur.fetchall()
        if rows:
            lines = [f"{source}: row {r[0]}, column '{r[1]}' {r[4]}: expected {r[2]}, found {_show(r[3])}"
                     for r in rows]
            raise InputDataError("\n".join(lines) + "\nNothing from this file was loaded.")
