"""Validation of estimator parameters, at ``fit``, with the scikit-learn convention of a ``ValueError``."""
from __future__ import annotations

import numbers

import numpy as np


def check_param(owner: str, name: str, value, kind, low=None, high=None, none_ok: bool = False) -> None:
    """Raise ``ValueError`` naming ``owner.name`` unless ``value`` is a ``kind`` in [``low``, ``high``].

    ``kind`` is ``numbers.Integral`` or ``numbers.Real`` (bools are refused for both).
    """
    if value is None and none_ok:
        return
    ok = isinstance(value, kind) and not isinstance(value, (bool, np.bool_))
    ok = ok and bool(np.isfinite(value)) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        what = "an integer" if kind is numbers.Integral else "a number"
        bounds = "" if low is None else (f" >= {low}" if high is None else f" in [{low}, {high}]")
        raise ValueError(f"{owner}: {name} must be {what}{bounds}{' or None' if none_ok else ''}, got {value!r}.")
