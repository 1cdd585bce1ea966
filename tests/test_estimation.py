"""Label-free estimation and the metrics behind the drift check, against their definitions."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlcore.estimation import estimate, estimate_auc, expected_auc, reference
from mlcore.evaluation import calibration, stratified_auc


@pytest.fixture(scope="module")
def calibrated():
    rng = np.random.default_rng(3)
    p = rng.beta(2, 5, 5000)
    return p, rng


def test_expected_auc_is_the_mean_auc_of_outcomes_drawn_from_calibrated_probabilities(calibrated):
    p, rng = calibrated
    realized = [roc_auc_score(rng.random(len(p)) < p, p) for _ in range(200)]
    assert expected_auc(p) == pytest.approx(np.mean(realized), abs=0.003)


def test_the_sampling_band_covers_the_realized_auc_about_95_percent_of_the_time(calibrated):
    p, rng = calibrated
    band = estimate_auc(p, n_sim=200, random_state=1)
    realized = np.array([roc_auc_score(rng.random(len(p)) < p, p) for _ in range(300)])
    covered = np.mean((realized >= band["lo"]) & (realized <= band["hi"]))
    assert 0.88 <= covered <= 0.99


def test_less_separable_scores_have_a_lower_estimate(calibrated):
    p, _ = calibrated
    flatter = 0.5 * p + 0.5 * p.mean()      # same ranking, half the spread: outcomes drawn from it separate less
    assert expected_auc(flatter) < expected_auc(p) - 0.05
    assert expected_auc(np.full(100, 0.3)) == pytest.approx(0.5)
    mixed = np.r_[p[:2500], np.full(2500, p.mean())]  # half the clients now carry no signal
    assert expected_auc(mixed) < expected_auc(p) - 0.05


def test_an_estimate_is_unreliable_without_or_with_poor_calibration(calibrated):
    p, _ = calibrated
    good = {"purchase": {"auc": {"value": 0.7}, "calibration": {"ece": 0.01, "ece_noise": 0.03,
                                                                   "estimated_auc": 0.69}}}
    poor = {"purchase": {"auc": {"value": 0.7}, "calibration": {"ece": 0.12, "ece_noise": 0.03,
                                                                   "estimated_auc": 0.69}}}
    noisy = {"purchase": {"auc": {"value": 0.7}, "calibration": {"ece": 0.08, "ece_noise": 0.09,
                                                                    "estimated_auc": 0.69}}}
    one = np.ones(len(p), int)
    assert estimate({"purchase": p}, {1: good}, one, 0.05)["purchase"]["reliable"]
    assert not estimate({"purchase": p}, {1: poor}, one, 0.05)["purchase"]["reliable"]
    assert estimate({"purchase": p}, {1: noisy}, one, 0.05)["purchase"]["reliable"]   # within what sampling explains
    assert not estimate({"purchase": p}, {1: {"purchase": {"auc": {"value": 0.7}}}}, one, 0.05)["purchase"]["reliable"]
    assert reference({"purchase": {"auc": {"value": 0.7}}}, "purchase")["auc"] == 0.7


def test_scores_of_several_versions_are_held_to_their_share_weighted_reference(calibrated):
    p, _ = calibrated
    versions = np.r_[np.full(1000, 3), np.full(4000, 4)]
    metrics = {v: {"purchase": {"auc": {"value": a}, "calibration": {"ece": 0.01, "ece_noise": 0.03,
                                                                     "estimated_auc": a}}}
               for v, a in ((3, 0.80), (4, 0.70))}
    out = estimate({"purchase": p}, metrics, versions, 0.05)["purchase"]
    assert out["reference"] == pytest.approx(0.2 * 0.80 + 0.8 * 0.70) and out["reliable"]


def test_ece_detects_miscalibration_beyond_its_sampling_floor(calibrated):
    p, rng = calibrated
    y = rng.random(len(p)) < p
    fair = calibration(y, p)
    skewed = calibration(y, np.clip(p * 1.6, 0, 1))
    assert fair["ece"] <= fair["ece_noise"] and skewed["ece"] > skewed["ece_noise"]
    assert sum(n for *_, n in fair["bins"]) == len(p)


def test_stratified_auc_is_the_share_weighted_auc_within_groups(calibrated):
    p, rng = calibrated
    y = (rng.random(len(p)) < p).astype(float)
    g = rng.integers(1, 4, len(p))
    out = stratified_auc(y, p, g, n_boot=100)
    expected = sum(np.mean(g == k) * roc_auc_score(y[g == k], p[g == k]) for k in (1, 2, 3))
    assert out["value"] == pytest.approx(expected, abs=1e-6)
    assert out["lo"] < out["value"] < out["hi"]
    one = stratified_auc(y, p, np.zeros(len(p), int), n_boot=10)
    assert one["value"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)


def test_a_group_without_both_classes_is_left_out_of_the_stratified_auc(calibrated):
    p, rng = calibrated
    y = (rng.random(len(p)) < p).astype(float)
    g = np.ones(len(p), int)
    g[:50], y[:50] = 2, 0.0
    out = stratified_auc(y, p, g, n_boot=10)
    assert out["groups"]["2"]["auc"] is None and out["n"] == len(p) - 50
    assert out["value"] == pytest.approx(roc_auc_score(y[50:], p[50:]), abs=1e-6)
