"""Work-arounds for known defects of pinned libraries, each removable once a fixed release is pinned.

scikit-learn 1.8-1.9 bin a weighted ``HistGradientBoosting*`` fit of fewer than 200,000 rows by
calling ``_weighted_percentile`` once per bin edge: 254 sorts of every column. A drift retraining
(recent rows weighted up) of Elite on 68,000 rows spent 291 of its 330 s there
(scikit-learn/scikit-learn#34304, fixed upstream by #34248, not yet released). The patched
function asks ``_weighted_percentile`` for all the edges of a column in one call, which sorts once:
the same function on the same inputs, so the same edges, bit for bit (``tests/test_selection.py``).
Unweighted, the same versions sort every column three times (an ``argsort`` and its gather, then
``np.unique``): one ``np.sort`` and a scan for the distinct values give the same edges, bit for bit,
about 3x faster (Elite on 200k clients: 293 s of fitting instead of 325 s).

Example:
    >>> from mlcore.compat import patch_binning
    >>> patch_binning()  # doctest: +SKIP
    True
"""
from __future__ import annotations

import numpy as np
import sklearn
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.ensemble._hist_gradient_boosting import binning

_ORIGINAL = binning._find_binning_thresholds


def find_binning_thresholds(col_data, max_bins, sample_weight=None):
    """scikit-learn's ``_find_binning_thresholds`` with the weighted edges found in one call, the
    unweighted ones with one sort."""
    if sample_weight is None:
        return _unweighted(col_data, max_bins)
    keep = ~np.isnan(col_data)
    keep &= sample_weight != 0
    col_data, sample_weight = col_data[keep], sample_weight[keep]
    order = np.argsort(col_data)
    col_data, sample_weight = col_data[order], sample_weight[order]
    if len(np.unique(col_data)) <= max_bins:          # midpoints of the distinct values: no weights used
        return _ORIGINAL(col_data, max_bins)
    percentiles = np.linspace(0, 100, num=max_bins + 1)[1:-1]
    thresholds = np.asarray(binning._weighted_percentile(col_data, sample_weight, percentiles, average=True),
                            dtype=np.float64)
    return _distinct_finite(thresholds)


def _unweighted(col_data, max_bins):
    values = np.sort(col_data[~np.isnan(col_data)])
    if len(values) < 2:
        return _ORIGINAL(col_data, max_bins)
    distinct = values[np.concatenate(([True], values[1:] != values[:-1]))].astype(binning.X_DTYPE)
    if len(distinct) == 1:
        return np.asarray([])
    if len(distinct) <= max_bins:
        thresholds = sliding_window_view(distinct, 2).mean(axis=1)
    else:
        thresholds = np.percentile(values, np.linspace(0, 100, num=max_bins + 1)[1:-1],
                                   method="averaged_inverted_cdf")
    return _distinct_finite(thresholds)


def _distinct_finite(thresholds):
    """scikit-learn's last step: the edges without repeats, +inf lowered to ALMOST_INF."""
    unique = np.unique(thresholds)
    if unique.shape[0] != thresholds.shape[0]:
        thresholds = unique
    np.clip(thresholds, a_min=None, a_max=binning.ALMOST_INF, out=thresholds)
    return thresholds


def _needs_patch() -> bool:
    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    return (1, 8) <= (major, minor) < (1, 10) and hasattr(binning, "_weighted_percentile")


def patch_binning() -> bool:
    """Install :func:`find_binning_thresholds` where scikit-learn's version has the defect; True if installed."""
    if not _needs_patch():
        return False
    binning._find_binning_thresholds = find_binning_thresholds
    return True
