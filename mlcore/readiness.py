"""Readiness: whether a scheduled job may run now, should be skipped (a fresh install) or must fail.

A fresh install has no notes, no outcomes and no champion yet; the scheduled runs of that install
are expected to find nothing and are skipped with a reason that says what to load or train. A live
install whose inputs went missing or stale is a real problem and fails. The rules are functions of
plain values; the callers read the facts and act on the decision.

Example:
    >>> import datetime as dt
    >>> scoring_readiness("elite", dt.date(2025, 6, 1), any_notes=False, newest_note=None,
    ...                   max_staleness_days=3, champion_version=None).action
    'skip'
"""
from __future__ import annotations

import dataclasses
import datetime as dt

RUN, SKIP, FAIL = "run", "skip", "fail"


@dataclasses.dataclass(frozen=True)
class Readiness:
    """A decision (``run``, ``skip`` or ``fail``) and, unless it is ``run``, why."""

    action: str
    reason: str | None = None

    def __post_init__(self):
        if self.action not in (RUN, SKIP, FAIL):
            raise ValueError(f"action must be one of {RUN}, {SKIP}, {FAIL}; got {self.action!r}.")
        if (self.action == RUN) != (self.reason is None):
            raise ValueError(f"a {self.action!r} decision {'takes no' if self.action == RUN else 'needs a'} reason.")


def scoring_readiness(tier: str, day: dt.date, any_notes: bool, newest_note: dt.date | None,
                      max_staleness_days: int, champion_version: int | None) -> Readiness:
    """Whether ``tier`` may score every client as of ``day``.

    Args:
        any_notes: At least one note is loaded (any date).
        newest_note: The newest note dated on or before ``day``, or None.
        max_staleness_days: ``newest_note`` may be at most this many days before ``day``.
        champion_version: The tier's champion, or None before the first model is trained.

    Skipped: no note at all (nothing to score yet) or no champion yet (nothing to score with): both
    are the state of a fresh install, not a failure. Failed: notes are loaded but none is dated on
    or before ``day``, or the newest is stale, which on a live install means the feed stopped.
    """
    if not any_notes:
        return Readiness(SKIP, f"no notes are loaded yet (a fresh install), so there is nothing to score for {day}: "
                               f"drop notes*.csv into the inbox (ingest_inbox) or run `mlcore ingest notes PATH`.")
    if champion_version is None:
        return Readiness(SKIP, f"no {tier} champion is registered yet (a fresh install), so nothing is scored for "
                               f"{day}: train one with a manual weekly_retrain run (param tiers [\"{tier}\"]) or "
                               f"`mlcore train --tier {tier}`.")
    if newest_note is None:
        return Readiness(FAIL, f"no notes dated on or before {day}: load notes before scoring.")
    age = (day - newest_note).days
    if age > max_staleness_days:
        return Readiness(FAIL, f"inputs are stale: the newest note is from {newest_note}, {age} days before {day} "
                               f"(max {max_staleness_days}).")
    return Readiness(RUN)


def training_readiness(tier: str, as_of: dt.date, any_outcomes: bool) -> Readiness:
    """Whether ``tier`` may be trained as of ``as_of``.

    Skipped when no outcome is loaded at all (a fresh install: there is nothing to learn from).
    Once outcomes exist, training runs and fails if they are too few for its time split, as that
    is a problem to fix (load more outcomes, pick a later as-of date), not a state to wait out.
    """
    if not any_outcomes:
        return Readiness(SKIP, f"no outcomes are loaded yet (a fresh install), so {tier} is not trained as of "
                               f"{as_of}: drop outcomes*.csv into the inbox (ingest_inbox) or run "
                               f"`mlcore ingest outcomes PATH`.")
    return Readiness(RUN)
