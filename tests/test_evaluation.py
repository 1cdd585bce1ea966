"""The batch forms of the bootstrap give scikit-learn's numbers on every resample."""
import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, mean_absolute_error, r2_score, roc_auc_score

from mlcore.evaluation import CLASSIFIER_METRICS, REGRESSOR_METRICS, bootstrap, evaluate

SKLEARN = {"auc": lambda y, p: roc_auc_score(y, p) if 0 < y.sum() < len(y) else np.nan,
           "accuracy": lambda y, p: np.mean((p >= 0.5) == (y == 1)), "brier": brier_score_loss,
           "r2": r2_score, "rmse": lambda y, p: np.sqrt(np.mean((y - p) ** 2)), "mae": mean_absolute_error}


def _resamples(rng, n_boot=40, m=300):
    y = (rng.random((n_boot, m)) < 0.3).astype(float)
    p = np.round(rng.random((n_boot, m)), 2)            # rounded: many tied scores
    y[0] = 0.0                                          # a resample without positives: AUC undefined
    return y, p


@pytest.mark.parametrize("name", sorted(CLASSIFIER_METRICS))
def test_classifier_batch_forms_equal_scikit_learn(name):
    y, p = _resamples(np.random.default_rng(1))
    np.testing.assert_allclose(CLASSIFIER_METRICS[name](y, p), [SKLEARN[name](a, b) for a, b in zip(y, p)],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(REGRESSOR_METRICS))
def test_regressor_batch_forms_equal_scikit_learn(name):
    rng = np.random.default_rng(2)
    y = rng.gamma(2.0, 100.0, (40, 300)) * (rng.random((40, 300)) < 0.4)
    p = y * rng.normal(1.0, 0.5, y.shape).clip(0) + rng.gamma(1.0, 20.0, y.shape)
    np.testing.assert_allclose(REGRESSOR_METRICS[name](y, p), [SKLEARN[name](a, b) for a, b in zip(y, p)],
                               rtol=1e-10)


def test_interval_brackets_the_value_and_narrows_with_more_rows():
    rng = np.random.default_rng(3)

    def width(n):
        y = (rng.random(n) < 0.3).astype(float)
        p = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.2, n), 0, 1)
        r = bootstrap(CLASSIFIER_METRICS, y, p, max_resample=2_000)["auc"]
        assert r["lo"] < r["value"] < r["hi"]
        return r["hi"] - r["lo"]
    assert width(40_000) < width(4_000) / 2           # m-out-of-n: the interval still shrinks like 1/sqrt(n)


def test_evaluate_reports_every_metric_beside_its_baseline():
    rng = np.random.default_rng(4)
    Y = np.column_stack([rng.random(2000) < 0.3, rng.random(2000) < 0.2, rng.gamma(2.0, 50.0, 2000)]).astype(float)
    P = np.column_stack([rng.random(2000), rng.random(2000), rng.gamma(2.0, 50.0, 2000)])
    out = evaluate(Y, P, n_boot=50)
    assert set(out["purchase"]) >= {"auc", "accuracy", "brier", "baseline"} and out["purchase"]["baseline"]["auc"] == 0.5
    assert set(out["clv"]) >= {"r2", "rmse", "mae", "baseline"}
    assert abs(out["purchase"]["auc"]["value"] - 0.5) < 0.05          # random scores: AUC near 0.5
    assert out["purchase"]["auc"]["value"] == pytest.approx(roc_auc_score(Y[:, 0], P[:, 0]), abs=1e-6)
    assert out["clv"]["r2"]["value"] == pytest.approx(r2_score(Y[:, 2], P[:, 2]), abs=1e-6)
