"""Choosing a model family per target by a time-ordered validation inside the training window.

:class:`SelectedClassifier` and :class:`SelectedRegressor` hold a few candidate estimators. ``fit``
fits each on the older training rows, scores it on the newer ones by a proper scoring rule (log
loss for probabilities, squared error for a mean), keeps the best and refits it on all the rows.
A classifier may instead be recalibrated (isotonic or sigmoid) when that lowers the log loss of
rows its map was not fitted on: the map is fitted on the newer rows' scores of a model refitted on
the rows older than them (never on rows that model learnt from), and serves with the model refitted
on all rows. Nothing outside the rows given to ``fit`` is seen: the caller's holdout stays a
holdout. With ``max_fit_rows``, the choice and the map's refit learn from that many of the newest
older rows only (a family's rank settles long before its last row; the refit on all rows keeps
every one). With too few rows to split,
``fallback`` (else the first candidate) is kept: name the most robust one, e.g. the linear model,
which extrapolates where boosted trees stay flat. What was chosen, and why, is in ``selection_``.

Example:
    >>> from sklearn.linear_model import LogisticRegression
    >>> clf = SelectedClassifier([("c1", LogisticRegression(C=1.0)), ("c0.1", LogisticRegression(C=0.1))])
    >>> clf.fit(X, y, dates=dates).selection_["chosen"]  # doctest: +SKIP
    'c1'
"""
from __future__ import annotations

import numbers
import time

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, ParameterGrid
from sklearn.utils.validation import check_is_fitted

from mlcore.evaluation import CLASSIFIER_METRICS, REGRESSOR_METRICS, bootstrap, calibration
from mlcore.params import check_param

MIN_FIT_ROWS = 200
MIN_CHOICE_ROWS = 100
EPS = 1e-6


def _weights(sample_weight, rows=None) -> dict:
    """``fit``'s keyword for ``sample_weight`` (of ``rows`` only, when given), or none when it is None."""
    if sample_weight is None:
        return {}
    w = np.asarray(sample_weight)
    return {"sample_weight": w if rows is None else w[rows]}


def _log_loss(y, p):
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)


def _squared_error(y, p):
    return ((y - p) ** 2).mean(axis=1)


def time_order_split(n: int, dates=None, valid_days: int = 60, embargo_days: int = 90,
                     valid_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the older rows to fit on and of the newer rows to choose with (those in date order).

    With ``dates`` (each row's outcome date) the newest ``valid_days`` choose, and the rows fitted on
    are at least ``embargo_days`` older than those (no label they learn from was observed after a
    choosing row's features were built). Without dates the rows are taken to be in time order and
    the last ``valid_fraction`` of them choose.
    """
    if dates is None:
        cut = int(round(n * (1 - valid_fraction)))
        return np.arange(cut), np.arange(cut, n)
    d = pd.to_datetime(pd.Series(np.asarray(dates))).to_numpy()
    if len(d) != n:
        raise ValueError(f"dates has {len(d)} rows, X has {n}.")
    start = d.max() - np.timedelta64(valid_days, "D")
    newer = np.flatnonzero(d > start)
    return np.flatnonzero(d <= start - np.timedelta64(embargo_days, "D")), newer[np.argsort(d[newer], kind="stable")]


class SelectedEstimator(BaseEstimator):
    """Shared by :class:`SelectedClassifier` and :class:`SelectedRegressor`.

    ``grids`` maps a candidate's name to a scikit-learn parameter grid (``{"C": [0.1, 1.0]}``, nested
    names as in ``set_params``): each setting is fitted on the older rows and the one with the lowest
    score on the newer rows stands for its candidate (in the choice, the blend and the refit).
    ``max_fit_rows``: at most this many of the newest older rows are fitted on, for the choice and
    for a calibration map's refit (None: all); the choice is refitted on all rows either way.
    """

    _score_name = ""

    def __init__(self, candidates, blend: bool = False, calibrate: bool = False, valid_days: int = 60,
                 embargo_days: int = 90, valid_fraction: float = 0.2, n_boot: int = 100, random_state: int = 0,
                 fallback: str | None = None, grids: dict | None = None, max_fit_rows: int | None = None):
        self.candidates = candidates
        self.max_fit_rows = max_fit_rows
        self.fallback = fallback
        self.grids = grids
        self.blend = blend
        self.calibrate = calibrate
        self.valid_days = valid_days
        self.embargo_days = embargo_days
        self.valid_fraction = valid_fraction
        self.n_boot = n_boot
        self.random_state = random_state

    def _check_params(self) -> None:
        names = [c[0] for c in self.candidates] if isinstance(self.candidates, (list, tuple)) else []
        if (not names or any(not isinstance(c, tuple) or len(c) != 2 or not isinstance(c[0], str)
                             or not hasattr(c[1], "fit") for c in self.candidates)):
            raise ValueError("candidates must be a non-empty list of (name, estimator) pairs, got "
                             f"{self.candidates!r}.")
        if len(set(names)) != len(names) or "blend" in names:
            raise ValueError(f"candidate names must be distinct and not 'blend', got {names}.")
        if self.fallback is not None and self.fallback not in names:
            raise ValueError(f"{type(self).__name__}: fallback must be one of the candidates {names} or None, "
                             f"got {self.fallback!r}.")
        self._check_grids(dict(self.candidates))
        check_param(type(self).__name__, "valid_days", self.valid_days, numbers.Integral, 1)
        check_param(type(self).__name__, "embargo_days", self.embargo_days, numbers.Integral, 0)
        check_param(type(self).__name__, "valid_fraction", self.valid_fraction, numbers.Real, 0.01, 0.9)
        check_param(type(self).__name__, "n_boot", self.n_boot, numbers.Integral, 1)
        check_param(type(self).__name__, "max_fit_rows", self.max_fit_rows, numbers.Integral, MIN_FIT_ROWS, none_ok=True)

    def _check_grids(self, candidates: dict) -> None:
        if self.grids is None:
            return
        where = f"{type(self).__name__}: grids"
        if not isinstance(self.grids, dict):
            raise ValueError(f"{where} must be a dict of candidate name -> parameter grid, got {self.grids!r}.")
        for name, grid in self.grids.items():
            if name not in candidates:
                raise ValueError(f"{where} names {name!r}, which is not a candidate ({', '.join(candidates)}).")
            try:
                settings = list(ParameterGrid(grid))
                for params in settings:
                    clone(candidates[name]).set_params(**params)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}[{name!r}] is not a valid parameter grid for it: {exc}") from None
            if not settings or settings == [{}]:
                raise ValueError(f"{where}[{name!r}] must try at least one setting, got {grid!r}.")

    def _newest(self, rows: np.ndarray, dates: np.ndarray | None) -> np.ndarray:
        """The newest ``max_fit_rows`` of ``rows`` (by ``dates``, datetime64, else by position), in their order."""
        if self.max_fit_rows is None or len(rows) <= self.max_fit_rows:
            return rows
        if dates is None:
            return rows[-self.max_fit_rows:]
        return np.sort(rows[np.argsort(dates[rows], kind="stable")[-self.max_fit_rows:]])

    def _params(self, name: str) -> dict:
        """The chosen setting of candidate ``name``'s grid ({} without a grid or a choice)."""
        return getattr(self, "best_params_", {}).get(name, {})

    def _default(self) -> str:
        """The candidate kept without the evidence to choose: ``fallback``, else the first."""
        return self.fallback if self.fallback is not None else self.candidates[0][0]

    # --- what the subclasses define
    def _predict_one(self, est, X) -> np.ndarray:
        raise NotImplementedError

    def _too_few(self, y, fit, valid) -> str | None:
        if len(fit) < MIN_FIT_ROWS or len(valid) < MIN_CHOICE_ROWS:
            return (f"{len(fit)} rows to fit on and {len(valid)} to choose with (need {MIN_FIT_ROWS} and "
                    f"{MIN_CHOICE_ROWS})")
        return None

    def fit(self, X, y, sample_weight=None, dates=None, given=None):
        """Choose on the newer rows, then refit the choice on all rows; ``dates``: each row's outcome date.

        ``given``: a fitted :class:`SelectedClassifier` of whether ``y > 0``, fitted on the same rows
        and dates, for candidates that take their probability from it (``TwoPartRegressor("given", ...)``).
        """
        self._check_params()
        y = np.asarray(y)
        self._prepare(y)
        if dates is not None:
            dates = pd.to_datetime(pd.Series(np.asarray(dates))).to_numpy()
        fit, valid = time_order_split(len(y), dates, self.valid_days, self.embargo_days, self.valid_fraction)
        available, fit = len(fit), self._newest(fit, dates)
        record = {"scoring": self._score_name, "n_fit": int(len(fit)), "n_choose": int(len(valid)),
                  "default": self._default(), "fit_seconds": {}}
        if len(fit) < available:
            record["n_fit_available"] = int(available)
        if dates is not None and len(valid):
            d = pd.Series(dates)
            record["choose_window"] = [str(d.iloc[valid].min().date()), str(d.iloc[valid].max().date())]
        names = [name for name, _ in self.candidates]
        why_not = self._too_few(y, fit, valid)
        chosen, method = self._default(), None
        self.best_params_ = {}
        if why_not is None and (len(names) > 1 or self.blend or self.calibrate or self.grids):
            chosen, method, scores = self._choose(X, y, sample_weight, fit, valid, record, given)
            record["candidates"] = scores
            record["why"] = (f"lowest {self._score_name} on the newest {len(valid):,} training rows, fitted on "
                             + (f"the newest {len(fit):,} of {available:,} older ones" if len(fit) < available
                                else f"{len(fit):,} older ones"))
            if "blend_gain" in record:
                record["why"] += "; " + _blend_why(record, chosen)
        else:
            record["why"] = ("only one candidate" if why_not is None else
                             f"kept the default: {why_not}")
        members = record["blend_of"] if chosen == "blend" else [chosen]
        candidates = dict(self.candidates)

        def refit(rows, what):
            started = time.perf_counter()
            out = [clone(candidates[m]).set_params(**self._params(m))
                   .fit(X[rows], y[rows], **_weights(sample_weight, rows), **_given_kwargs(candidates[m], given))
                   for m in members]
            record["fit_seconds"][what] = round(time.perf_counter() - started, 2)
            return out
        self.calibrator_ = None
        if method:
            # The map is fitted on out-of-sample scores of the members refitted on the rows older
            # than the choosing rows, the newest ``max_fit_rows`` of them (the embargoed ones the
            # choice was made with are 90 days staler), and kept when it still helps on them; the
            # members refitted on all rows serve with it (the newest rows carry what the older
            # ones miss when the relation moves).
            every = np.setdiff1d(np.arange(len(y)), valid)
            older = self._newest(every, dates)
            pv = np.mean([self._predict_one(est, X[valid]) for est in refit(older, "older_rows")], axis=0)
            first = record["calibration"]
            method = self._choose_calibration(self._numeric(y[valid]), pv, record)
            record["calibration"]["on_embargoed_models"] = first
            record["calibration"]["fitted_on"] = (f"{len(older):,} rows older than the choosing rows"
                                                  + (f" (the newest of {len(every):,})" if len(older) < len(every) else ""))
            if method:
                self.calibrator_ = self._fit_calibrator(method)
        self.estimators_ = refit(np.arange(len(y)), "all_rows")
        record["refit"] = True
        if why_not is None and "candidates" in record and isinstance(self, ClassifierMixin):
            # what the choice saw, for a value model that takes its probability from this one (see ``given``)
            self.choice_model_ = _Mean([self._inner[m] for m in members], (len(fit), len(valid)))
        self.__dict__.pop("_inner", None)
        self.__dict__.pop("_cal_data", None)
        self.__dict__.pop("choice_predictions_", None)
        if "_choice_pred" in self.__dict__:
            # (rows, target, the chosen one's uncalibrated scores) of the choosing rows, for a choice
            # between whole pipelines made on the same rows (:class:`mlcore.tiers.SimplerUnlessBeaten`); not pickled
            self.choice_predictions_ = (valid, *self.__dict__.pop("_choice_pred"))
        record["chosen"] = chosen
        self.selection_ = record
        return self

    def __getstate__(self):
        state = dict(super().__getstate__())    # a copy: the live object keeps its attributes
        state.pop("choice_predictions_", None)
        return state

    def _choose(self, X, y, sample_weight, fit, valid, record, given=None):
        weights = _weights(sample_weight, fit)
        # a probability taken from ``given`` must come from its model fitted on these same older rows
        seen = getattr(given, "choice_model_", None)
        if seen is not None and seen.split != (len(fit), len(valid)):
            seen = None
        yv = self._numeric(y[valid])
        preds, failed, tried, best = {}, {}, {}, {}
        self._inner = {}
        grids = self.grids or {}
        for name, est in self.candidates:
            for params in (ParameterGrid(grids[name]) if name in grids else [{}]):
                try:
                    if _takes_given(est) and given is None:
                        raise ValueError("it takes P(y > 0) from fit's given, and none was given")
                    if _takes_given(est) and seen is None:
                        raise ValueError("it takes P(y > 0) from the purchase model, which made no choice on "
                                         "these rows")
                    started = time.perf_counter()
                    model = clone(est).set_params(**params).fit(X[fit], y[fit], **weights,
                                                                **_given_kwargs(est, seen))
                    took = round(time.perf_counter() - started, 2)
                    p = self._predict_one(model, X[valid])
                except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:   # e.g. no positive value
                    why = f"{type(exc).__name__}: {exc}"[:300]
                    tried.setdefault(name, []).append({"params": params, "failed": why})
                    continue
                loss = float(self._metric(yv[None], p[None])[0])
                tried.setdefault(name, []).append({"params": params, self._score_name: round(loss, 6),
                                                   "fit_seconds": took})
                if loss < best.get(name, np.inf):
                    best[name], preds[name], self._inner[name], self.best_params_[name] = loss, p, model, params
            if name not in preds:
                failed[name] = tried[name][-1]["failed"]
        # per candidate, the seconds of its grid's fits that scored
        record["fit_seconds"]["choice"] = {name: round(sum(t["fit_seconds"] for t in runs if "fit_seconds" in t), 2)
                                           for name, runs in tried.items() if any("fit_seconds" in t for t in runs)}
        if not preds:
            raise ValueError(f"every candidate failed to fit: {failed}")
        if failed:
            record["failed"] = failed
        if self.blend and len(preds) > 1:
            record["blend_of"] = self._best_pair(yv, preds, best)
            preds["blend"] = np.mean([preds[name] for name in record["blend_of"]], axis=0)
        metrics = {self._score_name: self._metric, **self._also}
        scores = {name: bootstrap(metrics, yv, p, self.n_boot, self.random_state) for name, p in preds.items()}
        for name in grids:
            if name in scores:
                scores[name].update(params=self.best_params_[name], grid=tried[name])
        self.best_params_ = {name: params for name, params in self.best_params_.items() if name in grids}
        baseline = np.full(len(yv), self._numeric(y[fit]).mean())
        record["baseline"] = {k: round(float(fn(yv[None], baseline[None])[0]), 6) for k, fn in metrics.items()
                              if k != "auc"}
        chosen = min(scores, key=lambda name: (scores[name][self._score_name]["value"], list(scores).index(name)))
        if chosen == "blend":
            single = min(best, key=lambda name: (best[name], list(best).index(name)))
            chosen = self._blend_or_best(yv, preds, record, top=single)
        self._choice_pred = (yv, preds[chosen])
        method = self._choose_calibration(yv, preds[chosen], record) if self.calibrate else None
        return chosen, method, scores

    def _best_pair(self, yv, preds, best) -> list[str]:
        """The two candidates whose mean scores lowest on the newer rows, the better one first.

        The pair is searched, not taken as the two best alone: two candidates of one family (two
        linear models) make the same errors, and their mean gains little over either.
        """
        names = sorted(preds, key=lambda name: best[name])
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        loss = lambda pair: float(self._metric(yv[None], np.mean([preds[n] for n in pair], axis=0)[None])[0])  # noqa: E731
        return list(min(pairs, key=lambda pair: (loss(pair), pairs.index(pair))))

    def _blend_or_best(self, yv, preds, record, top: str) -> str:
        """``blend`` when it beats ``top``, the best single candidate, beyond noise, or when ``top`` and
        the blend's other member cannot be told apart; else ``top``.

        The gain is the mean per-row loss of ``top`` minus the blend's, on the same rows; kept when
        its paired bootstrap's 5% quantile is above zero. Two members whose paired difference has a
        90% interval around zero are a tie, and serving either is a coin flip between them; the loss
        being convex, their mean scores no worse than the mean of their scores, so the tie serves
        the blend. Otherwise a blend ahead only by noise gives way to ``top`` (it costs two fits and
        two predictions).
        """
        per_row = lambda p: self._metric(yv[:, None], p[:, None])          # noqa: E731
        interval = lambda d: paired_gain(d, self.n_boot, self.random_state)  # noqa: E731
        record["blend_gain"] = interval(per_row(preds[top]) - per_row(preds["blend"]))
        beyond = (record["blend_gain"]["lo"] or 0.0) > 0
        tied = False
        if top in record["blend_of"]:
            other = next(name for name in record["blend_of"] if name != top)
            record["members_difference"] = d = interval(per_row(preds[other]) - per_row(preds[top]))
            tied = d["lo"] is not None and d["hi"] is not None and d["lo"] <= 0 <= d["hi"]
        record["blend_kept"] = bool(beyond or tied)
        record["blend_kept_for"] = "gain" if beyond else "tie" if tied else None
        return "blend" if beyond or tied else top

    def _numeric(self, y) -> np.ndarray:
        return np.asarray(y, dtype=float)

    def _choose_calibration(self, yv, pv, record):
        return None

    def _fit_calibrator(self, method):
        return None


def paired_gain(d, n_boot: int, random_state: int = 0, level: float = 0.9) -> dict:
    """The mean of per-row loss differences ``d`` with its bootstrap interval (``level``)."""
    return bootstrap({"gain": lambda _, x: x.mean(axis=1)}, d, d, n_boot, random_state, level=level)["gain"]


def num(x) -> str:
    """A figure of a choice's reason, in 4 significant digits ("n/a" for a bootstrap bound that is None)."""
    return "n/a" if x is None else f"{x:.4g}"


def _blend_why(record: dict, chosen: str) -> str:
    """Why the blend was kept or not, in words, from the choice's record."""
    a, b = record["blend_of"]
    g = record["blend_gain"]
    gain = f"lower by {num(g['value'])} (90% interval {num(g['lo'])} to {num(g['hi'])})"
    if record["blend_kept_for"] == "gain":
        return f"the blend of {a} and {b} was {gain}, beyond noise"
    if record["blend_kept_for"] == "tie":
        d = record["members_difference"]
        return (f"the blend of {a} and {b} was {gain}, and {a} and {b} were tied (difference {num(d['value'])}, "
                f"90% interval {num(d['lo'])} to {num(d['hi'])}), so their mean serves")
    return f"the blend of {a} and {b} was {gain}, within noise, so {chosen} serves"


class SelectedClassifier(ClassifierMixin, SelectedEstimator):
    """The candidate classifier with the lowest log loss on the newer rows.

    With ``blend``, the mean of the pair of candidates that scores best together is a candidate
    too, kept when it beats the best single one beyond noise or its two members are tied.

    With ``calibrate``, the chosen one's scores on the newer rows are split in time: isotonic and
    sigmoid maps are fitted on the older half and one is kept when it lowers the log loss of the
    newer half significantly (paired 95 % bound). The chosen one is then refitted on the rows
    older than the newer rows (the embargoed rows included; the newest ``max_fit_rows`` of them) and
    the test is made again on its scores; a map that still helps is refitted on all its scores of
    the newer rows. The chosen one refitted on all rows serves, with that map or without one.
    Binary targets only.
    """

    _score_name = "log_loss"
    _metric = staticmethod(_log_loss)
    _also = {"auc": CLASSIFIER_METRICS["auc"]}

    def _numeric(self, y):
        return (np.asarray(y) == self.classes_[1]).astype(float)

    def _prepare(self, y):
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"SelectedClassifier needs two classes, got {self.classes_.tolist()}.")

    def _too_few(self, y, fit, valid):
        why = super()._too_few(y, fit, valid)
        if why is None and (len(np.unique(y[fit])) < 2 or len(np.unique(y[valid])) < 2):
            why = "one class only in the rows to fit on or to choose with"
        return why

    def _predict_one(self, est, X):
        return est.predict_proba(X)[:, 1]

    def _choose_calibration(self, yv, pv, record):
        half = len(yv) // 2           # the choosing rows are in date order
        a, b = slice(0, half), slice(half, None)
        row_loss = lambda p: _log_loss(yv[b][:, None], np.asarray(p)[:, None])  # noqa: E731  (per row)
        raw = row_loss(pv[b])
        losses, gains = {"none": float(raw.mean())}, {}
        for method in ("isotonic", "sigmoid"):
            cal = _calibrator(method).fit(_cal_input(method, pv[a]), yv[a])
            loss = row_loss(_cal_output(cal, method, pv[b]))
            losses[method] = float(loss.mean())
            d = raw - loss            # paired: the same rows, so the gain's interval is narrow
            gains[method] = (float(d.mean()), float(d.mean() - 1.959964 * d.std(ddof=1) / np.sqrt(len(d))))
        best = max(gains, key=lambda m: gains[m][0])
        keep = gains[best][1] > 0
        self._cal_data = (pv, yv)
        record["calibration"] = {"log_loss_on_later_half": {k: round(v, 6) for k, v in losses.items()},
                                 "ece_raw": calibration(yv[b], pv[b])["ece"],
                                 "method": best if keep else None,
                                 "why": (f"{best} lowers the log loss of the later half of the choosing rows by "
                                         f"{gains[best][0]:.4f} (95% lower bound {gains[best][1]:.4f} > 0), fitted "
                                         "on the earlier half" if keep else
                                         "no map lowers the log loss of the later half of the choosing rows "
                                         "significantly: scores kept as they are")}
        return best if keep else None

    def _fit_calibrator(self, method):
        pv, y01 = self._cal_data
        return method, _calibrator(method).fit(_cal_input(method, pv), y01)

    def predict_proba(self, X):
        check_is_fitted(self, "estimators_")
        p = np.mean([est.predict_proba(X)[:, 1] for est in self.estimators_], axis=0)
        if self.calibrator_ is not None:
            method, cal = self.calibrator_
            p = _cal_output(cal, method, p)
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def _calibrator(method):
    if method == "isotonic":
        return IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip")
    return LogisticRegression(C=1e4)


def _cal_input(method, p):
    p = np.clip(p, EPS, 1 - EPS)
    return p if method == "isotonic" else np.log(p / (1 - p))[:, None]


def _cal_output(cal, method, p):
    return cal.predict(_cal_input(method, p)) if method == "isotonic" else cal.predict_proba(_cal_input(method, p))[:, 1]


class SelectedRegressor(RegressorMixin, SelectedEstimator):
    """The candidate regressor with the lowest squared error on the newer rows.

    With ``blend``, the mean of the pair of candidates that scores best together is a candidate
    too, kept when it beats the best single one beyond noise.

    Squared error is the proper scoring rule for a mean; predictions are clipped at zero (values
    are non-negative) before they are scored, as they are when served.
    """

    _score_name = "squared_error"
    _metric = staticmethod(_squared_error)
    _also = {"r2": REGRESSOR_METRICS["r2"]}

    def _prepare(self, y):
        if not np.all(np.isfinite(np.asarray(y, dtype=float))):
            raise ValueError("SelectedRegressor: y has missing or infinite values.")

    def _predict_one(self, est, X):
        return np.clip(est.predict(X), 0.0, None)

    def predict(self, X, known: dict | None = None):
        """``known``: as :meth:`TwoPartRegressor.predict`'s, for the members that take a given probability."""
        check_is_fitted(self, "estimators_")
        return np.mean([np.clip(est.predict(X, known=known) if isinstance(est, TwoPartRegressor) else est.predict(X),
                                0.0, None) for est in self.estimators_], axis=0)


class TwoPartRegressor(RegressorMixin, BaseEstimator):
    """``P(y > 0) x E[y | y > 0]``: a classifier for whether there is any value, a regressor for how much.

    Suits a value that is zero in most windows (no purchase) and skewed when positive. With
    ``classifier="given"``, ``fit``'s ``given`` (a fitted classifier of ``y > 0``, e.g. the tier's
    purchase model, chosen and calibrated for that target) gives the probability; it is not refitted.
    """

    def __init__(self, classifier, regressor):
        self.classifier = classifier
        self.regressor = regressor

    def fit(self, X, y, sample_weight=None, given=None):
        y = np.asarray(y, dtype=float)
        positive = y > 0
        if _takes_given(self):
            if given is None or not hasattr(given, "predict_proba"):
                raise ValueError("TwoPartRegressor(classifier='given') needs fit's given: a fitted classifier "
                                 f"of y > 0, got {given!r}.")
            if not positive.any():
                raise ValueError("TwoPartRegressor needs rows with y > 0.")
            self.classifier_ = given
        elif positive.all() or not positive.any():
            raise ValueError("TwoPartRegressor needs rows with y > 0 and rows with y = 0.")
        else:
            self.classifier_ = clone(self.classifier).fit(X, positive.astype(int), **_weights(sample_weight))
        rows = np.flatnonzero(positive)
        self.regressor_ = clone(self.regressor).fit(X[rows], y[rows], **_weights(sample_weight, rows))
        return self

    def predict(self, X, known: dict | None = None):
        """``known``: probabilities of ``X`` already computed, by ``id`` of the classifier that gave them
        (the tier's purchase model, predicted once for both targets)."""
        check_is_fitted(self, "regressor_")
        p = (known or {}).get(id(self.classifier_))
        if p is None:
            p = self.classifier_.predict_proba(X)[:, 1]
        return p * np.clip(self.regressor_.predict(X), 0.0, None)


def _takes_given(est) -> bool:
    return isinstance(est, TwoPartRegressor) and isinstance(est.classifier, str) and est.classifier == "given"


def _given_kwargs(est, given) -> dict:
    return {"given": given} if _takes_given(est) else {}


class _Mean:
    """The mean probability of classifiers (a chosen candidate or blend, as fitted for the choice)."""

    def __init__(self, estimators, split: tuple[int, int]):
        self.estimators, self.split = estimators, split

    def predict_proba(self, X):
        p = np.mean([est.predict_proba(X)[:, 1] for est in self.estimators], axis=0)
        return np.column_stack([1 - p, p])


class GuardedRegressor(RegressorMixin, BaseEstimator):
    """A regressor whose predictions are kept within the range of its predictions on its own training rows.

    A generalised linear model with a log link extrapolates exponentially on inputs outside the
    training range (a Gamma GLM once predicted values that gave R2 = -4); the guard bounds that.
    """

    def __init__(self, regressor):
        self.regressor = regressor

    def fit(self, X, y, sample_weight=None):
        self.regressor_ = clone(self.regressor).fit(X, y, **_weights(sample_weight))
        fitted = self.regressor_.predict(X)
        self.range_ = (float(np.min(fitted)), float(np.max(fitted)))
        return self

    def predict(self, X):
        check_is_fitted(self, "range_")
        return np.clip(self.regressor_.predict(X), *self.range_)


class RecalibratedRegressor(RegressorMixin, BaseEstimator):
    """A regressor whose predictions are mapped to the mean target seen at each predicted value.

    The regressor is fitted on ``cv`` shuffled folds of the training rows and predicts the rows it
    did not fit; those out-of-fold predictions are cut at their quantiles into ``n_bins`` bins, and
    an isotonic regression of each bin's mean target on its mean prediction is the map. The
    regressor is then refitted on all the rows and ``predict`` is the map of its prediction: the
    model's ranking, at the level it was measured to be wrong by (isotonic recalibration, as for a
    classifier's probabilities). It mends a log-link model that overshoots where inputs grow past
    the training range. The bins keep the map's ends from resting on a few extreme targets (one
    client's spend, with a heavy tail); between bins the map is linear, beyond them flat.
    """

    def __init__(self, regressor, cv: int = 2, n_bins: int = 50, random_state: int = 0):
        self.regressor = regressor
        self.cv = cv
        self.n_bins = n_bins
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        check_param(type(self).__name__, "cv", self.cv, numbers.Integral, 2)
        check_param(type(self).__name__, "n_bins", self.n_bins, numbers.Integral, 1)
        y = np.asarray(y, dtype=float)
        if len(y) < 2 * self.cv:
            raise ValueError(f"{type(self).__name__} needs at least {2 * self.cv} rows for cv={self.cv}, "
                             f"got {len(y)}.")
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        oof = np.empty(len(y))
        folds = KFold(self.cv, shuffle=True, random_state=self.random_state).split(np.zeros((len(y), 1)))
        for rest, rows in folds:
            oof[rows] = clone(self.regressor).fit(X[rest], y[rest], **_weights(sample_weight, rest)).predict(X[rows])
        edges = np.unique(np.quantile(oof, np.linspace(0, 1, self.n_bins + 1)))
        bins = np.clip(np.searchsorted(edges, oof, side="right") - 1, 0, max(len(edges) - 2, 0))
        mass = np.bincount(bins, w)
        seen = mass > 0
        self.map_ = IsotonicRegression(out_of_bounds="clip").fit(
            (np.bincount(bins, w * oof)[seen] / mass[seen]), np.bincount(bins, w * y)[seen] / mass[seen],
            sample_weight=mass[seen])
        self.regressor_ = clone(self.regressor).fit(X, y, **_weights(sample_weight))
        return self

    def predict(self, X):
        check_is_fitted(self, "map_")
        return self.map_.predict(self.regressor_.predict(X))


def describe_params(params: dict | None) -> str:
    """A grid setting as ``name=value`` pairs, each name without its nesting (``C=0.1``)."""
    return ", ".join(f"{k.rsplit('__', 1)[-1]}={v:g}" if isinstance(v, float) else f"{k.rsplit('__', 1)[-1]}={v}"
                     for k, v in (params or {}).items())


def selection_table(metrics: dict) -> pd.DataFrame:
    """One row per (target, candidate) of a model version's ``metrics``: its score with interval,
    the trivial baseline's, and whether it was chosen (and recalibrated)."""
    rows = []
    for target, entry in metrics.items():
        choice = entry.get("selection") if isinstance(entry, dict) else None
        if not choice or "candidates" not in choice:
            continue
        scoring, method = choice["scoring"], (choice.get("calibration") or {}).get("method")
        for name, score in choice["candidates"].items():
            s = score[scoring]
            rows.append({"target": target, "candidate": name + ("*" if name == choice["chosen"] else ""),
                         "setting": describe_params(score.get("params")), "rule": scoring, "score": s["value"], "lo": s["lo"], "hi": s["hi"],
                         "baseline": choice["baseline"][scoring],
                         "calibrated": (method or "") if name == choice["chosen"] else ""})
    return pd.DataFrame(rows)
