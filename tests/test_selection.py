"""Model choice per target by a time-ordered validation inside the training rows; scikit-learn tooling."""
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import TimeSeriesSplit, cross_val_score
from sklearn.pipeline import make_pipeline

from mlcore.evaluation import calibration
from mlcore.features import CoOccurrence, ConceptTfidf, RecencyConcepts, build_history
from mlcore.selection import (GuardedRegressor, RecalibratedRegressor, SelectedClassifier, SelectedRegressor,
                              TwoPartRegressor, selection_table, time_order_split)
from mlcore.tiers import SelectedBoostingClassifier, make_pipeline_for


def _days(n, start="2024-01-01", span=400):
    return pd.Timestamp(start) + pd.to_timedelta(np.sort(np.random.default_rng(1).integers(0, span, n)), unit="D")


def test_the_split_chooses_on_the_newest_days_and_fits_on_rows_an_embargo_older():
    dates = _days(1000)
    fit, choose = time_order_split(len(dates), dates, valid_days=60, embargo_days=90)
    last = dates.max()
    assert (dates[choose] > last - pd.Timedelta(days=60)).all()
    assert (dates[fit] <= last - pd.Timedelta(days=150)).all()
    assert len(set(fit) | set(choose)) + ((dates > last - pd.Timedelta(days=150)) & (dates <= last - pd.Timedelta(days=60))).sum() == 1000
    assert (np.diff(dates[choose].to_numpy()) >= np.timedelta64(0)).all()      # in date order
    # without dates: the rows are taken to be in time order
    fit, choose = time_order_split(100, valid_fraction=0.2)
    assert fit.tolist() == list(range(80)) and choose.tolist() == list(range(80, 100))


def test_the_informative_candidate_is_chosen_whatever_its_place_and_every_score_is_recorded():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    y = (rng.random(3000) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(int)
    dates = _days(3000)
    for order in ([0, 1], [1, 0]):
        cands = [("prior", DummyClassifier(strategy="prior")), ("logistic", LogisticRegression())]
        clf = SelectedClassifier([cands[i] for i in order]).fit(X, y, dates=dates)
        s = clf.selection_
        assert s["chosen"] == "logistic" and s["scoring"] == "log_loss"
        for name in ("prior", "logistic"):
            score = s["candidates"][name]["log_loss"]
            assert score["lo"] <= score["value"] <= score["hi"]
        assert s["candidates"]["prior"]["log_loss"]["value"] == pytest.approx(s["baseline"]["log_loss"], abs=0.01)
        # the artifact is the chosen family refitted on every row
        assert isinstance(clf.estimators_[0], LogisticRegression) and clf.estimators_[0].n_features_in_ == 4
    table = selection_table({"purchase": {"selection": s}})
    assert set(table["candidate"]) == {"logistic*", "prior"}


def test_the_blend_is_a_candidate_and_a_failing_candidate_is_left_out():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 3))
    y = np.abs(X[:, 0]) * 100 + rng.normal(0, 20, 3000).clip(0)
    reg = SelectedRegressor([("linear", LinearRegression()), ("boosting", HistGradientBoostingRegressor(max_iter=50)),
                             ("two_part", TwoPartRegressor(LogisticRegression(), LinearRegression()))],
                            blend=True).fit(X, y, dates=_days(3000))
    s = reg.selection_
    assert "two_part" in s["failed"] and "y > 0" in s["failed"]["two_part"]     # every y is positive
    assert set(s["candidates"]) == {"linear", "boosting", "blend"}
    assert s["chosen"] in ("boosting", "blend")                                # |x| is not linear
    assert s["candidates"]["boosting"]["r2"]["value"] > s["candidates"]["linear"]["r2"]["value"] + 0.3


def test_the_blend_pairs_candidates_that_err_differently_not_the_two_best():
    rng = np.random.default_rng(4)
    X = rng.uniform(1, 2, size=(3000, 6))
    y = X[:, 0] * 10 + X[:, 1] * 8 + rng.normal(0, 0.3, 3000)
    cols = lambda c: make_pipeline(ColumnTransformer([("x", "passthrough", c)]), LinearRegression())  # noqa: E731
    # a and a_noisy see x0 (the two best alone, making the same errors); b sees x1 only
    reg = SelectedRegressor([("a", cols([0])), ("a_noisy", cols([0, 2, 3, 4, 5])), ("b", cols([1]))],
                            blend=True).fit(X, y, dates=_days(3000))
    s = reg.selection_
    loss = {name: c["squared_error"]["value"] for name, c in s["candidates"].items()}
    assert max(loss["a"], loss["a_noisy"]) < loss["b"]
    assert sorted(s["blend_of"]) == ["a", "b"] and s["chosen"] == "blend" and s["blend_kept"]
    assert loss["blend"] < min(loss["a"], loss["a_noisy"], loss["b"])


def test_the_blend_averages_the_two_best_candidates_and_serves_them():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 3))
    y = np.abs(X[:, 0]) * 100 + X[:, 1] * 30 + rng.normal(0, 20, 3000)
    reg = SelectedRegressor([("mean", DummyRegressor()), ("linear", LinearRegression()),
                             ("boosting", HistGradientBoostingRegressor(max_iter=50))],
                            blend=True).fit(X, y, dates=_days(3000))
    s = reg.selection_
    assert s["blend_of"] == ["boosting", "linear"]                             # by squared error on the newer rows
    loss = {name: c["squared_error"]["value"] for name, c in s["candidates"].items()}
    assert loss["blend"] <= (loss["boosting"] + loss["linear"]) / 2 < loss["mean"]   # the two, not the prior


def test_a_chosen_blend_serves_its_two_members_refitted():
    rng = np.random.default_rng(2)
    X = rng.uniform(1, 2, size=(3000, 3))
    y = X[:, 0] + X[:, 1] + rng.normal(0, 0.05, 3000)         # each member sees half: their mean is better
    half = lambda col: make_pipeline(ColumnTransformer([("x", "passthrough", [col])]), LinearRegression())  # noqa: E731
    reg = SelectedRegressor([("mean", DummyRegressor()), ("x0", half(0)), ("x1", half(1))],
                            blend=True).fit(X, y, dates=_days(3000))
    assert reg.selection_["chosen"] == "blend" and sorted(reg.selection_["blend_of"]) == ["x0", "x1"]
    assert reg.selection_["blend_kept"] and reg.selection_["blend_gain"]["lo"] > 0
    assert len(reg.estimators_) == 2 and reg.selection_["refit"]
    spent = reg.selection_["fit_seconds"]                                # where a fit's time went, per step
    assert set(spent["choice"]) == {"mean", "x0", "x1"} and spent["all_rows"] >= 0 and "older_rows" not in spent
    np.testing.assert_allclose(reg.predict(X), (X[:, 0] + X[:, 1]) / 2 + 1.5, atol=0.05)  # each member adds the mean of the other half


def test_a_tie_between_the_blends_members_serves_their_mean():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 4))
    y = X[:, 0] * 10 + rng.normal(0, 1, 3000)
    cols = lambda c: make_pipeline(ColumnTransformer([("x", "passthrough", c)]), LinearRegression())  # noqa: E731
    reg = SelectedRegressor([("mean", DummyRegressor()), ("a", cols([0])), ("b", cols([0, 1, 2, 3]))],
                            blend=True).fit(X, y, dates=_days(3000))   # b: a plus three columns of noise
    s = reg.selection_
    loss = {name: c["squared_error"]["value"] for name, c in s["candidates"].items()}
    assert loss["blend"] < min(loss["a"], loss["b"])                  # the lowest, by a hair
    assert s["blend_gain"]["lo"] < 0 < s["blend_gain"]["value"]       # not beyond noise ...
    d = s["members_difference"]
    assert d["lo"] <= 0 <= d["hi"]                                    # ... but a and b cannot be told apart
    assert s["chosen"] == "blend" and s["blend_kept"] and s["blend_kept_for"] == "tie"
    assert len(reg.estimators_) == 2 and "tied" in s["why"]


class _Column(RegressorMixin, BaseEstimator):
    """Predicts column ``col`` of X as it is (a model whose errors the test sets)."""

    def __init__(self, col=0):
        self.col = col

    def fit(self, X, y, sample_weight=None):
        return self

    def predict(self, X):
        return np.asarray(X)[:, self.col]


def test_a_blend_ahead_only_by_noise_gives_way_to_its_clearly_better_member():
    rng = np.random.default_rng(0)
    n = 3000
    y = 100 + rng.normal(0, 10, n)
    e = rng.normal(0, 1, n)
    # b errs more than a (1.29 against 1.0 in squared error); their mean errs 0.95: a little better than a
    X = np.column_stack([y + e, y + 0.75 * e + rng.normal(0, 0.85, n)])
    reg = SelectedRegressor([("a", _Column(0)), ("b", _Column(1))], blend=True).fit(X, y, dates=_days(n))
    s = reg.selection_
    loss = {name: c["squared_error"]["value"] for name, c in s["candidates"].items()}
    assert loss["blend"] < loss["a"] < loss["b"]
    assert s["blend_gain"]["lo"] < 0 < s["blend_gain"]["value"]
    assert s["members_difference"]["lo"] > 0                          # b is worse beyond noise
    assert s["chosen"] == "a" and not s["blend_kept"] and s["blend_kept_for"] is None
    assert len(reg.estimators_) == 1 and "within noise, so a serves" in s["why"]


class _Overconfident(ClassifierMixin, BaseEstimator):
    """Logistic regression whose probabilities are pushed towards 0 and 1 (badly calibrated)."""

    def fit(self, X, y, sample_weight=None):
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        z = self.model_.decision_function(X) * 4
        p = 1 / (1 + np.exp(-z))
        return np.column_stack([1 - p, p])


def test_a_two_part_value_takes_its_probability_from_the_purchase_model_as_fitted_for_the_choice():
    rng = np.random.default_rng(0)
    X, dates = rng.normal(size=(4000, 3)), _days(4000)
    bought = (rng.random(4000) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(int)
    value = bought * np.exp(4 + 0.5 * X[:, 1])
    purchase = SelectedClassifier([("logistic", LogisticRegression())], grids={"logistic": {"C": [0.01, 1.0]}}
                                  ).fit(X, bought, dates=dates)
    seen = purchase.choice_model_                  # the chosen setting as fitted on the older rows only
    fit, choose = time_order_split(len(X), dates)
    assert seen.split == (len(fit), len(choose))
    assert seen.estimators[0].coef_.tolist() != purchase.estimators_[0].coef_.tolist()
    cands = [("two_part", TwoPartRegressor("given", LinearRegression())), ("linear", LinearRegression())]
    reg = SelectedRegressor(cands).fit(X, value, dates=dates, given=purchase)
    s = reg.selection_
    assert s["chosen"] == "two_part" and reg.estimators_[0].classifier_ is purchase      # shared, not refitted
    assert not hasattr(reg, "choice_model_")        # only a classifier lends its choice's models
    # scored on the choosing rows with the probability the older rows' model gives them (no row it learnt from)
    pos = fit[value[fit] > 0]
    p = np.clip(seen.predict_proba(X[choose])[:, 1] * LinearRegression().fit(X[pos], value[pos]).predict(X[choose]), 0, None)
    assert s["candidates"]["two_part"]["squared_error"]["value"] == pytest.approx(((value[choose] - p) ** 2).mean(), rel=1e-4)
    served = purchase.predict_proba(X)[:, 1] * LinearRegression().fit(X[value > 0], value[value > 0]).predict(X)
    np.testing.assert_allclose(reg.predict(X), np.clip(served, 0, None), rtol=1e-9)
    # a purchase model chosen on another window cannot lend its choice: the candidate is left out, saying why
    other = clone(purchase).set_params(valid_days=30).fit(X, bought, dates=dates)
    s = SelectedRegressor(cands).fit(X, value, dates=dates, given=other).selection_
    assert s["chosen"] == "linear" and "made no choice on these rows" in s["failed"]["two_part"]
    with pytest.raises(ValueError, match="needs fit's given"):
        TwoPartRegressor("given", LinearRegression()).fit(X, value)


def test_a_miscalibrated_classifier_is_recalibrated_and_its_calibration_error_falls_on_new_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12000, 3))
    y = (rng.random(12000) < 1 / (1 + np.exp(-X[:, 0]))).astype(int)
    dates = _days(8000)
    raw = SelectedClassifier([("overconfident", _Overconfident())]).fit(X[:8000], y[:8000], dates=dates)
    cal = SelectedClassifier([("overconfident", _Overconfident())], calibrate=True).fit(X[:8000], y[:8000], dates=dates)
    assert raw.calibrator_ is None and cal.selection_["calibration"]["method"] in ("isotonic", "sigmoid")
    ece_raw = calibration(y[8000:], raw.predict_proba(X[8000:])[:, 1])["ece"]
    ece_cal = calibration(y[8000:], cal.predict_proba(X[8000:])[:, 1])["ece"]
    assert ece_cal < ece_raw / 2
    # the map is fitted on out-of-sample scores (of the model refitted on every row older than the
    # choosing rows); the model refitted on all rows serves with it
    s = cal.selection_
    assert s["refit"] is True and s["calibration"]["on_embargoed_models"]["method"] in ("isotonic", "sigmoid")
    assert set(s["fit_seconds"]) == {"choice", "older_rows", "all_rows"}
    fit, choose = time_order_split(8000, dates)
    assert s["n_fit"] == len(fit) and s["calibration"]["fitted_on"] == f"{8000 - len(choose):,} rows older than the choosing rows"
    np.testing.assert_allclose(cal.estimators_[0].model_.coef_, raw.estimators_[0].model_.coef_)
    # a calibrated logistic regression keeps its scores
    good = SelectedClassifier([("logistic", LogisticRegression())], calibrate=True).fit(X[:8000], y[:8000], dates=dates)
    assert good.selection_["calibration"]["method"] is None


def test_a_calibrated_classifier_serves_a_model_that_learnt_from_the_newest_rows():
    # the relation reverses on day 150 of 400: the rows the choice is fitted on (older than day 250)
    # are mostly before it, every row older than the choosing ones and all rows mostly after it
    rng = np.random.default_rng(0)
    n = 10000
    days = np.sort(rng.integers(0, 500, n))
    dates = pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D")
    X = rng.normal(size=(n, 3))
    sign = np.where(days < 150, 1.0, -1.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * sign * X[:, 0]))).astype(int)
    train = days < 400                                     # the last 100 days are the future
    clf = SelectedClassifier([("overconfident", _Overconfident())], calibrate=True).fit(X[train], y[train],
                                                                                      dates=dates[train])
    assert clf.selection_["calibration"]["method"] in ("isotonic", "sigmoid")
    future = ~train
    embargoed = clf.choice_model_.predict_proba(X[future])[:, 1]    # the model the choice was made with
    assert roc_auc_score(y[future], embargoed) < 0.4                   # it learnt the old relation
    assert roc_auc_score(y[future], clf.predict_proba(X[future])[:, 1]) > 0.7


class _Seen(_Overconfident):
    """Records the first column (the row's day) of the rows it was fitted on."""

    def fit(self, X, y, sample_weight=None):
        self.days_ = np.sort(np.round(X[:, 0] * 1000))
        return super().fit(X, y)


def test_with_max_fit_rows_the_choice_and_the_maps_refit_learn_from_the_newest_older_rows_only():
    rng = np.random.default_rng(0)
    n = 8000
    day = rng.permutation(np.repeat(np.arange(400), n // 400))            # rows in no date order
    dates = pd.Timestamp("2024-01-01") + pd.to_timedelta(day, unit="D")
    X = np.column_stack([day / 1000, rng.normal(size=(n, 2))])
    y = (rng.random(n) < 1 / (1 + np.exp(-X[:, 1]))).astype(int)
    clf = SelectedClassifier([("seen", _Seen())], calibrate=True,
                             max_fit_rows=1000).fit(X, y, dates=dates)
    s = clf.selection_
    fit, choose = time_order_split(n, dates)
    newest = np.sort(day[fit])[-1000:]
    assert s["n_fit"] == 1000 and s["n_fit_available"] == len(fit)
    assert f"fitted on the newest 1,000 of {len(fit):,} older ones" in s["why"]
    np.testing.assert_array_equal(clf.choice_model_.estimators[0].days_, newest)
    assert s["calibration"]["fitted_on"] == f"1,000 rows older than the choosing rows (the newest of {n - len(choose):,})"
    assert s["fit_seconds"].keys() == {"choice", "older_rows", "all_rows"}
    assert len(clf.estimators_[0].days_) == n                          # the artifact learnt from every row
    # a cap above the rows there are changes nothing
    same = SelectedClassifier([("seen", _Seen()), ("prior", DummyClassifier())], max_fit_rows=n).fit(X, y, dates=dates)
    assert "n_fit_available" not in same.selection_ and same.selection_["n_fit"] == len(fit)
    with pytest.raises(ValueError, match="max_fit_rows must be an integer >= 200 or None, got 10"):
        SelectedClassifier([("seen", _Seen())], max_fit_rows=10).fit(X, y, dates=dates)


def test_a_grid_chooses_the_penalty_on_the_newest_rows_and_the_artifact_is_refitted_with_it():
    rng = np.random.default_rng(0)
    # few rows, many noise columns: a weak penalty overfits, a strong one does not
    X = rng.normal(size=(1200, 300))
    y = (rng.random(1200) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(int)
    dates = _days(1200)
    clf = SelectedClassifier([("logistic", LogisticRegression(C=100.0, max_iter=2000))],
                             grids={"logistic": {"C": [100.0, 0.03]}}).fit(X, y, dates=dates)
    s = clf.selection_
    entry = s["candidates"]["logistic"]
    assert entry["params"] == {"C": 0.03} and clf.best_params_ == {"logistic": {"C": 0.03}}
    losses = {t["params"]["C"]: t["log_loss"] for t in entry["grid"]}
    assert losses[0.03] < losses[100.0] and entry["log_loss"]["value"] == pytest.approx(losses[0.03], abs=1e-6)
    assert clf.estimators_[0].C == 0.03 and s["refit"] is True
    row = selection_table({"purchase": {"selection": s}}).iloc[0]
    assert row["candidate"] == "logistic*" and row["setting"] == "C=0.03"
    # each setting is scored on the same newest rows; a candidate without a grid is fitted once
    both = SelectedClassifier([("prior", DummyClassifier()), ("logistic", LogisticRegression(max_iter=2000))],
                              grids={"logistic": {"C": [100.0, 0.03]}}).fit(X, y, dates=dates)
    assert "grid" not in both.selection_["candidates"]["prior"] and len(both.selection_["candidates"]["logistic"]["grid"]) == 2


@pytest.mark.parametrize("grids, message", [
    ({"boosting": {"C": [1.0]}}, "names 'boosting', which is not a candidate"),
    ({"logistic": {"no_such_param": [1.0]}}, r"grids\['logistic'\] is not a valid parameter grid"),
    ({"logistic": {"C": []}}, "need to be a non-empty sequence"),
    ({"logistic": {}}, "must try at least one setting"),
    (["C"], "must be a dict of candidate name"),
])
def test_a_grid_that_cannot_apply_is_refused_before_anything_is_fitted(grids, message):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=message):
        SelectedClassifier([("logistic", LogisticRegression())], grids=grids).fit(
            rng.normal(size=(300, 3)), rng.integers(0, 2, 300))


def test_too_few_rows_keep_the_default_and_say_why():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(150, 2)), rng.integers(0, 2, 150)
    clf = SelectedClassifier([("logistic", LogisticRegression()), ("prior", DummyClassifier())]).fit(X, y)
    assert clf.selection_["chosen"] == "logistic" and "kept the default" in clf.selection_["why"]
    assert "candidates" not in clf.selection_
    robust = SelectedClassifier([("prior", DummyClassifier()), ("logistic", LogisticRegression())],
                                fallback="logistic").fit(X, y)
    assert robust.selection_["chosen"] == robust.selection_["default"] == "logistic"


def test_the_guard_keeps_a_regressor_within_its_training_range():
    X = np.arange(100, dtype=float)[:, None]
    reg = GuardedRegressor(LinearRegression()).fit(X, 2 * X[:, 0])
    np.testing.assert_allclose(reg.predict(np.array([[1e6], [-1e6]])), [198.0, 0.0], atol=1e-9)
    assert TwoPartRegressor(LogisticRegression(), DummyRegressor()).fit(X, (X[:, 0] > 50) * 10.0).predict(X).max() <= 10


def test_the_recalibration_keeps_a_log_link_model_at_the_level_it_was_wrong_by():
    # a value log-linear in accumulating presence flags, capped: a log-link GLM overshoots where
    # clients have more flags than the training rows had; the map learns the cap from rows it did not fit
    from sklearn.linear_model import GammaRegressor

    rng = np.random.default_rng(0)
    def rows(n, rate):
        X = (rng.random((n, 30)) < rate).astype(float)
        return X, np.minimum(np.exp(5 + 0.25 * X.sum(axis=1)), 2000.0) * rng.gamma(4.0, 0.25, n)
    X, y = rows(3000, 0.2)
    Xn, yn = rows(2000, 0.45)                       # newer clients: twice the flags
    glm = GammaRegressor(alpha=1e-4, max_iter=1000)
    raw = clone(glm).fit(X, y)
    mapped = RecalibratedRegressor(glm).fit(X, y)
    mse = lambda p: float(np.mean((yn - p) ** 2))   # noqa: E731
    assert mse(mapped.predict(Xn)) < 0.5 * mse(raw.predict(Xn))
    assert mapped.predict(Xn).max() <= y.max()
    assert np.corrcoef(mapped.predict(X), raw.predict(X))[0, 1] > 0.9    # the ranking is the model's
    assert clone(mapped).get_params()["regressor__alpha"] == 1e-4
    with pytest.raises(ValueError, match="RecalibratedRegressor: cv must be an integer >= 2, got 1"):
        RecalibratedRegressor(glm, cv=1).fit(X, y)
    with pytest.raises(ValueError, match="at least 4 rows"):
        RecalibratedRegressor(glm).fit(X[:3], y[:3])
    # the map's top rests on a bin of rows, not on the one client who spent 10 million
    wild = y.copy()
    wild[np.argmax(raw.predict(X))] = 1e7
    assert RecalibratedRegressor(glm).fit(X, wild).predict(Xn).max() < 2.5e5     # one bin: 1e7 / 60 rows
    assert RecalibratedRegressor(glm, n_bins=3000).fit(X, wild).predict(Xn).max() > 2.5e5


def _world(n=600, seed=0):
    rng = np.random.default_rng(seed)
    notes = pd.DataFrame({"note_id": [f"n{i}" for i in range(3 * n)], "client_id": [f"c{i % n}" for i in range(3 * n)],
                          "date": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300, 3 * n), unit="D")})
    concepts = pd.DataFrame({"note_id": np.repeat(notes["note_id"], 2).to_numpy(),
                             "concept_id": rng.choice(["golf", "watches", "gift_birthday", "budget", "travel"], 6 * n),
                             "confidence": rng.uniform(0.5, 1, 6 * n)})
    samples = pd.DataFrame({"client_id": [f"c{i}" for i in range(n)],
                            "as_of": pd.Timestamp("2025-06-01") + pd.to_timedelta(np.arange(n) % 120, unit="D")})
    h = build_history(samples, notes, concepts)
    golf = h.concepts.groupby("row")["concept_id"].apply(lambda c: (c == "golf").sum()).reindex(range(n), fill_value=0)
    p = 1 / (1 + np.exp(-(golf.to_numpy() - 1.2)))
    y = np.column_stack([rng.random(n) < p, rng.random(n) < 0.3, (rng.random(n) < p) * rng.gamma(2, 100, n)])
    y[:, 0] = np.maximum(y[:, 0], y[:, 2] > 0)
    return h, y.astype(float)


@pytest.mark.parametrize("tier", ["fast", "elite"])
def test_scikit_learn_tools_work_on_a_tier_pipeline(tier):
    h, y = _world()
    pipe = make_pipeline_for(tier)
    own = "" if tier == "fast" else "rich__"          # Elite: its own pipeline beside Fast's
    twin = clone(pipe)
    assert twin.get_params()[f"{own}model__purchase__calibrate"] is True
    blend = pipe.get_params()[f"{own}model__clv__blend"]
    twin.set_params(**{f"{own}model__purchase__calibrate": False, f"{own}model__clv__blend": not blend})
    assert twin.get_params()[f"{own}model__purchase__calibrate"] is False
    assert pipe.get_params()[f"{own}model__clv__blend"] is blend
    assert len(h[np.arange(10)]) == 10 and h[5:8].samples["client_id"].tolist() == ["c5", "c6", "c7"]
    scores = cross_val_score(pipe, h, y, cv=TimeSeriesSplit(n_splits=3))
    assert scores.shape == (3,) and np.isfinite(scores).all() and (scores > 0.3).all()
    fitted = pipe.fit(h, y, model__dates=h.samples["as_of"].to_numpy())
    models = [fitted[-1]] if tier == "fast" else [p[-1] for p in (fitted.simple_, fitted.rich_) if p is not None]
    # the choice's own models are not kept in the artifact
    assert models and not any(hasattr(est, "choice_model_") for m in models for est in (m.purchase_, m.churn_, m.clv_))


@pytest.mark.parametrize("estimator, message", [
    (ConceptTfidf(min_count=-3), "ConceptTfidf: min_count must be an integer >= 1, got -3"),
    (RecencyConcepts(half_lives=(30, -1)), "RecencyConcepts: each of half_lives must be a number"),
    (RecencyConcepts(half_lives=()), "half_lives must be a non-empty list"),
    (CoOccurrence(n_pairs=0), "CoOccurrence: n_pairs must be an integer >= 1, got 0"),
    (CoOccurrence(half_life=float("nan")), "CoOccurrence: half_life must be a number"),
])
def test_transformer_parameters_are_validated_with_clear_messages(estimator, message):
    h, _ = _world(50)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        estimator.fit(h)


@pytest.mark.parametrize("estimator, message", [
    (SelectedClassifier([("a", LogisticRegression())], valid_days=0), "valid_days must be an integer >= 1"),
    (SelectedClassifier([("a", LogisticRegression())], embargo_days=-1), "embargo_days must be an integer >= 0"),
    (SelectedClassifier([]), "candidates must be a non-empty list"),
    (SelectedClassifier([("a", LogisticRegression()), ("a", LogisticRegression())]), "must be distinct"),
    (SelectedClassifier([("a", LogisticRegression())], fallback="b"), "fallback must be one of the candidates"),
    (SelectedBoostingClassifier(k_best=0), "k_best must be an integer >= 1, got 0"),
    (SelectedBoostingClassifier(max_iter=True), "max_iter must be an integer >= 1, got True"),
])
def test_model_parameters_are_validated_with_clear_messages(estimator, message):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=message):
        estimator.fit(rng.normal(size=(300, 3)), rng.integers(0, 2, 300))


@pytest.mark.parametrize("case", ["many_values", "ties_nan_zero_weights", "few_values", "one_value", "mostly_zero_inf"])
def test_the_weighted_binning_patch_finds_scikit_learns_edges_bit_for_bit(case):
    """mlcore.compat: the bin edges in one sort are the edges scikit-learn finds, weighted or not."""
    from mlcore import compat
    rng = np.random.default_rng(3)
    x = {"many_values": rng.lognormal(size=3000),
         "ties_nan_zero_weights": np.round(rng.normal(size=3000), 2),
         "few_values": rng.integers(0, 40, 3000).astype(float),
         "one_value": np.ones(3000),
         "mostly_zero_inf": np.where(rng.random(3000) < 0.9, 0.0, rng.exponential(size=3000))}[case]
    if case == "mostly_zero_inf":
        x[:5] = np.inf
    w = np.where(rng.random(3000) < 0.2, 20.0, 1.0)
    if case == "ties_nan_zero_weights":
        x[rng.random(3000) < 0.1] = np.nan
        w[rng.random(3000) < 0.1] = 0.0
    for max_bins in (255, 16):
        expected = compat._ORIGINAL(x.copy(), max_bins, sample_weight=w.copy())
        got = compat.find_binning_thresholds(x.copy(), max_bins, sample_weight=w.copy())
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(compat.find_binning_thresholds(x.copy(), max_bins), compat._ORIGINAL(x.copy(), max_bins))


@pytest.mark.parametrize("weighted", [True, False])
def test_a_boosting_fit_is_unchanged_by_the_patch(weighted):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.ensemble._hist_gradient_boosting import binning

    from mlcore import compat
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4000, 6))
    y = (X[:, 0] + rng.normal(size=4000) > 0).astype(int)
    w = np.where(np.arange(4000) > 3000, 20.0, 1.0) if weighted else None
    X[::7, 2] = np.nan

    def fit():
        return HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y, sample_weight=w).predict_proba(X)
    assert compat.patch_binning() and binning._find_binning_thresholds is compat.find_binning_thresholds
    patched = fit()
    binning._find_binning_thresholds = compat._ORIGINAL
    try:
        original = fit()
    finally:
        compat.patch_binning()
    np.testing.assert_array_equal(patched, original)


def test_the_lognormal_value_part_restores_the_mean_its_log_scale_loses():
    # spend lognormal around a log-linear mean: exp of the mean log sits exp(-sigma^2 / 2) = 0.43 below
    # the mean; the map brings the level back and the ranking is the ridge's
    from mlcore.tiers import _two_part_lognormal, elite_own_pipeline, fast_pipeline

    rng = np.random.default_rng(0)
    beta = rng.normal(0, 0.3, 40)
    def rows(n):
        X = (rng.random((n, 40)) < 0.2).astype(float)
        mean = 1500 * np.exp(X @ beta)
        return X, mean, mean * rng.lognormal(-1.3 ** 2 / 2, 1.3, n)
    X, _, y = rows(4000)
    Xn, mean, _ = rows(4000)
    part = _two_part_lognormal().regressor.fit(X, y)
    raw, mapped = part.regressor_.predict(Xn), part.predict(Xn)
    assert 0.38 < raw.mean() / mean.mean() < 0.48
    assert 0.9 < mapped.mean() / mean.mean() < 1.1
    assert np.mean((mapped - mean) ** 2) < 0.2 * np.var(mean)
    for tier in (fast_pipeline(), elite_own_pipeline()):
        clv = tier[-1].clv
        assert "two_part_lognormal" in dict(clv.candidates)
        assert set(clv.grids["two_part_lognormal"]) <= set(dict(clv.candidates)["two_part_lognormal"].get_params())


def _leading(X, k):
    return X[:, :k]


def _columns_tier(k):
    """A tier on the first ``k`` columns of a matrix: logistic models and a ridge, penalties chosen on time."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import FunctionTransformer

    from mlcore.tiers import MultiTargetModel

    def clf():
        return SelectedClassifier([("logistic", LogisticRegression(max_iter=500))], grids={"logistic": {"C": [0.1, 1.0]}},
                                  valid_days=60, embargo_days=30)
    clv = SelectedRegressor([("ridge", Ridge())], grids={"ridge": {"alpha": [1.0, 100.0]}}, valid_days=60, embargo_days=30)
    return make_pipeline(FunctionTransformer(_leading, kw_args={"k": k}),
                         MultiTargetModel(purchase=clf(), churn=clf(), clv=clv))


def _columns_world(extra_drives_purchase: bool, n=6000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12))
    logit = 0.8 * X[:, 0] + 0.5 * X[:, 1] + (1.5 * X[:, 5] if extra_drives_purchase else 0.0)
    bought = rng.random(n) < 1 / (1 + np.exp(-logit))
    churned = rng.random(n) < 1 / (1 + np.exp(-(X[:, 2] - 0.5)))
    value = bought * np.clip(100 + 40 * X[:, 0] + rng.normal(0, 30, n), 1, None)
    return X, np.column_stack([bought, churned, value]).astype(float), _days(n).to_numpy()


def test_the_rich_pipeline_serves_a_target_only_where_it_beats_the_simple_one_beyond_noise():
    import pickle

    from mlcore.tiers import SimplerUnlessBeaten, selection_of
    # the rich tier sees 12 columns, the simple one 3; only in the second world does a column only
    # the rich one sees (x5) drive a target (purchase)
    X, y, dates = _columns_world(extra_drives_purchase=False)
    both = SimplerUnlessBeaten(_columns_tier(3), _columns_tier(12)).fit(X, y, multitargetmodel__dates=dates)
    assert both.served_ == {"purchase": "simple", "churn": "simple", "clv": "simple"}
    assert both.rich_ is None            # served nowhere: not kept
    alone = clone(_columns_tier(3)).fit(X, y, multitargetmodel__dates=dates)
    np.testing.assert_array_equal(both.predict(X), alone.predict(X))
    record = selection_of(both)["purchase"]
    assert record["chosen"] == "fast_tier" and {"logistic", "fast_tier"} <= set(record["candidates"])
    # probabilities are not averaged across the pipelines (the mean of calibrated ones is not calibrated)
    assert "mean_with_fast_tier" not in record["candidates"]
    assert "mean_with_fast_tier" in selection_of(both)["clv"]["candidates"]
    assert record["own_choice"] == "logistic" and "not beyond noise, so fast's serves" in record["why"]
    assert len(selection_table({t: {"selection": r} for t, r in selection_of(both).items()})) == 2 + 2 + 3

    X, y, dates = _columns_world(extra_drives_purchase=True)
    both = SimplerUnlessBeaten(_columns_tier(3), _columns_tier(12)).fit(X, y, multitargetmodel__dates=dates)
    assert both.served_["purchase"] == "rich" and both.served_["churn"] == "simple"
    gain = selection_of(both)["purchase"]["versus_simple"]["gain"]
    assert gain["lo"] > 0 and "beyond noise" in selection_of(both)["purchase"]["why"]
    alone = clone(_columns_tier(3)).fit(X, y, multitargetmodel__dates=dates)
    truth = y[:, 0][dates >= dates.max() - np.timedelta64(60, "D")]
    recent = dates >= dates.max() - np.timedelta64(60, "D")
    assert roc_auc_score(truth, both.predict(X[recent])[:, 0]) > roc_auc_score(truth, alone.predict(X[recent])[:, 0]) + 0.05
    np.testing.assert_array_equal(both.predict(X)[:, 1], alone.predict(X)[:, 1])
    # the choosing rows' scores are not part of the artifact
    again = pickle.loads(pickle.dumps(both))
    assert not hasattr(again.rich_[-1].purchase_, "choice_predictions_") and hasattr(both.rich_[-1].purchase_, "choice_predictions_")
    np.testing.assert_array_equal(again.predict(X), both.predict(X))
    assert both.get_params()["rich__multitargetmodel__purchase__grids"] == {"logistic": {"C": [0.1, 1.0]}}
    with pytest.raises(ValueError, match="names must be two distinct names"):
        SimplerUnlessBeaten(_columns_tier(3), _columns_tier(12), names=("a", "a")).fit(X, y)


def test_a_two_part_clv_reuses_the_purchase_probability_the_model_computed_once():
    from unittest import mock

    from sklearn.linear_model import Ridge

    from mlcore.tiers import MultiTargetModel

    X, y, dates = _columns_world(extra_drives_purchase=True)
    clf = lambda: SelectedClassifier([("logistic", LogisticRegression(max_iter=500))], valid_days=60, embargo_days=30)  # noqa: E731
    two_part = ("two_part", TwoPartRegressor("given", Ridge()))
    model = MultiTargetModel(purchase=clf(), churn=clf(),
                             clv=SelectedRegressor([two_part], valid_days=60, embargo_days=30)).fit(X, y, dates=dates)
    assert model.clv_.estimators_[0].classifier_ is model.purchase_
    calls = []
    real = SelectedClassifier.predict_proba
    with mock.patch.object(SelectedClassifier, "predict_proba", autospec=True,
                           side_effect=lambda self, X: calls.append(self) or real(self, X)):
        pred = model.predict(X)
    assert sum(c is model.purchase_ for c in calls) == 1
    np.testing.assert_array_equal(pred[:, 2], np.clip(model.clv_.predict(X), 0, None))   # the uncached path
