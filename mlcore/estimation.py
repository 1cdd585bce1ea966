"""Label-free performance estimation: what the AUC of predictions will be once their outcomes mature.

Confidence-based performance estimation (CBPE, as in NannyML): if the probabilities are calibrated,
each client's outcome is a Bernoulli draw with the predicted probability, so the expected ROC curve,
and the AUC the predictions will reach, follow from the scores alone. The sampling band is the
spread of the AUC over simulated outcome draws. The estimate is only as good as the calibration it
assumes, so every estimate carries the expected calibration error (ECE) its model had on the
validation window and compares with the same estimate made there (which absorbs a steady bias);
when the ECE is above both ``max_ece`` and what sampling alone would give, the estimate is marked
unreliable: it is shown, and decides nothing.

Example:
    >>> import numpy as np
    >>> round(expected_auc(np.array([0.1, 0.2, 0.8, 0.9])), 3)
    0.875
"""
from __future__ import annotations

import numpy as np

from mlcore.evaluation import _auc, _clean

ESTIMATED_TARGETS = {"purchase": "purchase_likelihood", "churn": "churn_risk"}


def expected_auc(p: np.ndarray) -> float:
    """AUC of the expected ROC curve when each outcome is Bernoulli(``p``) (CBPE's estimate)."""
    p = np.asarray(p, dtype=float)
    if len(p) < 2:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    last = np.r_[ps[1:] != ps[:-1], True]       # the end of each group of tied scores
    tp = np.cumsum(ps)[last]
    fp = np.cumsum(1 - ps)[last]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return float("nan")
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def estimate_auc(p: np.ndarray, n_sim: int = 100, random_state: int = 0, level: float = 0.95,
                 max_rows: int = 20_000) -> dict:
    """CBPE estimate of the AUC of ``p`` with its sampling band.

    The band is the ``level`` interval of the AUC over ``n_sim`` simulated outcome draws (on at most
    ``max_rows`` rows, the spread scaled to the full count as in an m-out-of-n bootstrap).
    """
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    value = expected_auc(p)
    n = len(p)
    if not np.isfinite(value):
        return {"value": None, "lo": None, "hi": None, "n": n}
    rng = np.random.default_rng(random_state)
    m = min(n, max_rows)
    rows = rng.choice(n, m, replace=False) if m < n else np.arange(n)
    ps = np.broadcast_to(p[rows], (n_sim, m))
    draws = (rng.random((n_sim, m)) < ps).astype(float)
    sims = _auc(draws, np.ascontiguousarray(ps))
    sims = sims[np.isfinite(sims)]
    if not len(sims):
        return {"value": _clean(value), "lo": None, "hi": None, "n": n}
    centre = sims.mean()
    spread = (sims - centre) * np.sqrt(m / n)
    alpha = (1 - level) / 2
    lo, hi = value + np.quantile(spread, [alpha, 1 - alpha])
    return {"value": _clean(value), "lo": _clean(lo), "hi": _clean(hi), "n": n}


def reference(metrics: dict, target: str) -> dict:
    """What an estimate of ``target`` compares with, from a model version's validation metrics.

    Returns:
        ``{"auc": estimated AUC on the validation window (else the realized one), "auc_se": its sampling
        standard error (None for models trained before it was recorded), "realized": realized validation
        AUC, "ece": the validation ECE or None, "ece_noise": its sampling floor or None}``.
    """
    entry = metrics.get(target, {})
    realized = entry.get("auc", {}).get("value")
    cal = entry.get("calibration") or {}
    return {"auc": cal.get("estimated_auc", realized), "auc_se": cal.get("estimated_auc_se"), "realized": realized,
            "ece": cal.get("ece"), "ece_noise": cal.get("ece_noise")}


def estimate(scores: dict[str, np.ndarray], metrics_of: dict, versions: np.ndarray, max_ece: float,
             n_sim: int = 100, random_state: int = 0) -> dict:
    """Estimated AUC of each classifier's not-yet-matured scores beside its validation reference.

    Args:
        scores: Target name (purchase, churn) to predicted probabilities.
        metrics_of: Validation metrics (``model_versions.metrics``) of each model version in ``versions``.
        versions: The model version that made each score; the reference, ECE and its floor are the
            versions' own, weighted by their shares of the scores.
        max_ece: A validation ECE above both this and its sampling floor makes the estimate of a
            target unreliable (shown, deciding nothing); a model without calibration data is unreliable too.

    Returns:
        ``{target: {"value", "lo", "hi", "n", "reference", "reference_se", "realized_reference", "ece",
        "ece_noise", "reliable"}}``.
    """
    versions = np.asarray(versions)
    shares = {v: float(np.mean(versions == v)) for v in np.unique(versions)}
    out = {}
    for target, p in scores.items():
        refs = {v: reference(metrics_of.get(v, {}), target) for v in shares}
        mix = {k: _weighted({v: r[k] for v, r in refs.items()}, shares)
               for k in ("auc", "auc_se", "realized", "ece", "ece_noise")}
        est = estimate_auc(p, n_sim=n_sim, random_state=random_state)
        reliable = (mix["ece"] is not None and mix["ece"] <= max(max_ece, mix["ece_noise"] or 0.0)
                    and est["value"] is not None and mix["auc"] is not None)
        out[target] = {**est, "reference": mix["auc"], "reference_se": mix["auc_se"],
                       "realized_reference": mix["realized"], "ece": mix["ece"], "ece_noise": mix["ece_noise"],
                       "reliable": bool(reliable)}
    return out


def _weighted(values: dict, shares: dict) -> float | None:
    """Share-weighted mean of ``values``; None when any version lacks the value."""
    if not values or any(x is None for x in values.values()):
        return None
    return round(sum(shares[v] * x for v, x in values.items()), 6)
