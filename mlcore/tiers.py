"""The Fast and Elite tiers: whole scikit-learn pipelines (features included), three targets each."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone, is_classifier
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor, VotingClassifier
from sklearn.feature_selection import SelectKBest, f_classif, f_regression
from sklearn.linear_model import LogisticRegression, PoissonRegressor
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import MaxAbsScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted

from mlcore.exceptions import ConfigError
from mlcore.features import ActivityStats, CoOccurrence, ConceptDiversity, ConceptTfidf, RecencyConcepts
from mlcore.forest import CompiledForest

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
    """

    def __init__(self, purchase, churn, clv, clv_given_purchase: bool = False):
        self.purchase = purchase
        self.churn = churn
        self.clv = clv
        self.clv_given_purchase = clv_given_purchase

    def fit(self, X, y, sample_weight=None):
        Y = np.asarray(y, dtype=float)
        if Y.ndim != 2 or Y.shape[1] != 3:
            raise ValueError(f"y must have the 3 columns {TARGETS}, got shape {Y.shape}.")

        def weights(rows=slice(None)):
            return {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight)[rows]}
        self.purchase_ = clone(self.purchase).fit(X, Y[:, 0].astype(int), **weights())
        self.churn_ = clone(self.churn).fit(X, Y[:, 1].astype(int), **weights())
        if self.clv_given_purchase:
            bought = np.flatnonzero((Y[:, 0] == 1) & (Y[:, 2] > 0))
            self.clv_ = clone(self.clv).fit(X[bought], Y[bought, 2], **weights(bought))
        else:
            self.clv_ = clone(self.clv).fit(X, Y[:, 2], **weights())
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "clv_")
        purchase = self.purchase_.predict_proba(X)[:, 1]
        clv = np.clip(self.clv_.predict(X), 0.0, None)
        if self.clv_given_purchase:
            clv = purchase * clv
        return np.column_stack([purchase, self.churn_.predict_proba(X)[:, 1], clv])


def to_dense(X):
    """Dense float32 copy of a (possibly sparse) matrix, for estimators that need dense input."""
    return X.astype(np.float32).toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float32)


_HGB = dict(learning_rate=0.08, max_iter=250, max_leaf_nodes=15, min_samples_leaf=80, l2_regularization=1.0,
            early_stopping=True, validation_fraction=0.1, n_iter_no_change=15)


class _SelectedBoosting(BaseEstimator):
    """Gradient boosting on the ``k_best`` most informative columns (boosting cost grows with columns).

    The fitted trees are also compiled (:class:`~mlcore.forest.CompiledForest`, the same outputs to
    float rounding, several times faster than scikit-learn's predictor); every prediction, the
    validation included, goes through them. ``model_`` stays the scikit-learn estimator.
    """

    def __init__(self, k_best: int = 200, loss: str | None = None, random_state: int = 0):
        self.k_best = k_best
        self.loss = loss
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        classify = is_classifier(self)
        score = f_classif if classify else f_regression
        self.selector_ = SelectKBest(score, k=min(self.k_best, X.shape[1])).fit(X, y)
        kwargs = {} if self.loss is None else {"loss": self.loss}
        model = (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
            **_HGB, **kwargs, random_state=self.random_state)
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


def fast_pipeline(random_state: int = 0) -> Pipeline:
    """Fast tier: concept TF-IDF + count statistics, one linear model per target."""
    return Pipeline([
        ("features", FeatureUnion([("tfidf", ConceptTfidf()), ("stats", ActivityStats())])),
        ("scale", MaxAbsScaler()),
        ("model", MultiTargetModel(
            purchase=LogisticRegression(C=1.0, max_iter=500),
            churn=LogisticRegression(C=1.0, max_iter=500),
            # The target is scaled to unit variance so the penalty means the same at any currency scale;
            # alpha=0.01 measured best of 1e-4..1e-1 on 2k- and 50k-client worlds (R2 0.13 and 0.19).
            clv=TransformedTargetRegressor(PoissonRegressor(alpha=0.01, max_iter=1000),
                                           transformer=StandardScaler(with_mean=False)))),
    ])


def elite_pipeline(random_state: int = 0, k_best: int = 200) -> Pipeline:
    """Elite tier: recency-weighted concepts, co-occurrence, diversity and activity; soft-voting ensembles."""
    def classifier():
        return VotingClassifier([("hgb", SelectedBoostingClassifier(k_best, random_state=random_state)),
                                 ("logit", LogisticRegression(C=0.5, max_iter=500))], voting="soft")
    return Pipeline([
        ("features", FeatureUnion([
            ("recency", RecencyConcepts(half_lives=(30, 120, None))), ("stats", ActivityStats()),
            ("diversity", ConceptDiversity()), ("pairs", CoOccurrence()),
        ])),
        ("scale", MaxAbsScaler()),
        ("model", MultiTargetModel(
            purchase=classifier(),
            churn=classifier(),
            # A Gamma GLM beside it extrapolated to absurd values (R2 -4 on the holdout): boosting alone.
            clv=SelectedBoostingRegressor(k_best, loss="gamma", random_state=random_state),
            clv_given_purchase=True)),
    ])


def make_pipeline_for(tier: str, random_state: int = 0) -> Pipeline:
    """The unfitted pipeline of ``tier`` (``fast`` or ``elite``)."""
    if tier == "fast":
        return fast_pipeline(random_state)
    if tier == "elite":
        return elite_pipeline(random_state)
    raise ConfigError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}.")
