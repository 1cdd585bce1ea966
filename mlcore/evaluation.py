"""Metrics with bootstrap intervals, always beside a trivial baseline.

Each metric is computed in batch form: ``y`` and ``p`` of shape (samples, rows), one value per
row (Mann-Whitney AUC, row means), so the hundreds of bootstrap resamples are scored in one call.
They equal scikit-learn's ``roc_auc_score``, ``brier_score_loss``, ``r2_score``,
``mean_absolute_error`` on every row (tests/test_evaluation.py), without its per-call validation.
"""
from __future__ import annotations

import numpy as np

CLASSIFIERS = {"purchase": 0, "churn": 1}
REGRESSORS = {"clv": 2}


def _auc(y, p):
    """ROC AUC per row as the Mann-Whitney statistic: P(score of a positive > a negative's), ties count 1/2.

    One sort per row; tied scores form groups, each positive group scoring the negatives below it
    plus half of its own. NaN where a row lacks a class.
    """
    k, m = p.shape
    order = np.argsort(p, axis=1)
    ps, ys = np.take_along_axis(p, order, axis=1), np.take_along_axis(y, order, axis=1)
    starts = np.ones((k, m), dtype=bool)
    starts[:, 1:] = ps[:, 1:] != ps[:, :-1]            # each row's first element opens a group
    group = np.cumsum(starts.ravel()) - 1               # group ids, never shared across rows
    pos_g = np.bincount(group, weights=ys.ravel())
    neg_g = np.bincount(group).astype(float) - pos_g
    per_row = starts.sum(axis=1)
    row = np.repeat(np.arange(k), per_row)
    below = np.cumsum(neg_g) - neg_g                    # negatives before each group, over all rows
    below -= below[np.concatenate([[0], np.cumsum(per_row)[:-1]])][row]   # ... within its row
    wins = np.bincount(row, weights=pos_g * (below + 0.5 * neg_g), minlength=k)
    pos = y.sum(axis=1)
    neg = m - pos
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((pos > 0) & (neg > 0), wins / (pos * neg), np.nan)


def _r2(y, p):
    ss_tot = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1 - ((y - p) ** 2).sum(axis=1) / ss_tot, np.nan)


CLASSIFIER_METRICS = {
    "auc": _auc,
    "accuracy": lambda y, p: ((p >= 0.5) == (y == 1)).mean(axis=1),
    "brier": lambda y, p: ((p - y) ** 2).mean(axis=1),
}
REGRESSOR_METRICS = {
    "r2": _r2,
    "rmse": lambda y, p: np.sqrt(((y - p) ** 2).mean(axis=1)),
    "mae": lambda y, p: np.abs(y - p).mean(axis=1),
}


def _value(metric, y, p) -> float:
    return float(metric(y[None, :], p[None, :])[0])


def bootstrap(metrics: dict, y, p, n_boot: int = 200, random_state: int = 0, level: float = 0.95,
              max_resample: int = 20_000) -> dict:
    """Point value and percentile bootstrap interval of each of ``metrics`` (name: batch form, as above).

    All metrics are scored on the same resamples. Beyond ``max_resample`` rows the resamples have
    ``max_resample`` rows (an m-out-of-n bootstrap) and their deviations from the full-sample value
    are scaled by sqrt(m / n): the same interval for smooth metrics (AUC, means, R2) at a cost that
    no longer grows with the sample.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    n = len(y)
    m = min(n, max_resample)
    idx = np.random.default_rng(random_state).integers(0, n, (n_boot, m))
    y_boot, p_boot = y[idx], p[idx]
    alpha = (1 - level) / 2
    out = {}
    for name, metric in metrics.items():
        value = _value(metric, y, p)
        stats = np.asarray(metric(y_boot, p_boot), dtype=float)
        stats = stats[np.isfinite(stats)]
        if m < n:
            stats = value + (stats - value) * np.sqrt(m / n)
        lo, hi = (np.quantile(stats, [alpha, 1 - alpha]) if len(stats) else (np.nan, np.nan))
        out[name] = {"value": _clean(value), "lo": _clean(lo), "hi": _clean(hi)}
    return out


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
        entry.update(bootstrap(metrics, y, p, n_boot, random_state, max_resample=max_resample))
        entry["baseline"] = {name: _clean(_value(fn, y, constant)) if name != "auc" else 0.5
                             for name, fn in metrics.items()}
        out[target] = entry
    return out


def headline(metrics: dict) -> dict:
    """The metric the promotion gate and drift check compare per target: AUC, or R2 for CLV."""
    return {t: metrics[t]["auc" if t in CLASSIFIERS else "r2"]["value"] for t in {**CLASSIFIERS, **REGRESSORS}}
