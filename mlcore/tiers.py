"""The Fast and Elite tiers: whole scikit-learn pipelines (features included), three targets each."""
from __future__ import annotations

import functools
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone, is_classifier
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.feature_selection import SelectKBest, f_classif, f_regression
from sklearn.linear_model import GammaRegressor, LogisticRegression, PoissonRegressor, Ridge
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import MaxAbsScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted

from mlcore.compat import patch_binning
from mlcore.exceptions import ConfigError
from mlcore.features import (ActivityStats, CoOccurrence, ConceptDiversity, ConceptTfidf, CustomerBase,
                             PurchaseHistory, RecencyConcepts)
from mlcore.forest import CompiledForest
from mlcore.evaluation import bootstrap
from mlcore.params import check_param
from mlcore.selection import (GuardedRegressor, RecalibratedRegressor, SelectedClassifier, SelectedEstimator,
                              SelectedRegressor, TwoPartRegressor, _takes_given, num, paired_gain)

patch_binning()    # boosting fits bin their columns in one sort each (weighted ones: drift retrainings)

TIERS = ("fast", "elite")
TARGETS = ("purchased", "churned", "lifetime_value")
OUTPUTS = ("purchase_likelihood", "churn_risk", "predicted_clv")


class MultiTargetModel(BaseEstimator):
    """Purchase and churn classifiers and a non-negative CLV regressor fitted on the same features.

    ``fit`` takes ``y`` with the columns of :data:`TARGETS`; ``predict`` returns an array with the
    columns of :data:`OUTPUTS`: two probabilities and a CLV clipped at zero.

    When ``clv_given_purchase`` is true, ``clv`` is fitted only on rows with a purchase and the
    prediction is ``P(purchase) x E[value | purchase]`` (a two-part model, since the contract's
    lifetime_value is positive only in windows with a purchase).

    ``fit``'s ``dates`` (each row's outcome date) reach the estimators that choose among candidates
    (:mod:`mlcore.selection`); ``selection_`` then holds their choices per target. ``score`` is the
    mean of the purchase AUC, the churn AUC and the CLV R2, so scikit-learn's model-selection
    tools (``cross_val_score``, ``GridSearchCV``) work on a tier pipeline.
    """

    def __init__(self, purchase, churn, clv, clv_given_purchase: bool = False):
        self.purchase = purchase
        self.churn = churn
        self.clv = clv
        self.clv_given_purchase = clv_given_purchase

    def fit(self, X, y, sample_weight=None, dates=None):
        Y = np.asarray(y, dtype=float)
        if Y.ndim != 2 or Y.shape[1] != 3:
            raise ValueError(f"y must have the 3 columns {TARGETS}, got shape {Y.shape}.")

        def fit(est, rows, target, **kwargs):
            if sample_weight is not None:
                kwargs["sample_weight"] = np.asarray(sample_weight)[rows]
            if dates is not None and isinstance(est, SelectedEstimator):
                kwargs["dates"] = np.asarray(dates)[rows]
            return clone(est).fit(X[rows], target[rows], **kwargs)
        every = np.arange(len(Y))
        self.purchase_ = fit(self.purchase, every, Y[:, 0].astype(int))
        self.churn_ = fit(self.churn, every, Y[:, 1].astype(int))
        if self.clv_given_purchase:
            self.clv_ = fit(self.clv, np.flatnonzero((Y[:, 0] == 1) & (Y[:, 2] > 0)), Y[:, 2])
        else:
            # a CLV candidate TwoPartRegressor("given", ...) takes P(value > 0) from the purchase model
            # (the contract's value is positive exactly in windows with a purchase)
            given = {"given": self.purchase_} if _takes_given(self.clv) or isinstance(self.clv, SelectedRegressor) else {}
            self.clv_ = fit(self.clv, every, Y[:, 2], **given)
        for est in (self.purchase_, self.churn_):
            est.__dict__.pop("choice_model_", None)      # the choice's models: not part of the artifact
        return self

    @property
    def selection_(self) -> dict:
        """Each target's choice among its candidates (``purchase``, ``churn``, ``clv``), where one was made."""
        check_is_fitted(self, "clv_")
        return {target: est.selection_ for target, est in
                (("purchase", self.purchase_), ("churn", self.churn_), ("clv", self.clv_))
                if hasattr(est, "selection_")}

    def score(self, X, y, sample_weight=None) -> float:
        """Mean of the purchase AUC, the churn AUC and the CLV R2 on ``X``."""
        return _mean_headline(y, self.predict(X))

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "clv_")
        purchase = self.purchase_.predict_proba(X)[:, 1]
        # a two-part CLV's probability is the purchase model's: computed once
        known = {"known": {id(self.purchase_): purchase}} if isinstance(self.clv_, (SelectedRegressor, TwoPartRegressor)) else {}
        clv = np.clip(self.clv_.predict(X, **known), 0.0, None)
        if self.clv_given_purchase:
            clv = purchase * clv
        return np.column_stack([purchase, self.churn_.predict_proba(X)[:, 1], clv])


def _mean_headline(y, pred) -> float:
    from mlcore.evaluation import evaluate, headline

    values = headline(evaluate(np.asarray(y, dtype=float), pred, n_boot=1)).values()
    return float(np.mean([v for v in values if v is not None]))


class SimplerUnlessBeaten(BaseEstimator):
    """Per target, the simple pipeline's prediction unless the rich one's beats it beyond noise.

    ``simple`` and ``rich`` are pipelines ending in a :class:`MultiTargetModel`; each target's
    estimators choose among their candidates on the same newest training rows (the same ``dates``
    reach both through ``fit``'s ``model__dates``). On those rows, per target, the rich one's chosen
    candidate (and for CLV the mean of it and the simple one's) is scored by the target's rule (log
    loss, squared error); the better serves when its per-row gain over the simple one has a
    paired-bootstrap 90 % interval above zero, else the simple one serves, its predictions exactly.
    The classifiers are not averaged: a mean of two calibrated probabilities is not calibrated, and
    the label-free performance estimate (:mod:`mlcore.estimation`) relies on calibration.
    Where the rich pipeline's extra features add nothing it can show, their variance is not paid for.

    ``served_`` holds each target's choice (``simple``, ``rich`` or ``mean``); ``selection_`` the rich
    one's choice records, with the simple pipeline and the mean among the candidates. A pipeline no
    target serves is not kept. ``fit`` passes its keyword arguments to both pipelines.
    """

    def __init__(self, simple, rich, names: tuple = ("fast", "elite"), n_boot: int = 200, random_state: int = 0):
        self.simple = simple
        self.rich = rich
        self.names = names
        self.n_boot = n_boot
        self.random_state = random_state

    def fit(self, X, y, **fit_params):
        check_param(type(self).__name__, "n_boot", self.n_boot, numbers.Integral, 1)
        if not (isinstance(self.names, (tuple, list)) and len(self.names) == 2 and len(set(self.names)) == 2):
            raise ValueError(f"{type(self).__name__}: names must be two distinct names, got {self.names!r}.")
        simple = clone(self.simple).fit(X, y, **fit_params)
        rich = clone(self.rich).fit(X, y, **fit_params)
        self.served_, self.selection_ = {}, {}
        for target in ("purchase", "churn", "clv"):
            self.served_[target], self.selection_[target] = self._choose(
                getattr(simple[-1], target + "_"), getattr(rich[-1], target + "_"))
        used = set(self.served_.values())
        self.simple_ = simple if used & {"simple", "mean"} else None
        self.rich_ = rich if used & {"rich", "mean"} else None
        return self

    def _choose(self, s, r, level: float = 0.9) -> tuple[str, dict]:
        simple_name, rich_name = self.names
        record = dict(getattr(r, "selection_", {}))
        a, b = getattr(s, "choice_predictions_", None), getattr(r, "choice_predictions_", None)
        if a is None or b is None or not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])):
            record["versus_simple"] = {"served": "rich", "why": f"{rich_name}'s own: {simple_name} and {rich_name} "
                                       "made no choice on the same rows to compare them by"}
            return "rich", record
        _, yv, ps = a
        preds = {"simple": ps, "rich": b[2]}
        if not is_classifier(r):
            # the mean of two calibrated probabilities is not calibrated (it is pulled towards the base
            # rate), and the label-free performance estimate relies on calibration: classifiers serve one
            preds["mean"] = (ps + b[2]) / 2
        loss = {k: r._metric(yv[:, None], p[:, None]) for k, p in preds.items()}
        best = min([k for k in preds if k != "simple"], key=lambda k: (float(loss[k].mean()), k != "rich"))
        d = loss["simple"] - loss[best]
        gain = paired_gain(d, self.n_boot, self.random_state, level=level)
        served = best if (gain["lo"] or 0.0) > 0 else "simple"
        label = {"simple": f"{simple_name}_tier", "rich": record.get("chosen", rich_name),
                 "mean": f"mean_with_{simple_name}_tier"}
        what = {"rich": f"{rich_name}'s own choice", "mean": f"the mean of {rich_name}'s and {simple_name}'s"}[best]
        why = (f"{what} scored {num(gain['value'])} lower than {simple_name}'s on the same rows (90% interval "
               f"{num(gain['lo'])} to {num(gain['hi'])})" + (", beyond noise" if served != "simple" else
                                                           f", not beyond noise, so {simple_name}'s serves"))
        metrics = {r._score_name: r._metric, **r._also}
        scores = {label[k]: bootstrap(metrics, yv, p, self.n_boot, self.random_state)
                  for k, p in preds.items() if k != "rich"}
        record["versus_simple"] = {"served": served, "gain": gain, "why": why}
        if "candidates" in record:
            record["candidates"] = {**record["candidates"], **scores}
            record["own_choice"] = record["chosen"]
            record["chosen"] = label[served]
            record["why"] = f"{record['why']}; {why}"
            if served == "simple":
                record["calibration"] = s.selection_.get("calibration")
        return served, record

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "served_")
        out = {name: est.predict(X) for name, est in (("simple", self.simple_), ("rich", self.rich_)) if est is not None}
        if "mean" in self.served_.values():
            out["mean"] = (out["simple"] + out["rich"]) / 2
        return np.column_stack([out[self.served_[t]][:, col] for col, t in enumerate(("purchase", "churn", "clv"))])

    def score(self, X, y, sample_weight=None) -> float:
        """Mean of the purchase AUC, the churn AUC and the CLV R2 on ``X``."""
        return _mean_headline(y, self.predict(X))


def selection_of(model) -> dict:
    """Each target's choice record of a fitted tier (a pipeline or :class:`SimplerUnlessBeaten`)."""
    return getattr(model if hasattr(model, "served_") else model[-1], "selection_", {})


def to_dense(X):
    """Dense float32 copy of a (possibly sparse) matrix, for estimators that need dense input."""
    return X.astype(np.float32).toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float32)


def _varying_first(X, y, score):
    """``score(X, y)`` (an F-test) with the columns constant in ``X`` ranked last.

    A column constant in the training window (a concept no training note has, no purchases yet)
    has no information, but rounding gives it an arbitrary F (f_classif ranked one above a real
    column) or a warning: it is scored NaN, which :class:`~sklearn.feature_selection.SelectKBest`
    ranks last, and the F-test runs on the other columns only.
    """
    lo, hi = X.min(axis=0), X.max(axis=0)
    varying = np.flatnonzero(np.ravel(hi.toarray() - lo.toarray() if sp.issparse(lo) else hi - lo) != 0)
    f, p = np.full(X.shape[1], np.nan), np.ones(X.shape[1])
    if len(varying):
        with warnings.catch_warnings():
            # a column constant within each class (f_classif) or 0/0 F: NaN, ranked last as well
            warnings.filterwarnings("ignore", "Features .* are constant", UserWarning)
            warnings.filterwarnings("ignore", "invalid value encountered in (divide|sqrt)", RuntimeWarning)
            f[varying], p[varying] = score(X[:, varying], y)
    return f, p


_HGB = dict(learning_rate=0.08, max_iter=250, max_leaf_nodes=15, min_samples_leaf=80, l2_regularization=1.0,
            early_stopping=True, validation_fraction=0.1, n_iter_no_change=15)


class _SelectedBoosting(BaseEstimator):
    """Gradient boosting on the ``k_best`` most informative columns (boosting cost grows with columns).

    The fitted trees are also compiled (:class:`~mlcore.forest.CompiledForest`, the same outputs to
    float rounding, several times faster than scikit-learn's predictor); every prediction, the
    validation included, goes through them. ``model_`` stays the scikit-learn estimator.
    """

    def __init__(self, k_best: int = 200, loss: str | None = None, max_iter: int = 250, random_state: int = 0):
        self.k_best = k_best
        self.loss = loss
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        check_param(type(self).__name__, "k_best", self.k_best, numbers.Integral, 1)
        check_param(type(self).__name__, "max_iter", self.max_iter, numbers.Integral, 1)
        if self.loss is not None and not isinstance(self.loss, str):
            raise ValueError(f"{type(self).__name__}: loss must be a scikit-learn loss name or None, got {self.loss!r}.")
        classify = is_classifier(self)
        score = functools.partial(_varying_first, score=f_classif if classify else f_regression)
        self.selector_ = SelectKBest(score, k=min(self.k_best, X.shape[1])).fit(X, y)
        kwargs = {} if self.loss is None else {"loss": self.loss}
        model = (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
            **{**_HGB, "max_iter": self.max_iter}, **kwargs, random_state=self.random_state)
        self.model_ = model.fit(to_dense(self.selector_.transform(X)), y, sample_weight=sample_weight)
        try:
            self.forest_ = CompiledForest(self.model_)
        except ValueError:                  # multi-class: scikit-learn predicts
            self.forest_ = None
        if classify:
            self.classes_ = self.model_.classes_
        return self

    def _dense(self, X):
        check_is_fitted(self, "model_")
        return to_dense(self.selector_.transform(X))

    def _raw(self, X):
        """The compiled trees' raw scores for ``X``, or None (multi-class, or an older artifact)."""
        forest = getattr(self, "forest_", None)
        return None if forest is None else forest.raw(self._dense(X))

    def predict(self, X):
        if is_classifier(self):
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        raw = self._raw(X)
        return self.model_.predict(self._dense(X)) if raw is None else self.model_._loss.link.inverse(raw)


class SelectedBoostingClassifier(ClassifierMixin, _SelectedBoosting):
    def predict_proba(self, X):
        raw = self._raw(X)
        return self.model_.predict_proba(self._dense(X)) if raw is None else self.model_._loss.predict_proba(raw)


class SelectedBoostingRegressor(RegressorMixin, _SelectedBoosting):
    pass


def _glm(family, alpha: float):
    """A regularised GLM on a unit-variance target (the penalty means the same at any currency scale),
    its predictions kept within their training range."""
    return GuardedRegressor(TransformedTargetRegressor(family(alpha=alpha, max_iter=1000),
                                                       transformer=StandardScaler(with_mean=False)))


#: Penalty strengths tried on the newest training rows (each candidate keeps its best): these matter
#: by more than the choice between families (a Gamma GLM's R2 went from 0.03 to 0.51 across them).
C_GRID = {"C": [0.03, 0.1, 0.3, 1.0]}
GLM_ALPHA_GRID = {"regressor__regressor__alpha": [0.003, 0.01, 0.03, 0.1]}
TWO_PART_GLM_GRID = {"regressor__regressor__regressor__regressor__alpha": [0.01, 0.03, 0.1, 0.3]}
LOGNORMAL_GRID = {"regressor__regressor__regressor__regressor__alpha": [1.0, 10.0, 100.0, 1000.0]}


#: The choice (and a calibration map's refit) learns from at most this many of the newest rows older
#: than the choosing rows; the chosen model is refitted on all rows. On 200k clients (236,189 rows
#: to choose from) it made the same choices, kept one more map (Elite churn's sigmoid) and moved no
#: holdout AUC or R2 by more than 0.0014, in 180 s of fitting instead of 359 s (README, targets).
CHOICE_ROWS = 80_000


def _two_part_glm(random_state: int = 0):
    """The purchase model's probability x a Gamma GLM of the value given a purchase, recalibrated."""
    return TwoPartRegressor("given", RecalibratedRegressor(_glm(GammaRegressor, 0.1), random_state=random_state))


def _two_part_lognormal(random_state: int = 0):
    """The purchase model's probability x a ridge regression of the log value given a purchase,
    recalibrated: least squares on the log scale, the lognormal model of spend, is not led by the
    few largest amounts as a Gamma or Poisson deviance is; the map restores the mean exp(log) loses."""
    log_value = TransformedTargetRegressor(Ridge(alpha=10.0), func=np.log, inverse_func=np.exp, check_inverse=False)
    return TwoPartRegressor("given", RecalibratedRegressor(GuardedRegressor(log_value), random_state=random_state))


def _linear_clv(random_state: int = 0) -> list:
    """Fast's linear CLV candidates, which Elite's choice includes too; their grids: ``LINEAR_CLV_GRIDS``."""
    return [("poisson_glm", _glm(PoissonRegressor, 0.01)),
            ("two_part_glm", _two_part_glm(random_state)),
            ("two_part_lognormal", _two_part_lognormal(random_state))]


LINEAR_CLV_GRIDS = {"poisson_glm": GLM_ALPHA_GRID, "two_part_glm": TWO_PART_GLM_GRID,
                    "two_part_lognormal": LOGNORMAL_GRID}


def fast_pipeline(random_state: int = 0) -> Pipeline:
    """Fast tier: concept TF-IDF, one recency-weighted concept block, activity statistics (note
    recency included) and purchase history; per target, small linear models (their penalty chosen
    on time) and, for CLV, a small boosted model, chosen on time."""
    def classifier():
        return SelectedClassifier([("logistic", LogisticRegression(C=0.3, max_iter=500))], grids={"logistic": C_GRID},
                                  calibrate=True, max_fit_rows=CHOICE_ROWS, random_state=random_state)
    return Pipeline([
        ("features", FeatureUnion([("tfidf", ConceptTfidf()), ("recency", RecencyConcepts(half_lives=(90,))),
                                   ("stats", ActivityStats()), ("purchases", PurchaseHistory())])),
        ("scale", MaxAbsScaler()),
        ("model", MultiTargetModel(
            purchase=classifier(),
            churn=classifier(),
            clv=SelectedRegressor([
                *_linear_clv(random_state),
                ("poisson_boosting_small", SelectedBoostingRegressor(50, loss="poisson", max_iter=100,
                                                                     random_state=random_state)),
            ], grids=LINEAR_CLV_GRIDS, max_fit_rows=CHOICE_ROWS, random_state=random_state))),
    ])


def elite_pipeline(random_state: int = 0, k_best: int = 200) -> SimplerUnlessBeaten:
    """Elite tier: per target, Elite's own pipeline (:func:`elite_own_pipeline`), or for CLV its mean with
    Fast's, where it beats Fast's pipeline beyond noise on the choosing rows, else Fast's (see
    :class:`SimplerUnlessBeaten`): Elite is never knowingly worse than Fast."""
    return SimplerUnlessBeaten(fast_pipeline(random_state), elite_own_pipeline(random_state, k_best),
                               random_state=random_state)


def elite_own_pipeline(random_state: int = 0, k_best: int = 200) -> Pipeline:
    """Elite's own pipeline: Fast's concept TF-IDF, recency-weighted concepts, co-occurrence, diversity, activity,
    purchase history and the customer-base model's predictions (BG/NBD x Gamma-Gamma); per target, boosting, a linear
    model and their soft vote (classifiers) or five CLV families (Fast's linear ones among them),
    chosen on time, the linear models' penalties too."""
    def classifier():
        return SelectedClassifier([("boosting", SelectedBoostingClassifier(k_best, random_state=random_state)),
                                   ("logistic", LogisticRegression(C=0.3, max_iter=500))],
                                  grids={"logistic": C_GRID}, blend=True, calibrate=True, fallback="logistic",
                                  max_fit_rows=CHOICE_ROWS, random_state=random_state)
    return Pipeline([
        ("features", FeatureUnion([
            ("tfidf", ConceptTfidf()),      # Fast's concept block: Elite's linear candidates see all Fast sees
            ("recency", RecencyConcepts(half_lives=(30, 120, None))), ("stats", ActivityStats()),
            ("diversity", ConceptDiversity()), ("pairs", CoOccurrence()), ("purchases", PurchaseHistory()),
            ("customer_base", CustomerBase(random_state=random_state)),
        ])),
        ("scale", MaxAbsScaler()),
        ("model", MultiTargetModel(
            purchase=classifier(),
            churn=classifier(),
            clv=SelectedRegressor([
                # the value is zero in most windows and skewed when positive: P(any) x E[value | any],
                # P from the purchase model (chosen and calibrated for that target), not a second copy of it
                ("two_part_boosting", TwoPartRegressor("given", RecalibratedRegressor(
                    SelectedBoostingRegressor(k_best, loss="gamma", random_state=random_state),
                    random_state=random_state))),
                ("poisson_boosting", SelectedBoostingRegressor(k_best, loss="poisson", random_state=random_state)),
                *_linear_clv(random_state),
            ], grids=LINEAR_CLV_GRIDS, blend=True, fallback="poisson_glm", max_fit_rows=CHOICE_ROWS, random_state=random_state))),
    ])


def set_selection_window(pipeline, valid_days: int, embargo_days: int):
    """Have each target's choice among candidates made on its newest ``valid_days`` of training rows,
    fitted on rows ``embargo_days`` older (the holdout's own split, inside the training rows)."""
    for est in pipeline.get_params().values():
        if isinstance(est, SelectedEstimator):
            est.set_params(valid_days=valid_days, embargo_days=embargo_days)
    return pipeline


def set_horizon(pipeline, horizon_days: int):
    """Have the feature blocks that predict a window (the customer-base block) predict ``horizon_days``."""
    keys = [k for k in pipeline.get_params() if "features__" in k and k.endswith("__horizon_days")]
    return pipeline.set_params(**dict.fromkeys(keys, horizon_days))


def make_pipeline_for(tier: str, random_state: int = 0):
    """The unfitted pipeline of ``tier`` (``fast`` or ``elite``)."""
    if tier == "fast":
        return fast_pipeline(random_state)
    if tier == "elite":
        return elite_pipeline(random_state)
    raise ConfigError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}.")
