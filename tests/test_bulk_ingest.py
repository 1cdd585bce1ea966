"""Bulk loads: indexes and foreign keys dropped and rebuilt, duplicates refused, memory bounded."""
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlcore import ingest
from mlcore.exceptions import InputDataError, LockTimeoutError
from mlcore.ingest import ingest_file
from pg import count

CONCEPT_COLUMNS = ["note_id", "client_id", "concept_id", "matched_alias", "evidence_span_start",
                   "evidence_span_end", "detection_method", "confidence"]


def write_notes(path, n_notes: int, n_clients: int, prefix: str = "n") -> None:
    i = np.arange(n_notes)
    pd.DataFrame({"note_id": [f"{prefix}{k}" for k in i], "client_id": [f"c{k % n_clients}" for k in i],
                  "date": (pd.Timestamp("2025-01-01") + pd.to_timedelta(i % 365, unit="D")).strftime("%Y-%m-%d"),
                  "language": "en"}).to_csv(path, index=False)


def write_concepts(path, n_rows: int, n_notes: int, prefix: str = "n") -> None:
    """``n_rows`` distinct concept rows over the notes ``prefix0 .. prefix{n_notes-1}``."""
    i = np.arange(n_rows)
    pd.DataFrame({"note_id": [f"{prefix}{k % n_notes}" for k in i], "client_id": "",
                  "concept_id": [f"concept_{k % 40}" for k in i], "matched_alias": "alias",
                  "evidence_span_start": i // n_notes, "evidence_span_end": i // n_notes + 5,
                  "detection_method": "rule", "confidence": 0.5}).to_csv(path, index=False, columns=CONCEPT_COLUMNS)


def schema_of(engine, table: str) -> tuple[list, list]:
    with engine.connect() as conn:
        indexes = conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = :t ORDER BY 1"),
                               {"t": table}).scalars().all()
        constraints = conn.execute(sa.text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                           "WHERE conrelid = CAST(:t AS regclass) ORDER BY 1"), {"t": table}).all()
    return indexes, [tuple(c) for c in constraints]


@pytest.fixture
def bulk_at_100(monkeypatch):
    monkeypatch.setattr(ingest, "BULK_MIN_ROWS", 100)


def test_a_bulk_load_rebuilds_every_index_and_foreign_key(engine, tmp_path, bulk_at_100):
    before = {t: schema_of(engine, t) for t in ("notes", "note_concepts")}
    assert before["note_concepts"][1], "note_concepts should have a foreign key to notes"
    write_notes(tmp_path / "notes.csv", 300, 50)
    write_concepts(tmp_path / "concepts.csv", 900, 300)
    assert ingest_file(engine, "notes", tmp_path / "notes.csv").rows_inserted == 300
    assert ingest_file(engine, "concepts", tmp_path / "concepts.csv").rows_inserted == 900
    assert {t: schema_of(engine, t) for t in before} == before
    with engine.connect() as conn:               # the rebuilt foreign key is enforced
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text("INSERT INTO note_concepts (note_id, client_id, concept_id, detection_method) "
                                 "VALUES ('nope', 'c1', 'x', 'rule')"))
    # A second, smaller file is not a bulk load (fewer rows than the table holds) and loads as usual.
    write_notes(tmp_path / "more.csv", 150, 50, prefix="m")
    assert ingest_file(engine, "notes", tmp_path / "more.csv").rows_inserted == 150
    assert count(engine, "notes") == 450 and schema_of(engine, "notes") == before["notes"]


def test_a_repeated_key_in_a_bulk_load_is_refused_and_the_indexes_stay(engine, tmp_path, bulk_at_100):
    before = schema_of(engine, "notes")
    write_notes(tmp_path / "notes.csv", 300, 50)
    lines = (tmp_path / "notes.csv").read_text().splitlines()
    (tmp_path / "notes.csv").write_text("\n".join(lines + [lines[5].replace(",en", ",fr")]) + "\n")
    with pytest.raises(InputDataError) as err:
        ingest_file(engine, "notes", tmp_path / "notes.csv")
    assert "rows 6, 302 repeat the key (note_id) = 'n4'" in str(err.value)
    assert count(engine, "notes") == 0 and count(engine, "ingest_runs") == 0
    assert schema_of(engine, "notes") == before


def test_a_bulk_load_waits_for_readers_with_a_timeout_and_writes_nothing(engine, tmp_path, bulk_at_100, monkeypatch):
    monkeypatch.setattr(ingest, "LOCK_TIMEOUT_SECONDS", 1)
    write_notes(tmp_path / "notes.csv", 300, 50)
    reader = engine.connect()
    reader.execute(sa.text("BEGIN; SELECT count(*) FROM notes"))     # an analyst's open transaction
    try:
        with pytest.raises(LockTimeoutError, match="waited 1s to lock the table notes for a bulk load"):
            ingest_file(engine, "notes", tmp_path / "notes.csv")
    finally:
        reader.rollback()
        reader.close()
    assert count(engine, "notes") == 0 and count(engine, "ingest_runs") == 0
    assert ingest_file(engine, "notes", tmp_path / "notes.csv").rows_inserted == 300   # once the reader is gone


def test_two_bulk_loads_at_once_are_serialised(engine, tmp_path, bulk_at_100):
    write_notes(tmp_path / "a.csv", 300, 50, prefix="a")
    write_notes(tmp_path / "b.csv", 300, 50, prefix="b")
    results, errors = [], []

    def load(name):
        try:
            results.append(ingest_file(engine, "notes", tmp_path / name).rows_inserted)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(n,)) for n in ("a.csv", "b.csv")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and sorted(results) == [300, 300] and count(engine, "notes") == 600


# The command's own peak (VmHWM starts afresh at exec; ru_maxrss would carry the forking parent's peak).
PEAK = """
import sys
from mlcore.cli import main
try:
    main(["ingest", sys.argv[1], sys.argv[2]])
finally:
    print([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0], file=sys.stderr)
"""


def peak_rss_mib(engine, kind: str, path) -> float:
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PEAK, kind, str(path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "new rows loaded into" in done.stdout
    return int(done.stderr.rsplit("VmHWM:", 1)[1].split()[0]) / 1024


@pytest.mark.slow
def test_ingest_memory_does_not_grow_with_the_file(engine, tmp_path):
    """The command's peak memory for a 3.6M-row concept file is within 60 MiB of a 1.2M-row file's.

    Before streaming, ingest held the whole file several times over (8.2 GB for 10.4M rows, about
    800 bytes a row): the larger file here would have needed about 1.8 GB more than the smaller.
    Both files outgrow pyarrow's read-ahead (about eight 2 MiB blocks), below which memory still
    grows a little (measured: 205 MiB at 0.4M rows, 287 MiB at 1.6M, 298 MiB at 6.4M).
    """
    write_notes(tmp_path / "notes.csv", 200_000, 20_000)
    ingest_file(engine, "notes", tmp_path / "notes.csv")
    write_concepts(tmp_path / "small.csv", 1_200_000, 200_000)
    small = peak_rss_mib(engine, "concepts", tmp_path / "small.csv")
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE note_concepts"))
    write_concepts(tmp_path / "large.csv", 3_600_000, 200_000)
    large = peak_rss_mib(engine, "concepts", tmp_path / "large.csv")
    assert count(engine, "note_concepts") == 3_600_000
    assert large - small < 60, f"peak RSS {small:.0f} MiB for 1.2M rows, {large:.0f} MiB for 3.6M rows"


def test_a_row_longer_than_a_block_is_named(engine, tmp_path):
    value = '"' + ("x" * 1000 + "\n") * (2 * ingest.BLOCK_BYTES // 1000) + '"'   # one quoted value over many lines
    path = tmp_path / "concepts.csv"
    path.write_text("note_id,concept_id,matched_alias\nn1,c1,a\nn1,c2," + value + "\n")
    with pytest.raises(InputDataError, match="the row after data row 1 is longer than 2 MiB"):
        ingest_file(engine, "concepts", path)
    assert count(engine, "note_concepts") == 0
