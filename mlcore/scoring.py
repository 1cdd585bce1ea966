"""Scoring: the champion of a tier scores every client with notes as of a date, chunk by chunk.

The whole (scored_for, tier) slice is replaced in one transaction: a re-run writes the same rows,
and a failure part-way leaves the previous rows untouched.

Example:
    >>> from mlcore.scoring import score
    >>> score(engine, settings, "elite", datetime.date(2025, 6, 1))  # doctest: +SKIP
"""
from __future__ import annotations

import ctypes
import dataclasses
import datetime as dt
import logging
import os
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mlcore.config import Settings
from mlcore.db import advisory_xact_lock, copy_rows_binary, raw_transaction, read_frame
from mlcore.history_io import any_transactions, history_as_of
from mlcore.progress import Progress
from mlcore.exceptions import DataQualityError
from mlcore.registry import Registry
from mlcore.tiers import OUTPUTS

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    tier: str
    scored_for: dt.date
    model_version: int
    run_id: str
    n_clients: int
    seconds: float


def _known_sql(engine: sa.Engine, where: str = "", limit: bool = False) -> str:
    """Distinct ids of the clients with a note (or, once transactions are loaded, a transaction) dated
    on or before ``%(d)s``, with ``where``'s extra conditions, in id order, at most ``%(n)s`` when ``limit``.

    Without transactions it is the notes query alone (an index scan); with them each table is read
    up to the limit and the union is cut again, so keyset pagination stays a scan of one chunk.
    """
    tail = " ORDER BY client_id" + (" LIMIT %(n)s" if limit else "")
    part = "SELECT DISTINCT client_id FROM {t} WHERE date <= %(d)s" + where + tail
    if not any_transactions(engine):
        return part.format(t="notes")
    return f"SELECT client_id FROM (({part.format(t='notes')}) UNION ({part.format(t='transactions')})) k{tail}"


def clients_with_notes(engine: sa.Engine, as_of: dt.date, clients: list[str] | None = None) -> pd.Series:
    """Sorted ids of the clients known as of ``as_of``: with at least one note, or one transaction,
    dated on or before it."""
    params = {"d": as_of}
    where = ""
    if clients is not None:
        where = " AND client_id = ANY(%(c)s)"
        params["c"] = list(clients)
    ids = read_frame(engine, _known_sql(engine, where), params, dtype={"client_id": str})["client_id"]
    return ids.sort_values(kind="stable").reset_index(drop=True)


def input_facts(engine: sa.Engine, day: dt.date) -> tuple[bool, dt.date | None]:
    """Whether any note or transaction is loaded at all, and the newest of them dated on or before
    ``day`` (or None): what a client base known by its notes, its purchases or both is scored from."""
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT EXISTS (SELECT 1 FROM notes) OR EXISTS (SELECT 1 FROM transactions) AS any_inputs, "
            "greatest((SELECT max(date) FROM notes WHERE date <= :d), "
            "(SELECT max(date) FROM transactions WHERE date <= :d)) AS newest"), {"d": day}).one()
    return bool(row.any_inputs), row.newest


def _history(engine: sa.Engine, clients: pd.Series, as_of: dt.date, ranged: bool):
    """The history of ``clients`` (sorted); ``ranged`` reads their notes by id range, else by list."""
    lo, hi = (clients.iloc[0], clients.iloc[-1]) if ranged else (None, None)
    return history_as_of(engine, clients, as_of, lo, hi)


def id_chunks(engine: sa.Engine, as_of: dt.date, size: int, lo: str | None = None,
              hi: str | None = None) -> Iterator[pd.Series]:
    """Sorted ids of the clients known as of ``as_of`` (within [lo, hi]), ``size`` at a time.

    Keyset pagination over the (client_id, date) index: only one chunk of ids is ever in memory.
    """
    where = " AND client_id > %(after)s"
    params = {"d": as_of, "after": "", "n": size}
    if lo is not None:
        where += " AND client_id >= %(lo)s AND client_id <= %(hi)s"
        params.update(lo=lo, hi=hi)
    sql = _known_sql(engine, where, limit=True)
    while True:
        ids = read_frame(engine, sql, params, dtype={"client_id": str})["client_id"]
        if ids.empty:
            return
        yield ids
        params["after"] = ids.iloc[-1]


def _list_chunks(ids: pd.Series, size: int) -> Iterator[pd.Series]:
    for start in range(0, len(ids), size):
        yield ids.iloc[start:start + size].reset_index(drop=True)


def _read_next(chunks: Iterator[pd.Series], engine: sa.Engine, as_of: dt.date, ranged: bool):
    chunk = next(chunks, None)
    return None if chunk is None else (chunk, _history(engine, chunk, as_of, ranged))


def _cap_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (``MALLOC_ARENA_MAX``) unless the environment sets it; no-op elsewhere.

    glibc gives each thread that allocates its own arena, and each arena keeps its freed chunks, so
    the pipeline's threads made peak memory creep up with the number of chunks (measured at 1M
    clients: 475 MiB with the default, 397 MiB and flat after the first chunks with two arenas).
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)    # -8 is M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):                    # not glibc
        pass


def _write_chunks(cur, pipeline, engine, chunks: Iterator[pd.Series], scored_for: dt.date, ranged: bool,
                  table: str, constants: dict) -> int:
    """Predict each chunk of client ids and COPY the rows into ``table`` through ``cur``; returns the count.

    A three-stage pipeline: while chunk k is featurised and predicted, chunk k + 1 is read from
    Postgres and chunk k - 1 is written, each on its own thread (the database work and the
    driver's I/O release the GIL). At most one chunk is in each stage, so memory stays bounded.
    """
    n = 0
    _cap_malloc_arenas()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="scoring") as pool, \
            Progress(f"score {constants['tier']} for {scored_for}", unit="clients") as bar:
        reading = pool.submit(_read_next, chunks, engine, scored_for, ranged)
        writing = None
        try:
            while (item := reading.result()) is not None:
                chunk, history = item
                reading = pool.submit(_read_next, chunks, engine, scored_for, ranged)
                pred = pipeline.predict(history)
                del history, item
                rows = pd.DataFrame({"scored_for": pd.Timestamp(scored_for), "client_id": chunk, **constants})
                for i, col in enumerate(OUTPUTS):
                    rows[col] = pred[:, i]
                if writing is not None:
                    writing.result()          # one COPY at a time on the transaction's cursor
                writing = pool.submit(copy_rows_binary, cur, rows, table)
                n += len(chunk)
                bar.step(n)
            if writing is not None:
                writing.result()
        finally:
            for future in (reading, writing):  # never leave a thread on the cursor when the caller rolls back
                if future is not None:
                    future.cancel()
                    try:
                        future.result()
                    except BaseException:  # noqa: BLE001 - the first error is already propagating
                        pass
    return n


def upload_day(events: Iterable[dict], fallback: dt.date) -> dt.date:
    """The day an upload is scored for: the newest ``max_note_date`` among the upload events' extras.

    That is the date of the newest note the uploaded concepts are about, so a backfilled upload is
    scored for its own day, not for the day it happened to arrive. Runs without such an event (a
    manual run, an event from before the extra existed) use ``fallback``, the run's logical day.
    Several uploads in one run are scored together for the newest of their days, which is as of
    every note they carry.
    """
    days = [dt.date.fromisoformat(e["max_note_date"]) for e in events if (e or {}).get("max_note_date")]
    return max(days, default=fallback)


def upload_clients(engine: sa.Engine, day: dt.date, requested: Iterable[str], events: Iterable[dict]) -> list[str]:
    """The clients an upload run scores, sorted: ``requested`` and the clients the upload events name.

    When neither names any (a manual run without ``clients``, or an upload too large for its event to
    list its clients), the clients with a note dated on ``day``.
    """
    clients = set(requested).union(*((e or {}).get("clients", []) for e in events))
    if not clients:
        with engine.connect() as conn:
            clients = set(conn.execute(sa.text("SELECT DISTINCT client_id FROM notes WHERE date = :d"),
                                       {"d": day}).scalars())
    return sorted(clients)


def upload_skip_reason(tier: str, champion_version: int | None, clients: Collection[str],
                       day: dt.date) -> str | None:
    """Why an upload's clients are not scored with ``tier``'s champion, or None to score them.

    An upload before the tier's first model is trained (a fresh install, the first drop) is expected,
    not a failure: there is nothing to score with, so the run is skipped, saying how to train one.
    """
    if champion_version is None:
        return (f"no {tier} champion is registered yet, so the upload of {day} is not scored: train one with a "
                f"manual weekly_retrain run (param tiers [\"{tier}\"]) or `mlcore train --tier {tier}`; the "
                f"uploads after that are scored.")
    if not clients:
        return f"no uploaded clients to score for {day}"
    return None


def score(engine: sa.Engine, settings: Settings, tier: str, scored_for: dt.date, run_id: str | None = None,
          clients: list[str] | None = None, chunk_size: int | None = None) -> ScoreResult:
    """Score ``tier``'s champion for ``scored_for`` and replace that slice of ``predictions``.

    Args:
        clients: Score only these clients (their rows in the slice are replaced, others kept).
        chunk_size: Clients per chunk; defaults to ``settings.score_chunk_size``.
    """
    started = time.perf_counter()
    run_id = run_id or f"manual__{uuid.uuid4().hex[:12]}"
    registry = Registry(engine, settings.model_store)
    champion = registry.require_champion(tier)
    pipeline = registry.load(champion)
    size = chunk_size or settings.score_chunk_size
    chunks = (id_chunks(engine, scored_for, size) if clients is None
              else _list_chunks(clients_with_notes(engine, scored_for, clients), size))

    with raw_transaction(engine) as cur:
        advisory_xact_lock(cur, f"predictions:{tier}:{scored_for}")
        if clients is None:
            cur.execute("DELETE FROM predictions WHERE scored_for = %s AND tier = %s", (scored_for, tier))
        else:
            cur.execute("DELETE FROM predictions WHERE scored_for = %s AND tier = %s AND client_id = ANY(%s)",
                        (scored_for, tier, list(clients)))
        n = _write_chunks(cur, pipeline, engine, chunks, scored_for, ranged=clients is None, table="predictions",
                          constants={"tier": tier, "model_version": champion.version, "run_id": run_id})
    seconds = time.perf_counter() - started
    log.info("scored %d clients with %s v%d for %s in %.1fs", n, tier, champion.version, scored_for, seconds)
    return ScoreResult(tier, scored_for, champion.version, run_id, n, seconds)


# --- partitioned scoring (one Airflow mapped task per partition, then one publishing transaction)

def plan_partitions(engine: sa.Engine, scored_for: dt.date, n_partitions: int) -> list[dict]:
    """Split the clients with notes as of ``scored_for`` into at most ``n_partitions`` id ranges of equal size."""
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be >= 1, got {n_partitions}.")
    ids = clients_with_notes(engine, scored_for)
    parts = [p for p in np.array_split(np.arange(len(ids)), n_partitions) if len(p)]
    return [{"partition": i, "lo": ids.iloc[p[0]], "hi": ids.iloc[p[-1]], "n": int(len(p))}
            for i, p in enumerate(parts)]


def score_partition(engine: sa.Engine, settings: Settings, tier: str, scored_for: dt.date, run_id: str,
                    partition: dict, model_version: int) -> int:
    """Score one partition with a fixed model version into ``prediction_batches`` (re-runnable)."""
    registry = Registry(engine, settings.model_store)
    pipeline = registry.load(registry.get(tier, model_version))
    chunks = id_chunks(engine, scored_for, settings.score_chunk_size, partition["lo"], partition["hi"])
    with raw_transaction(engine) as cur:
        cur.execute("DELETE FROM prediction_batches WHERE run_id = %s AND partition = %s",
                    (run_id, partition["partition"]))
        n = _write_chunks(cur, pipeline, engine, chunks, scored_for, ranged=True, table="prediction_batches",
                          constants={"tier": tier, "model_version": model_version, "run_id": run_id,
                                     "partition": partition["partition"]})
    return n


def publish(engine: sa.Engine, tier: str, scored_for: dt.date, run_id: str, partitions: list[dict]) -> int:
    """Replace the (scored_for, tier) slice of ``predictions`` with the run's staged partitions, atomically."""
    with engine.begin() as conn:
        advisory_xact_lock(conn, f"predictions:{tier}:{scored_for}")
        staged = dict(conn.execute(sa.text(
            "SELECT partition, count(*) FROM prediction_batches WHERE run_id = :r AND tier = :t "
            "AND scored_for = :d GROUP BY partition"), {"r": run_id, "t": tier, "d": scored_for}).all())
        short = [p["partition"] for p in partitions if staged.get(p["partition"], 0) != p["n"]]
        if short:
            raise DataQualityError(f"run {run_id}: partitions {short} are missing or incomplete in "
                                   f"prediction_batches (staged {staged}); re-run their scoring tasks.")
        conn.execute(sa.text("DELETE FROM predictions WHERE scored_for = :d AND tier = :t"),
                     {"d": scored_for, "t": tier})
        n = conn.execute(sa.text(
            "INSERT INTO predictions (scored_for, tier, client_id, model_version, purchase_likelihood, churn_risk, "
            " predicted_clv, run_id) SELECT scored_for, tier, client_id, model_version, purchase_likelihood, "
            " churn_risk, predicted_clv, run_id FROM prediction_batches WHERE run_id = :r"), {"r": run_id}).rowcount
        # What a killed earlier run of the same slice staged is never published: drop it with ours. A run
        # that began staging after ours (running now, alongside) keeps its rows.
        stale = conn.execute(sa.text(
            "DELETE FROM prediction_batches WHERE tier = :t AND scored_for = :d AND run_id <> :r AND created_at < "
            "(SELECT min(created_at) FROM prediction_batches WHERE run_id = :r)"),
            {"r": run_id, "t": tier, "d": scored_for}).rowcount
        if stale:
            log.warning("removed %d rows an earlier, unfinished run staged for %s %s", stale, tier, scored_for)
        conn.execute(sa.text("DELETE FROM prediction_batches WHERE run_id = :r"), {"r": run_id})
    return n


def quality_checks(engine: sa.Engine, tier: str, scored_for: dt.date) -> dict:
    """Check the published slice: one row per known client (a note or a transaction by then), no nulls,
    values in range, one model."""
    with engine.connect() as conn:
        r = conn.execute(sa.text(
            "SELECT count(*) AS rows, count(DISTINCT model_version) AS models, "
            " count(*) FILTER (WHERE purchase_likelihood IS NULL OR churn_risk IS NULL OR predicted_clv IS NULL "
            "   OR 'NaN' IN (purchase_likelihood, churn_risk, predicted_clv)) AS nulls, "
            " count(*) FILTER (WHERE purchase_likelihood NOT BETWEEN 0 AND 1 OR churn_risk NOT BETWEEN 0 AND 1 "
            "   OR predicted_clv < 0 OR predicted_clv = 'Infinity') AS out_of_range "
            "FROM predictions WHERE scored_for = :d AND tier = :t"), {"d": scored_for, "t": tier}).one()._asdict()
    known = read_frame(engine, f"SELECT count(*) AS n FROM ({_known_sql(engine)}) known", {"d": scored_for})
    r["clients"] = int(known["n"].iloc[0])
    failures = []
    if r["rows"] != r["clients"]:
        failures.append(f"{r['rows']} prediction rows for {r['clients']} clients known by then "
                        f"(a note or a transaction)")
    if r["nulls"]:
        failures.append(f"{r['nulls']} rows with a null or NaN prediction")
    if r["out_of_range"]:
        failures.append(f"{r['out_of_range']} rows with a prediction out of range")
    if r["models"] > 1:
        failures.append(f"{r['models']} model versions in one slice")
    if failures:
        raise DataQualityError(f"predictions for {scored_for} ({tier}): " + "; ".join(failures) + ".")
    return r
