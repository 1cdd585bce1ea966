"""Metrics with bootstrap intervals, always beside a trivial baseline."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, mean_absolute_error, r2_score, roc_auc_score

CLASSIFIERS = {"purchase": 0, "churn": 1}
REGRESSORS = {"clv": 2}


def _auc(y, p):
    return roc_auc_score(y, p) if 0 < y.sum() < len(y) else np.nan


def _accuracy(y, p):
    return float(np.mean((p >= 0.5) == (y == 1)))


def _rmse(y, p):
    return float(np.sqrt(np.mean((y - p) ** 2)))


CLASSIFIER_METRICS = {"auc": _auc, "accuracy": _accuracy, "brier": brier_score_loss}
REGRESSOR_METRICS = {"r2": r2_score, "rmse": _rmse, "mae": mean_absolute_error}


def bootstrap(metric, y, p, n_boot: int = 200, random_state: int = 0, level: float = 0.95,
              max_resample: int = 20_000) -> dict:
    """Point value and percentile bootstrap interval of ``metric(y, p)``.

    Beyond ``max_resample`` rows the resamples have ``max_resample`` rows (an m-out-of-n bootstrap)
    and their deviations from the full-sample value are scaled by sqrt(m / n): the same interval
    for smooth metrics (AUC, means, R2) at a cost that no longer grows with the sample.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    value = float(metric(y, p))
    n = len(y)
    m = min(n, max_resample)
    rng = np.random.default_rng(random_state)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, m)
        stats.append(metric(y[idx], p[idx]))
    stats = np.asarray(stats, dtype=float)
    stats = stats[np.isfinite(stats)]
    if m < n:
        stats = value + (stats - value) * np.sqrt(m / n)
    alpha = (1 - level) / 2
    lo, hi = (np.quantile(stats, [alpha, 1 - alpha]) if len(stats) else (np.nan, np.nan))
    return {"value": _clean(value), "lo": _clean(lo), "hi": _clean(hi)}


def _clean(x):
    x = float(x)
    return None if not np.isfinite(x) else round(x, 6)


def evaluate(Y: np.ndarray, P: np.ndarray, reference: np.ndarray | None = None, n_boot: int = 200,
             random_state: int = 0, max_resample: int = 20_000) -> dict:
    """Metrics of predictions ``P`` against outcomes ``Y`` (columns purchased, churned, lifetime_value).

    Args:
        Y: Observed outcomes, shape (n, 3).
        P: Predictions (purchase probability, churn probability, CLV), shape (n, 3).
        reference: Outcomes the trivial baseline learns from (training rows); defaults to ``Y``.
        n_boot: Bootstrap resamples per interval.
        max_resample: Rows per resample beyond which the bootstrap is m-out-of-n (see :func:`bootstrap`).

    Returns:
        ``{target: {"n", metric: {"value", "lo", "hi"}, "baseline": {metric: value}}}`` for
        targets purchase, churn and clv. The baseline predicts the reference prevalence or mean.
    """
    Y = np.asarray(Y, dtype=float)
    P = np.asarray(P, dtype=float)
    ref = Y if reference is None else np.asarray(reference, dtype=float)
    out = {}
    for target, col in {**CLASSIFIERS, **REGRESSORS}.items():
        metrics = CLASSIFIER_METRICS if target in CLASSIFIERS else REGRESSOR_METRICS
        y, p = Y[:, col], P[:, col]
        constant = np.full(len(y), ref[:, col].mean())
        entry = {"n": int(len(y)), "mean_observed": _clean(y.mean()), "mean_predicted": _clean(p.mean())}
        for name, fn in metrics.items():
            entry[name] = bootstrap(fn, y, p, n_boot, random_state, max_resample=max_resample)
        entry["baseline"] = {name: _clean(fn(y, constant)) if name != "auc" else 0.5
                             for name, fn in metrics.items()}
        out[target] = entry
    return out


def headline(metrics: dict) -> dict:
    """The metric the promotion gate and drift check compare per target: AUC, or R2 for CLV."""
    return {t: metrics[t]["auc" if t in CLASSIFIERS else "r2"]["value"] for t in {**CLASSIFIERS, **REGRESSORS}}
