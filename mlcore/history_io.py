"""Reading point-in-time notes, concepts and outcomes from the database."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mlcore.clv_baseline import purchase_days
from mlcore.db import read_frame
from mlcore.features import History, purchase_rows

_NOTES = ("SELECT note_id, client_id, date FROM notes WHERE date <= %(as_of)s{where}")
_CONCEPTS = ("SELECT c.note_id, c.concept_id, c.confidence FROM note_concepts c JOIN notes n USING (note_id) "
             "WHERE n.date <= %(as_of)s{where}")


def _client_filter(params: dict, lo: str | None = None, hi: str | None = None,
                   clients: list[str] | None = None) -> str:
    """``AND`` conditions keeping ``{p}client_id`` in ``[lo, hi]`` and/or in ``clients``.

    Adds the conditions' parameters to ``params``.
    """
    where = ""
    if lo is not None:
        where += " AND {p}client_id >= %(lo)s AND {p}client_id <= %(hi)s"
        params.update(lo=lo, hi=hi)
    if clients is not None:
        where += " AND {p}client_id = ANY(%(clients)s)"
        params["clients"] = list(clients)
    return where


def read_notes(engine: sa.Engine, as_of: dt.date, lo: str | None = None, hi: str | None = None,
               clients: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notes and concepts dated on or before ``as_of``, optionally for a client range or list."""
    params = {"as_of": as_of}
    where = _client_filter(params, lo, hi, clients)
    notes = read_frame(engine, _NOTES.format(where=where.format(p="")), params,
                       dtype={"note_id": str, "client_id": str}, parse_dates=["date"])
    # The client condition on both sides lets the planner reach notes by client, not scan them by date.
    concept_where = where.format(p="c.") + where.format(p="n.")
    concepts = read_frame(engine, _CONCEPTS.format(where=concept_where), params,
                          dtype={"note_id": str, "concept_id": str})
    return notes, concepts


def read_outcomes(engine: sa.Engine, until: dt.date, clients: list[str] | None = None) -> pd.DataFrame:
    """Outcome log rows dated on or before ``until``, optionally only those of ``clients``."""
    params = {"until": until}
    where = _client_filter(params, clients=clients).format(p="")
    return read_frame(engine, "SELECT client_id, date, purchased, churned, lifetime_value FROM outcomes "
                              f"WHERE date <= %(until)s{where} ORDER BY date, client_id", params,
                      dtype={"client_id": str}, parse_dates=["date"])


def any_transactions(engine: sa.Engine) -> bool:
    """Whether any transaction is loaded (the table exists from migration 0018 on)."""
    with engine.connect() as conn:
        return bool(conn.execute(sa.text("SELECT to_regclass('transactions') IS NOT NULL "
                                         "AND EXISTS (SELECT 1 FROM transactions)")).scalar_one())


def read_transactions(engine: sa.Engine, until: dt.date, clients: list[str] | None = None,
                      lo: str | None = None, hi: str | None = None) -> pd.DataFrame:
    """Transactions (client_id, date, amount) dated on or before ``until``, optionally only those of a
    client range [``lo``, ``hi``] or of ``clients``."""
    params = {"until": until}
    where = _client_filter(params, lo, hi, clients).format(p="")
    return read_frame(engine, f"SELECT client_id, date, amount FROM transactions WHERE date <= %(until)s{where}",
                      params, dtype={"client_id": str}, parse_dates=["date"])


def transaction_clients(engine: sa.Engine, until: dt.date) -> pd.Series:
    """The distinct clients with a transaction dated on or before ``until``."""
    return read_frame(engine, "SELECT DISTINCT client_id FROM transactions WHERE date <= %(until)s",
                      {"until": until}, dtype={"client_id": str})["client_id"]


def any_outcomes(engine: sa.Engine) -> bool:
    """Whether at least one outcome is loaded (any date): false only before the first outcomes upload."""
    with engine.connect() as conn:
        return bool(conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM outcomes)")).scalar_one())


def outcome_clients(engine: sa.Engine, until: dt.date) -> pd.Series:
    """The distinct clients of the outcome log rows dated on or before ``until``."""
    return read_frame(engine, "SELECT DISTINCT client_id FROM outcomes WHERE date <= %(until)s",
                      {"until": until}, dtype={"client_id": str})["client_id"]


# One query for scoring: each note of the clients once (with a number and its age), joined with its
# concepts (a note without concepts gives one row with an empty concept). Notes are numbered in
# (client, date, note_id) order, whatever plan the chunk gets, so that the features' sums add in the
# same order in any partition (the index on (client_id, date) leaves only an incremental sort).
_HISTORY = """
    SELECT n.client_id, n.note, n.age, c.concept_id, c.confidence
    FROM (SELECT note_id, client_id, CAST(%(as_of)s AS date) - date AS age,
                 row_number() OVER (ORDER BY client_id, date, note_id) AS note
          FROM notes WHERE date <= %(as_of)s{where_n}) n
    LEFT JOIN note_concepts c ON c.note_id = n.note_id{on_c}"""


def history_as_of(engine: sa.Engine, clients: pd.Series, as_of: dt.date, lo=None, hi=None) -> History:
    """The history of ``clients``, all as of the same date (for scoring), read in one query.

    With ``lo`` and ``hi`` the notes are read by client id range (the clients must be exactly the
    clients with notes in that range); otherwise by the list of ids.
    """
    params = {"as_of": as_of}
    where = _client_filter(params, lo, hi) if lo is not None else _client_filter(params, clients=clients)
    # The client condition on the concepts too (in the join, so notes without concepts stay) lets the
    # planner reach them by client.
    sql = _HISTORY.format(where_n=where.format(p=""), on_c=where.format(p="c."))
    rows = read_frame(engine, sql, params, dtype={"client_id": "category", "note": np.int64, "age": np.int64,
                                                  "concept_id": "category", "confidence": float})
    samples = pd.DataFrame({"client_id": clients.to_numpy(), "as_of": pd.Timestamp(as_of)})
    # Categories are the distinct ids in the rows: map them to sample positions once.
    position = pd.Index(samples["client_id"]).get_indexer(rows["client_id"].cat.categories)
    row = position[rows["client_id"].cat.codes.to_numpy()] if len(rows) else np.zeros(0, dtype=np.int64)
    if (row < 0).any():
        raise ValueError("the notes read include clients that are not among the samples")
    # Rows in (note, concept id) order: the join's own order depends on the plan, i.e. on the chunk.
    # (note, concept) is unique (a note without concepts has code -1), so one integer key sorts them.
    k = len(rows["concept_id"].cat.categories) + 1
    order = np.argsort(rows["note"].to_numpy() * k + rows["concept_id"].cat.codes.to_numpy())
    rows = rows.take(order)
    frame = pd.DataFrame({"row": row[order], "note": rows["note"].to_numpy(), "age": rows["age"].to_numpy()})
    first = ~frame["note"].duplicated().to_numpy()
    has = rows["concept_id"].notna().to_numpy()
    notes = frame[first].sort_values(["row", "age"], kind="stable").reset_index(drop=True)
    concepts = frame[has].reset_index(drop=True).assign(concept_id=rows["concept_id"].array[has],
                                                        confidence=rows["confidence"].to_numpy()[has])
    history = History(samples, notes, concepts)
    if any_transactions(engine):
        # The purchase days of the same clients, as the models saw them in training.
        tx = (read_transactions(engine, as_of, lo=lo, hi=hi) if lo is not None
              else read_transactions(engine, as_of, clients=list(clients)))
        history.purchases = purchase_rows(samples, purchase_days(tx))
    return history
