"""Scoring: the champion of a tier scores every client with notes as of a date, chunk by chunk.

The whole (scored_for, tier) slice is replaced in one transaction: a re-run writes the same rows,
and a failure part-way leaves the previous rows untouched.

Example:
    >>> from mlcore.scoring import score
    >>> score(engine, settings, "elite", datetime.date(2025, 6, 1))  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mlcore.config import Settings
from mlcore.db import copy_frame, read_frame
from mlcore.history_io import history_as_of
from mlcore.registry import Registry
from mlcore.tiers import OUTPUTS

log = logging.getLogger(__name__)
PREDICTION_COLUMNS = ["scored_for", "tier", "client_id", "model_version", *OUTPUTS, "run_id"]


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    tier: str
    scored_for: dt.date
    model_version: int
    run_id: str
    n_clients: int
    seconds: float


def clients_with_notes(engine: sa.Engine, as_of: dt.date, clients: list[str] | None = None) -> pd.Series:
    """Sorted ids of the clients that have at least one note dated on or before ``as_of``."""
    sql = "SELECT DISTINCT client_id FROM notes WHERE date <= %(d)s"
    params = {"d": as_of}
    if clients is not None:
        sql += " AND client_id = ANY(%(c)s)"
        params["c"] = list(clients)
    ids = read_frame(engine, sql + " ORDER BY client_id", params, dtype={"client_id": str})["client_id"]
    return ids.sort_values(kind="stable").reset_index(drop=True)


def predict_frame(pipeline, engine: sa.Engine, clients: pd.Series, as_of: dt.date, ranged: bool) -> np.ndarray:
    """Predictions for ``clients`` (sorted); ``ranged`` reads their notes by id range, else by list."""
    lo, hi = (clients.iloc[0], clients.iloc[-1]) if ranged else (None, None)
    history = history_as_of(engine, clients, as_of, lo, hi)
    return pipeline.predict(history)


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
    ids = clients_with_notes(engine, scored_for, clients)
    size = chunk_size or settings.score_chunk_size

    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('predictions:' || %s || ':' || %s))",
                    (tier, str(scored_for)))
        if clients is None:
            cur.execute("DELETE FROM predictions WHERE scored_for = %s AND tier = %s", (scored_for, tier))
        else:
            cur.execute("DELETE FROM predictions WHERE scored_for = %s AND tier = %s AND client_id = ANY(%s)",
                        (scored_for, tier, list(clients)))
        for start in range(0, len(ids), size):
            chunk = ids.iloc[start:start + size].reset_index(drop=True)
            pred = predict_frame(pipeline, engine, chunk, scored_for, ranged=clients is None)
            rows = pd.DataFrame({"scored_for": pd.Timestamp(scored_for), "tier": tier, "client_id": chunk,
                                 "model_version": champion.version, "run_id": run_id})
            for i, col in enumerate(OUTPUTS):
                rows[col] = pred[:, i]
            copy_frame(cur, rows, "predictions", PREDICTION_COLUMNS)
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
    seconds = time.perf_counter() - started
    log.info("scored %d clients with %s v%d for %s in %.1fs", len(ids), tier, champion.version, scored_for, seconds)
    return ScoreResult(tier, scored_for, champion.version, run_id, len(ids), seconds)
