"""Reading point-in-time notes, concepts and outcomes from the database."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from mlcore.db import read_frame
from mlcore.features import History, build_history

_NOTES = ("SELECT note_id, client_id, date FROM notes WHERE date <= %(as_of)s{where}")
_CONCEPTS = ("SELECT c.note_id, c.concept_id, c.confidence FROM note_concepts c JOIN notes n USING (note_id) "
             "WHERE n.date <= %(as_of)s{where}")


def read_notes(engine: sa.Engine, as_of: dt.date, lo: str | None = None, hi: str | None = None,
               clients: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notes and concepts dated on or before ``as_of``, optionally for a client range or list."""
    where, params = "", {"as_of": as_of}
    if lo is not None:
        where += " AND {p}client_id >= %(lo)s AND {p}client_id <= %(hi)s"
        params.update(lo=lo, hi=hi)
    if clients is not None:
        where += " AND {p}client_id = ANY(%(clients)s)"
        params["clients"] = list(clients)
    notes = read_frame(engine, _NOTES.format(where=where.format(p="")), params,
                       dtype={"note_id": str, "client_id": str}, parse_dates=["date"])
    # The client condition on both sides lets the planner reach notes by client, not scan them by date.
    concept_where = where.format(p="c.") + where.format(p="n.")
    concepts = read_frame(engine, _CONCEPTS.format(where=concept_where), params,
                          dtype={"note_id": str, "concept_id": str})
    return notes, concepts


def read_outcomes(engine: sa.Engine, until: dt.date) -> pd.DataFrame:
    """Outcome log rows dated on or before ``until``."""
    return read_frame(engine, "SELECT client_id, date, purchased, churned, lifetime_value FROM outcomes "
                              "WHERE date <= %(until)s ORDER BY date, client_id", {"until": until},
                      dtype={"client_id": str}, parse_dates=["date"])


def history_as_of(engine: sa.Engine, clients: pd.Series, as_of: dt.date, lo=None, hi=None) -> History:
    """The history of ``clients``, all as of the same date (for scoring)."""
    notes, concepts = read_notes(engine, as_of, lo, hi, None if lo is not None else list(clients))
    samples = pd.DataFrame({"client_id": clients.to_numpy(), "as_of": pd.Timestamp(as_of)})
    return build_history(samples, notes, concepts)
