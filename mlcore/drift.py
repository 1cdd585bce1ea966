"""Drift decisions: pure rules over plain values (the store that feeds them is :mod:`mlcore.monitoring`).

Realized drift. Each outcome matured in the check window is matched with the prediction the tier
served for it H days earlier, whichever model version made it. The live AUC of a target is the
AUC within each version weighted by its share of the matches, and its baseline is the same
weighting of each version's validation AUC, so the comparison stays right when the served version
changes every week. A target breaches when the live AUC is below the baseline minus the tolerance
with 97.5 % confidence, counting the uncertainty of both: the live AUC's bootstrap interval and the
baseline's own (each version's validation AUC is an estimate on a few thousand rows, and a weekly
champion brings a new one every week). Fewer matches than the minimum is "insufficient_data",
never "ok".

Anti-flapping: drift opens an episode when 2 of the last 3 evaluable checks breach and closes after
2 consecutive recovered ones: checks where every decision target's live AUC is back within the
tolerance of its baseline (:func:`is_recovered`). Opening needs confident evidence of a drop and
closing needs the drop gone, not merely unproven, so a drift that hovers near the detection limit
stays one episode instead of closing and reopening. An opened episode raises one alert at once and one retraining
``retrain_delay_days`` later (labels logged since the drift began are there to learn from), at most
one retraining per cooldown.

Estimated drift. Predictions younger than H have no outcome yet: their AUC is estimated from the
calibrated probabilities (:mod:`mlcore.estimation`). An estimated drop follows the same 2-of-3 /
2-clean episode rule, and raises one warning per episode, never a retraining; while a realized
drift episode is open its warning is not raised again (the alert already said more).
"""
from __future__ import annotations

import datetime as dt

import numpy as np

DECISION_TARGETS = ("purchase", "churn")
BREACHES_TO_OPEN, OUT_OF = 2, 3
CLEAN_TO_CLOSE = 2
RETRAIN_ACTIONS = ("retrain", "alert_and_retrain")
ALERT_ACTIONS = ("alert", "alert_and_retrain", "alert_only_cooldown")


def weighted_baseline(version_metrics: dict, weights: dict) -> dict:
    """Validation baseline of a mix of served versions: each version's metric weighted by its share.

    Args:
        version_metrics: ``{version: model_versions.metrics}`` of the versions that served.
        weights: ``{target: {version: weight}}`` (weights of one target sum to 1).

    Returns:
        ``{target: {"auc": {"value", "se"}, "versions": {version: auc}}}`` for the decision targets;
        ``se`` is the weighted standard error of the versions' validation AUCs (from their 95 %
        intervals; weighted linearly, as if the versions' errors were fully correlated: they
        validate on overlapping windows).
    """
    out = {}
    for target in DECISION_TARGETS:
        w = {v: x for v, x in weights.get(target, {}).items() if x > 0}
        auc = {v: version_metrics.get(v, {}).get(target, {}).get("auc", {}) for v in w}
        known = {v: x for v, x in w.items() if auc[v].get("value") is not None}
        total = sum(known.values())
        value = se = None
        if total:
            value = round(sum(x * auc[v]["value"] for v, x in known.items()) / total, 6)
            se = round(sum(x * _se(auc[v]) for v, x in known.items()) / total, 6)
        out[target] = {"auc": {"value": value, "se": se}, "versions": {str(v): auc[v].get("value") for v in w}}
    return out


def _se(interval: dict) -> float:
    """Standard error behind a 95 % interval ``{"lo", "hi"}`` (0 when it has none)."""
    lo, hi = interval.get("lo"), interval.get("hi")
    return 0.0 if lo is None or hi is None else max(0.0, (hi - lo) / (2 * Z))


Z = 1.959964


def upper_bound(live_auc: dict, baseline_auc: dict) -> float | None:
    """Upper 97.5 % bound of live - baseline + baseline: the live interval's upper half-width and the
    baseline's standard error combined in quadrature (the bootstrap's upper bound when the baseline has no se)."""
    value, hi = live_auc.get("value"), live_auc.get("hi")
    if value is None or hi is None:
        return None
    return value + float(np.hypot(max(hi - value, 0.0), Z * (baseline_auc.get("se") or 0.0)))


def is_breach(live: dict, baseline: dict, tolerance: float, n: int, min_n: int) -> bool | None:
    """True when, for purchase or churn, the live AUC is below baseline - tolerance with 97.5 % confidence
    (:func:`upper_bound`); None when the sample is too small or a target can't be scored."""
    if n < min_n:
        return None
    breached = []
    for target in DECISION_TARGETS:
        base = baseline.get(target, {}).get("auc", {})
        upper = upper_bound(live.get(target, {}).get("auc", {}), base)
        if upper is None or base.get("value") is None:
            return None
        breached.append(upper < base["value"] - tolerance)
    return any(breached)


def is_recovered(live: dict, baseline: dict, tolerance: float) -> bool | None:
    """True when every decision target's live AUC (point estimate) is at least its baseline - ``tolerance``;
    None when a target has no live or baseline AUC."""
    for target in DECISION_TARGETS:
        value = live.get(target, {}).get("auc", {}).get("value")
        base = baseline.get(target, {}).get("auc", {}).get("value")
        if value is None or base is None:
            return None
        if value < base - tolerance:
            return False
    return True


def is_estimated_drop(estimate: dict, tolerance: float) -> bool | None:
    """True when, for a target, the estimated AUC is below its validation reference minus ``tolerance``
    with 97.5 % confidence (the estimate's band and the reference's own sampling error, as in
    :func:`upper_bound`).

    None when no target has a reliable estimate (poor calibration, too few scores).
    """
    flags = []
    for e in (estimate.get(t) or {} for t in DECISION_TARGETS):
        if e.get("reliable") and e.get("hi") is not None and e.get("reference") is not None:
            upper = upper_bound(e, {"se": e.get("reference_se")})
            flags.append(upper < e["reference"] - tolerance)
    return any(flags) if flags else None


_CLOSING = {"decision": ("recovered", "ok", "breach"),
            "estimate_decision": ("estimated_recovered", "estimated_ok", "estimated_dip")}


def open_episode(history: list[dict], decision_key: str = "decision", episode_key: str = "episode_id",
                 open_decision: str = "drift") -> int | None:
    """Episode id still open after ``history`` (oldest first), else None; checks that decide
    nothing (too little data) neither open nor close an episode."""
    episode = None
    for row in history:
        if row.get(decision_key) == open_decision:
            episode = row.get(episode_key) or episode
        elif row.get(decision_key) in _CLOSING[decision_key]:
            episode = None
    return episode


def _episode_step(flags: list[bool | None], flag: bool | None, is_open: bool,
                  cleans: list[bool | None] | None = None, clean: bool | None = None) -> str:
    """'opens', 'continues', 'closes' or 'none' for the newest evaluable ``flag`` after earlier ``flags``.

    ``cleans``/``clean`` say which checks count towards closing an open episode (None: not flagged).
    """
    evaluable = [f for f in flags if f is not None] + [flag]
    if is_open:
        cleans = [None] * len(flags) if cleans is None else cleans
        closing = [(not f) if c is None else c for f, c in zip(flags + [flag], cleans + [clean]) if f is not None]
        return "closes" if len(closing) >= CLEAN_TO_CLOSE and all(closing[-CLEAN_TO_CLOSE:]) else "continues"
    return "opens" if flag and sum(evaluable[-OUT_OF:]) >= BREACHES_TO_OPEN else "none"


def decide(history: list[dict], breach: bool | None, check_date: dt.date, cooldown_days: int,
           retrain_delay_days: int, recovered: bool | None = None) -> tuple[str, str, bool]:
    """Anti-flapping decision from earlier checks (oldest first, with ``check_date``, ``breach``,
    ``decision``, ``action``, ``episode_id`` and optionally ``recovered``) and this check's breach and
    recovery (:func:`is_recovered`; where it is None, a check without breach counts as recovered).

    Returns:
        (decision, action, opens_episode).
    """
    episode = open_episode(history)
    if breach is None:
        return "insufficient_data", "none", False
    retrains = [r["check_date"] for r in history if r["action"] in RETRAIN_ACTIONS]
    cooling = bool(retrains) and (check_date - max(retrains)).days < cooldown_days
    step = _episode_step([r["breach"] for r in history], breach, episode is not None,
                         [r.get("recovered") for r in history], recovered)
    if step == "closes":
        return "recovered", "resolved", False
    if step == "continues":
        rows = [r for r in history if r["episode_id"] == episode]
        opened = min(r["check_date"] for r in rows)
        retrained = any(r["action"] in RETRAIN_ACTIONS + ("retrain_skipped_cooldown",) for r in rows)
        if not retrained and (check_date - opened).days >= retrain_delay_days:
            return "drift", ("retrain_skipped_cooldown" if cooling else "retrain"), False
        return "drift", "none", False
    if step == "opens":
        if retrain_delay_days > 0:
            return "drift", "alert", True
        return "drift", "alert_only_cooldown" if cooling else "alert_and_retrain", True
    return ("breach" if breach else "ok"), "none", False


def decide_estimate(history: list[dict], drop: bool | None, realized_episode_open: bool) -> tuple[str, str, bool]:
    """Decision on the label-free estimate, from earlier checks (``estimate_drop``, ``estimate_decision``,
    ``estimate_episode_id``) and this check's estimated drop.

    Returns:
        (estimate_decision, estimate_action, opens_episode): decisions ``estimated_ok``,
        ``estimated_dip`` (one drop, not yet an episode), ``estimated_drop`` (episode open),
        ``estimated_recovered``, ``unavailable``; actions ``warn``, ``resolved``, ``none``.
    """
    if drop is None:
        return "unavailable", "none", False
    episode = open_episode(history, "estimate_decision", "estimate_episode_id", "estimated_drop")
    step = _episode_step([r.get("estimate_drop") for r in history], drop, episode is not None)
    if step == "closes":
        return "estimated_recovered", "resolved", False
    if step == "continues":
        return "estimated_drop", "none", False
    if step == "opens":
        return "estimated_drop", ("none" if realized_episode_open else "warn"), True
    return ("estimated_dip" if drop else "estimated_ok"), "none", False


def retrain_since(opened: dt.date, window_days: int) -> dt.date:
    """First outcome day a drift retraining weights up: the episode's opening day minus half a window.

    A breach shows once about half of the check window is affected, so that is where the change began.
    """
    return opened - dt.timedelta(days=window_days // 2)


def retrain_request(due: list[dict]) -> dict:
    """The drift Asset's extra for the tiers due a retraining (each with ``tier``, ``check_date``,
    ``since``, ``episode_id``): every tier keeps its own ``since``."""
    return {"tiers": sorted(d["tier"] for d in due), "as_of": max(str(d["check_date"]) for d in due),
            "since": {d["tier"]: str(d["since"]) for d in due},
            "episode_ids": {d["tier"]: d["episode_id"] for d in due}}


def retrain_plan(params: dict, drift_events: list[dict], run_type: str, day: dt.date) -> list[dict]:
    """Which tiers ``weekly_retrain`` trains, as of when, why, and since when drift began.

    Args:
        params: The run's params ``tiers``, ``as_of``, ``reason``, ``since`` (explicit values win).
        drift_events: Extras of the drift Asset events that triggered the run (see :func:`retrain_request`;
            the older form with one ``tier`` and one ``since`` is read too).
        run_type: The DAG run's type (``scheduled``, ``manual``, ``asset_triggered``...).
        day: The run's logical day.
    """
    drift = [e for e in drift_events if e and (e.get("tiers") or e.get("tier"))]
    reason = params.get("reason") or ("drift" if drift else "schedule" if "scheduled" in run_type else "manual")
    tiers = list(params.get("tiers") or ["fast", "elite"])
    since = {t: params.get("since") for t in tiers}
    as_of = params.get("as_of") or str(day)
    if drift and not params.get("reason"):
        since = {}
        for e in drift:
            per_tier = e["since"] if isinstance(e.get("since"), dict) else \
                {t: e.get("since") for t in e.get("tiers") or [e["tier"]]}
            for t, s in per_tier.items():
                since[t] = min(s, since[t]) if since.get(t) and s else (s or since.get(t))
        tiers = sorted(since)
        as_of = params.get("as_of") or max(e["as_of"] for e in drift)
    return [{"tier": t, "as_of": as_of, "reason": reason, "since": since.get(t)} for t in tiers]


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against quantile bins of ``reference``."""
    return psi_from_edges(np.quantile(reference, np.linspace(0, 1, bins + 1)), reference, current)


def psi_from_edges(edges, reference: np.ndarray | None, current: np.ndarray) -> float:
    """PSI of ``current`` over bins ``edges`` (quantiles of the reference: equal shares when
    ``reference`` is None, e.g. a model's stored validation deciles)."""
    edges = np.unique(np.asarray(edges, dtype=float))
    if len(edges) < 3 or not len(current):
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    if reference is None:
        p = np.full(len(edges) - 1, 1 / (len(edges) - 1))
    else:
        p = np.histogram(reference, edges)[0] / len(reference)
    q = np.histogram(current, edges)[0] / len(current)
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
    return float(np.sum((q - p) * np.log(q / p)))
