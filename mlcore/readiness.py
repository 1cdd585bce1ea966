"""Readiness: whether a scheduled job may run now, should be skipped (a fresh install) or must fail.

A fresh install has no notes, transactions or outcomes and no champion yet; the scheduled runs of that install
are expected to find nothing and are skipped with a reason that says what to load or train. A live
install whose inputs went missing or stale is a real problem and fails. The rules are functions of
plain values; the callers read the facts and act on the decision.

Example:
    >>> import datetime as dt
    >>> scoring_readiness("elite", dt.date(2025, 6, 1), any_inputs=False, newest_input=None,
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


def scoring_readiness(tier: str, day: dt.date, any_inputs: bool, newest_input: dt.date | None,
                      max_staleness_days: int, champion_version: int | None) -> Readiness:
    """Whether ``tier`` may score every client as of ``day``.

    Args:
        any_inputs: At least one note or transaction is loaded (any date).
        newest_input: The newest note or transaction dated on or before ``day``, or None.
        max_staleness_days: ``newest_input`` may be at most this many days before ``day``.
        champion_version: The tier's champion, or None before the first model is trained.

    Skipped: no input at all (nothing to score yet) or no champion yet (nothing to score with): both
    are the state of a fresh install, not a failure. Failed: inputs are loaded but none is dated on
    or before ``day``, or the newest is stale, which on a live install means the feeds stopped. A
    client base known by its purchases alone is scored from fresh transactions; with both feeds,
    one fresh feed is enough (a stopped second feed is not caught here).
    """
    if not any_inputs:
        return Readiness(SKIP, f"no notes or transactions are loaded yet (a fresh install), so there is nothing to "
                               f"score for {day}: drop notes*.csv or transactions*.csv into the inbox (ingest_inbox) "
                               f"or run `mlcore ingest notes PATH` / `mlcore ingest transactions PATH`.")
    if champion_version is None:
        return Readiness(SKIP, f"no {tier} champion is registered yet (a fresh install), so nothing is scored for "
                               f"{day}: train one with a manual weekly_retrain run (param tiers [\"{tier}\"]) or "
                               f"`mlcore train --tier {tier}`.")
    if newest_input is None:
        return Readiness(FAIL, f"no notes or transactions dated on or before {day}: load them before scoring.")
    age = (day - newest_input).days
    if age > max_staleness_days:
        return Readiness(FAIL, f"inputs are stale: the newest note or transaction is from {newest_input}, {age} days "
                               f"before {day} (max {max_staleness_days}).")
    return Readiness(RUN)


def training_readiness(tier: str, as_of: dt.date, any_labels: bool) -> Readiness:
    """Whether ``tier`` may be trained as of ``as_of``.

    ``any_labels``: an outcome or a transaction (labels are derived from those) is loaded. Skipped
    when neither is (a fresh install: there is nothing to learn from). Otherwise training runs and
    fails if the labels are too few for its time split, as that is a problem to fix (load more,
    pick a later as-of date), not a state to wait out.
    """
    if not any_labels:
        return Readiness(SKIP, f"no outcomes or transactions are loaded yet (a fresh install), so {tier} is not "
                               f"trained as of {as_of}: drop outcomes*.csv or transactions*.csv into the inbox "
                               f"(ingest_inbox) or run `mlcore ingest outcomes PATH` / "
                               f"`mlcore ingest transactions PATH`.")
    return Readiness(RUN)
