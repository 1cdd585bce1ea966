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


def stratified_auc(y, p, groups, n_boot: int = 200, random_state: int = 0, level: float = 0.95,
                   max_resample: int = 20_000, min_class: int = 5) -> dict:
    """AUC within each group (e.g. the model version that made a prediction), weighted by group size.

    With one group it is the ordinary AUC. The interval resamples within each group (a stratified
    bootstrap, m-out-of-n beyond ``max_resample`` rows per group as in :func:`bootstrap`). Groups
    with fewer than ``min_class`` positives or negatives cannot be ranked and are left out.

    Returns:
        ``{"value", "lo", "hi", "n", "groups": {group: {"n", "auc", "weight"}}}``; value None
        when no group can be scored.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    groups = np.asarray(groups)
    rng = np.random.default_rng(random_state)
    alpha = (1 - level) / 2
    scored, detail = [], {}
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        pos = int(y[rows].sum())
        entry = {"n": int(len(rows)), "auc": None, "weight": 0.0}
        detail[_key(g)] = entry
        if min(pos, len(rows) - pos) < min_class:
            continue
        value = _value(_auc, y[rows], p[rows])
        m = min(len(rows), max_resample)
        idx = rows[rng.integers(0, len(rows), (n_boot, m))]
        stats = _auc(y[idx], p[idx])
        stats = np.where(np.isfinite(stats), stats, value)
        if m < len(rows):
            stats = value + (stats - value) * np.sqrt(m / len(rows))
        entry["auc"] = _clean(value)
        scored.append((entry, len(rows), value, stats))
    n = sum(k for _, k, _, _ in scored)
    if not n:
        return {"value": None, "lo": None, "hi": None, "n": 0, "groups": detail}
    value = sum(k / n * v for _, k, v, _ in scored)
    stats = sum(k / n * s for _, k, _, s in scored)
    for entry, k, _, _ in scored:
        entry["weight"] = round(k / n, 6)
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return {"value": _clean(value), "lo": _clean(lo), "hi": _clean(hi), "n": int(n), "groups": detail}


def _key(g) -> str:
    return str(int(g)) if isinstance(g, (int, np.integer)) else str(g)


def calibration(y, p, bins: int = 10, n_sim: int = 200, random_state: int = 0) -> dict:
    """Reliability of probabilities ``p`` for outcomes ``y``: equal-count bins and the expected calibration error.

    ECE has a floor that comes from sampling alone (a few hundred rows in ten bins give an ECE near
    0.05 even when ``p`` is exactly calibrated), so ``ece_noise`` is the 95th percentile of the ECE
    of outcomes drawn from ``p`` itself: an ECE above it is evidence of miscalibration.

    Returns:
        ``{"ece", "ece_noise", "bins": [[mean predicted, mean observed, rows], ...]}``; ECE is the
        row-weighted mean of |mean predicted - mean observed| over the bins.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if not len(y):
        return {"ece": None, "ece_noise": None, "bins": []}
    order = np.argsort(p, kind="stable")
    parts = [part for part in np.array_split(order, min(bins, len(y))) if len(part)]
    table = [[float(p[i].mean()), float(y[i].mean()), int(len(i))] for i in parts]
    ece = sum(n * abs(mp - mo) for mp, mo, n in table) / len(y)
    starts = np.cumsum([0] + [len(i) for i in parts[:-1]])
    sizes = np.array([len(i) for i in parts])
    ps = p[np.concatenate(parts)]
    rng = np.random.default_rng(random_state)
    sims = []
    for _ in range(max(1, n_sim // 50)):      # 50 draws at a time bounds the memory
        draws = rng.random((50, len(ps))) < ps
        observed = np.add.reduceat(draws, starts, axis=1) / sizes
        sims.append((np.abs(observed - np.add.reduceat(ps, starts) / sizes) * sizes).sum(axis=1) / len(ps))
    noise = float(np.quantile(np.concatenate(sims), 0.95))
    return {"ece": _clean(ece), "ece_noise": _clean(noise),
            "bins": [[round(mp, 4), round(mo, 4), n] for mp, mo, n in table]}
