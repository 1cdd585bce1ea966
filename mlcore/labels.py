"""Outcome labels derived from what clients bought: the label policy.

For an outcome date d and horizon H, from the transactions only (nothing else about the client):

- ``purchased``: at least one purchase day in (d - H, d] (see :func:`mlcore.clv_baseline.purchase_days`);
- ``lifetime_value``: the spend of those purchase days (returns netted per day, never below 0);
- ``churned``: the client bought in the ``active_days`` before the window, (d - H - active_days, d - H],
  and not in it — a lapse of an active client; a client who was not active cannot churn (0).

Outcome dates lie on a grid of ``every_days`` ending at the newest fully observed day, one row per
client already known as of d - H (a first purchase on or before it, or one of ``known`` — e.g.
the first note), so every row has a history to predict from. An outcome log loaded explicitly
takes precedence: on every date it covers, only its rows are used (:func:`combine`).

Example:
    >>> derive_outcomes(transactions, LabelPolicy(horizon_days=90), until=dt.date(1998, 6, 30))  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd

from mlcore.clv_baseline import purchase_days
from mlcore.exceptions import ConfigError

COLUMNS = ["client_id", "date", "purchased", "churned", "lifetime_value"]


@dataclasses.dataclass(frozen=True)
class LabelPolicy:
    """How outcome rows are derived from transactions (see the module docstring)."""

    horizon_days: int = 90
    every_days: int = 30
    active_days: int | None = None      # None: the horizon

    def __post_init__(self):
        for name in ("horizon_days", "every_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"LabelPolicy: {name} must be an integer >= 1, got {value!r}.")
        if self.active_days is not None and (not isinstance(self.active_days, int) or self.active_days < 1):
            raise ConfigError(f"LabelPolicy: active_days must be an integer >= 1 or None, got {self.active_days!r}.")

    @property
    def active(self) -> int:
        return self.horizon_days if self.active_days is None else self.active_days


def outcome_dates(first: dt.date, until: dt.date, policy: LabelPolicy) -> list[dt.date]:
    """The grid: every ``every_days`` back from ``until``, the earliest at least H days after ``first``."""
    out, d = [], pd.Timestamp(until)
    while d - pd.Timedelta(days=policy.horizon_days) >= pd.Timestamp(first):
        out.append(d.date())
        d -= pd.Timedelta(days=policy.every_days)
    return sorted(out)


def derive_outcomes(transactions: pd.DataFrame, policy: LabelPolicy, until: dt.date | None = None,
                    known: pd.Series | None = None) -> pd.DataFrame:
    """Outcome rows (client_id, date, purchased, churned, lifetime_value) on the grid ending at ``until``.

    ``until`` defaults to the newest transaction day (the newest day whose window is fully seen);
    ``known``: optional first date per client (index client_id) from other inputs, e.g. notes.
    """
    if until is None and len(transactions):
        until = pd.to_datetime(transactions["date"]).max().date()
    return outcomes_from_purchase_days(purchase_days(transactions), policy, until, known)


def outcomes_from_purchase_days(days: pd.DataFrame, policy: LabelPolicy, until: dt.date,
                                known: pd.Series | None = None) -> pd.DataFrame:
    """:func:`derive_outcomes` from purchase days already built (:func:`mlcore.clv_baseline.purchase_days`)."""
    if days.empty:
        return pd.DataFrame(columns=COLUMNS)
    until = pd.Timestamp(until).normalize()
    first = days.groupby("client_id")["date"].min()
    if known is not None:
        first = pd.concat([first, pd.to_datetime(pd.Series(known))]).groupby(level=0).min()
    grid = pd.to_datetime(pd.Series(outcome_dates(first.min().date(), until.date(), policy)))
    if grid.empty:
        return pd.DataFrame(columns=COLUMNS)
    windows = _Windows(days, pd.Index(first.index, name="client_id"), policy)
    rows = []
    first_day = _days(first)
    for d in grid:
        d_day = (d - _EPOCH).days
        eligible = np.flatnonzero(first_day <= d_day - policy.horizon_days)
        if not len(eligible):
            continue
        rows.append(windows.labels(eligible, np.full(len(eligible), d_day - policy.horizon_days))
                    .assign(client_id=windows.clients[eligible], date=d.date()))
    return pd.concat(rows, ignore_index=True)[COLUMNS] if rows else pd.DataFrame(columns=COLUMNS)


def outcomes_after(days: pd.DataFrame, served: pd.DataFrame, policy: LabelPolicy) -> pd.DataFrame:
    """The outcome row of each (``client_id``, ``as_of``) of ``served``: its window (as_of, as_of + H].

    The labels are those :func:`derive_outcomes` gives the same client on the date as_of + H (the
    drift check matures a served prediction this way); ``days`` must cover (as_of - active, as_of + H].
    """
    if served.empty:
        return pd.DataFrame(columns=COLUMNS)
    clients = pd.Index(pd.unique(served["client_id"]), name="client_id")
    as_of = pd.to_datetime(served["as_of"]).dt.normalize()
    windows = _Windows(days[days["client_id"].isin(clients)], clients, policy)
    out = windows.labels(clients.get_indexer(served["client_id"]), _days(as_of))
    out["client_id"] = served["client_id"].to_numpy()
    out["date"] = (as_of + pd.Timedelta(days=policy.horizon_days)).dt.date.to_numpy()
    return out[COLUMNS]


_EPOCH = pd.Timestamp("1970-01-01")


def _days(dates) -> np.ndarray:
    return ((pd.to_datetime(dates) - _EPOCH).dt.days).to_numpy(np.int64)


class _Windows:
    """Purchase-day counts and spend of clients over day windows, by binary search on sorted keys."""

    def __init__(self, days: pd.DataFrame, clients: pd.Index, policy: LabelPolicy):
        self.clients, self.policy = clients, policy
        code = clients.get_indexer(days["client_id"])
        day = _days(days["date"]) if len(days) else np.zeros(0, np.int64)
        order = np.lexsort((day, code))
        code, day, spend = code[order], day[order], days["amount"].to_numpy(float)[order]
        # sorted per client, then by day: a client's days occupy [code * span, (code + 1) * span)
        self.first, self.last = (int(day.min()), int(day.max())) if len(day) else (0, 0)
        self.span = self.last - self.first + 2
        self.key = code.astype(np.int64) * self.span + (day - self.first + 1)
        self.cum = np.concatenate([[0.0], np.cumsum(spend)])

    def _range(self, base, lo_excl, hi_incl):
        """Positions of the purchase days in (lo_excl, hi_incl] (clipped to the days held: same counts)."""
        def at(day):
            return base + np.clip(day, self.first - 1, self.last) - self.first + 1
        return (np.searchsorted(self.key, at(lo_excl), side="right"),
                np.searchsorted(self.key, at(hi_incl), side="right"))

    def labels(self, codes: np.ndarray, as_of_day: np.ndarray) -> pd.DataFrame:
        """purchased, churned and lifetime_value of the windows (as_of, as_of + H] of clients ``codes``."""
        H, active = self.policy.horizon_days, self.policy.active
        base = np.asarray(codes, np.int64) * self.span
        lo, hi = self._range(base, as_of_day, as_of_day + H)
        n_window = hi - lo
        a_lo, a_hi = self._range(base, as_of_day - active, as_of_day)
        was_active = (a_hi - a_lo) > 0
        return pd.DataFrame({"purchased": (n_window > 0).astype(np.int16),
                             "churned": (was_active & (n_window == 0)).astype(np.int16),
                             "lifetime_value": np.round(np.maximum(self.cum[hi] - self.cum[lo], 0.0), 2)})


def combine(explicit: pd.DataFrame, derived: pd.DataFrame) -> pd.DataFrame:
    """The outcome rows to learn from: the explicit log's, and the derived ones on the dates it does not cover."""
    if explicit.empty:
        return derived.reset_index(drop=True)
    covered = set(pd.to_datetime(explicit["date"]).dt.date)
    keep = ~pd.to_datetime(derived["date"]).dt.date.isin(covered)
    return (pd.concat([explicit[COLUMNS], derived.loc[keep, COLUMNS]], ignore_index=True)
            .sort_values(["date", "client_id"], kind="stable").reset_index(drop=True))
