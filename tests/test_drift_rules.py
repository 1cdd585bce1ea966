"""The drift decision rules as plain functions: table-driven, no database."""
import datetime as dt

import numpy as np
import pytest

from mlcore import drift

D0 = dt.date(2025, 3, 1)


def replay_decisions(breaches, cooldown=14, delay=12):
    """Feed a daily sequence of breach flags through ``decide`` as the store would; returns (decision, action)."""
    history, out = [], []
    for i, breach in enumerate(breaches):
        day = D0 + dt.timedelta(days=i)
        decision, action, opens = drift.decide(history, breach, day, cooldown, delay)
        episode = i + 1 if opens else (drift.open_episode(history) if decision in ("drift", "recovered") else None)
        history.append({"check_date": day, "breach": breach, "decision": decision, "action": action,
                        "episode_id": episode})
        out.append((decision, action))
    return out


T, F, N = True, False, None


@pytest.mark.parametrize("breaches, expected", [
    ([F, F, F], ["ok", "ok", "ok"]),
    ([N, N], ["insufficient_data", "insufficient_data"]),
    ([T, F, F], ["breach", "ok", "ok"]),                             # one breach is not drift
    ([T, F, T], ["breach", "ok", "drift"]),                           # 2 of the last 3
    ([T, N, T], ["breach", "insufficient_data", "drift"]),            # too little data neither opens nor breaks
    ([T, T, T, F, T, F, F], ["breach", "drift", "drift", "drift", "drift", "drift", "recovered"]),
    ([T, T, N, F, F, T], ["breach", "drift", "insufficient_data", "drift", "recovered", "breach"]),
])
def test_decisions_open_and_close_episodes_by_the_anti_flapping_rule(breaches, expected):
    assert [d for d, _ in replay_decisions(breaches)] == expected


def replay_with_recovery(checks, cooldown=14, delay=12):
    """As :func:`replay_decisions`, for (breach, recovered) pairs."""
    history, out = [], []
    for i, (breach, recovered) in enumerate(checks):
        day = D0 + dt.timedelta(days=i)
        decision, action, opens = drift.decide(history, breach, day, cooldown, delay, recovered)
        episode = i + 1 if opens else (drift.open_episode(history) if decision in ("drift", "recovered") else None)
        history.append({"check_date": day, "breach": breach, "recovered": recovered, "decision": decision,
                        "action": action, "episode_id": episode})
        out.append(decision)
    return out


def test_an_episode_closes_only_once_the_drop_is_gone_not_merely_unproven():
    hovering = [(T, F), (T, F), (F, F), (F, F), (T, F), (F, True), (F, True)]
    assert replay_with_recovery(hovering) == ["breach", "drift", "drift", "drift", "drift", "drift", "recovered"]
    # outside an episode only the breach counts
    assert replay_with_recovery([(F, F), (F, F), (T, F)]) == ["ok", "ok", "breach"]
    # too little data neither opens, closes nor breaks the run of recovered checks
    assert replay_with_recovery([(T, F), (T, F), (F, True), (N, None), (F, True)])[-1] == "recovered"


@pytest.mark.parametrize("live, expected", [
    ({"purchase": 0.70, "churn": 0.66}, True),
    ({"purchase": 0.68, "churn": 0.66}, True),      # exactly at baseline - tolerance
    ({"purchase": 0.67, "churn": 0.70}, False),     # one target still down is enough
    ({"purchase": None, "churn": 0.66}, None),
])
def test_a_check_has_recovered_when_every_target_is_back_within_the_tolerance(live, expected):
    baseline = {"purchase": {"auc": {"value": 0.70}}, "churn": {"auc": {"value": 0.66}}}
    live = {t: {"auc": {"value": v}} for t, v in live.items()}
    assert drift.is_recovered(live, baseline, 0.02 + 1e-9) is expected


def test_an_episode_alerts_once_and_retrains_once_after_the_delay():
    out = replay_decisions([T, T] + [T] * 20, delay=5)
    actions = [a for _, a in out]
    assert actions.count("alert") == 1 and actions.index("alert") == 1
    assert actions.count("retrain") == 1 and actions.index("retrain") == 6


@pytest.mark.parametrize("delay, cooldown_since, expected", [
    (0, None, "alert_and_retrain"),
    (0, 3, "alert_only_cooldown"),     # a drift retraining 3 days ago: still cooling down
    (0, 30, "alert_and_retrain"),
])
def test_without_delay_the_first_check_retrains_unless_cooling_down(delay, cooldown_since, expected):
    history = []
    if cooldown_since is not None:
        history.append({"check_date": D0 - dt.timedelta(days=cooldown_since), "breach": F, "decision": "recovered",
                        "action": "retrain", "episode_id": None})
    history.append({"check_date": D0 - dt.timedelta(days=1), "breach": T, "decision": "breach", "action": "none",
                    "episode_id": None})
    assert drift.decide(history, True, D0, 14, delay) == ("drift", expected, True)


def replay_estimates(drops, realized_open=False):
    history, out = [], []
    for i, drop in enumerate(drops):
        decision, action, opens = drift.decide_estimate(history, drop, realized_open)
        current = drift.open_episode(history, "estimate_decision", "estimate_episode_id", "estimated_drop")
        history.append({"estimate_drop": drop, "estimate_decision": decision,
                        "estimate_episode_id": i + 1 if opens else current})
        out.append((decision, action))
    return out


@pytest.mark.parametrize("drops, decisions, warnings", [
    ([F, F], ["estimated_ok", "estimated_ok"], 0),
    ([N, T], ["unavailable", "estimated_dip"], 0),
    ([T, F, T], ["estimated_dip", "estimated_ok", "estimated_drop"], 1),
    ([T, T, T, T, F, F, T, T], ["estimated_dip", "estimated_drop", "estimated_drop", "estimated_drop",
                                "estimated_drop", "estimated_recovered", "estimated_dip", "estimated_drop"], 2),
])
def test_an_estimated_drop_warns_once_per_episode_and_never_retrains(drops, decisions, warnings):
    out = replay_estimates(drops)
    assert [d for d, _ in out] == decisions
    assert [a for _, a in out].count("warn") == warnings
    assert not any(a.startswith("alert") or a == "retrain" for _, a in out)


def test_no_estimate_warning_while_a_realized_drift_episode_is_open():
    assert [a for _, a in replay_estimates([T, T, T], realized_open=True)] == ["none", "none", "none"]


def live(p_hi, c_hi, width=0.03):
    return {"purchase": {"auc": {"value": None if p_hi is None else p_hi - width, "hi": p_hi}},
            "churn": {"auc": {"value": c_hi - width, "hi": c_hi}}}


BASE = {"purchase": {"auc": {"value": 0.75}}, "churn": {"auc": {"value": 0.70}}}


@pytest.mark.parametrize("lv, n, expected", [
    (live(0.76, 0.71), 500, False),
    (live(0.729, 0.71), 500, True),      # purchase upper bound below 0.75 - 0.02
    (live(0.731, 0.679), 500, True),     # churn
    (live(0.731, 0.681), 500, False),    # both within the tolerance
    (live(0.60, 0.60), 299, None),       # too few matches
    (live(None, 0.60), 500, None),       # a target could not be scored
])
def test_breach_rule(lv, n, expected):
    assert drift.is_breach(lv, BASE, 0.02, n, 300) is expected


@pytest.mark.parametrize("base_se, expected", [
    (0.0, True),       # upper bound 0.70 + 0.03 = 0.73 < 0.75 - 0.01
    (0.005, True),     # 0.70 + hypot(0.03, 0.0098) = 0.7316
    (0.015, False),    # 0.70 + hypot(0.03, 0.0294) = 0.742: the baseline itself is too uncertain to call it
])
def test_the_baselines_own_uncertainty_widens_the_breach_bound(base_se, expected):
    lv = {"purchase": {"auc": {"value": 0.70, "hi": 0.73}}, "churn": {"auc": {"value": 0.70, "hi": 0.73}}}
    base = {"purchase": {"auc": {"value": 0.75, "se": base_se}}, "churn": {"auc": {"value": 0.70, "se": base_se}}}
    assert drift.is_breach(lv, base, 0.01, 500, 300) is expected


def est(hi, ref, reliable=True, ref_se=None):
    return {"value": hi - 0.01, "hi": hi, "reference": ref, "reference_se": ref_se, "reliable": reliable}


@pytest.mark.parametrize("estimate, expected", [
    ({"purchase": est(0.74, 0.75), "churn": est(0.70, 0.70)}, False),
    ({"purchase": est(0.72, 0.75), "churn": est(0.70, 0.70)}, True),
    ({"purchase": est(0.72, 0.75, ref_se=0.01), "churn": est(0.70, 0.70)}, False),  # the reference's own noise
    ({"purchase": est(0.72, 0.75, reliable=False), "churn": est(0.70, 0.70)}, False),  # only reliable targets count
    ({"purchase": est(0.5, 0.75, reliable=False), "churn": est(0.5, 0.70, reliable=False)}, None),
    ({}, None),
])
def test_estimated_drop_rule_uses_only_reliable_estimates(estimate, expected):
    assert drift.is_estimated_drop(estimate, 0.02) is expected


def test_the_baseline_of_a_version_mix_weights_each_version_by_its_share():
    metrics = {3: {"purchase": {"auc": {"value": 0.80, "lo": 0.78, "hi": 0.82}}, "churn": {"auc": {"value": 0.70}}},
               4: {"purchase": {"auc": {"value": 0.70, "lo": 0.66, "hi": 0.74}}, "churn": {"auc": {"value": 0.60}}}}
    base = drift.weighted_baseline(metrics, {"purchase": {3: 0.25, 4: 0.75}, "churn": {3: 1.0}})
    assert base["purchase"]["auc"]["value"] == pytest.approx(0.725)
    assert base["purchase"]["auc"]["se"] == pytest.approx((0.25 * 0.04 + 0.75 * 0.08) / (2 * 1.959964), abs=1e-6)
    assert base["churn"]["auc"]["se"] == 0.0
    assert base["churn"]["auc"]["value"] == pytest.approx(0.70)
    assert base["purchase"]["versions"] == {"3": 0.80, "4": 0.70}


def test_each_tier_due_a_drift_retraining_keeps_its_own_since():
    due = [{"tier": "elite", "check_date": "2025-06-10", "since": "2025-06-01", "episode_id": 7},
           {"tier": "fast", "check_date": "2025-06-10", "since": "2025-05-20", "episode_id": 8}]
    extra = drift.retrain_request(due)
    plan = drift.retrain_plan({"tiers": ["fast", "elite"], "as_of": None, "reason": None, "since": None},
                              [extra], "asset_triggered", dt.date(2025, 6, 10))
    assert {p["tier"]: p["since"] for p in plan} == {"elite": "2025-06-01", "fast": "2025-05-20"}
    assert {p["reason"] for p in plan} == {"drift"} and {p["as_of"] for p in plan} == {"2025-06-10"}


@pytest.mark.parametrize("params, events, run_type, expected", [
    ({"reason": None}, [], "scheduled", [("fast", "schedule", None), ("elite", "schedule", None)]),
    ({"reason": None}, [], "manual", [("fast", "manual", None), ("elite", "manual", None)]),
    ({"reason": "manual", "tiers": ["elite"], "since": "2025-01-01"}, [], "manual",
     [("elite", "manual", "2025-01-01")]),
    # the older event form: one tier, one since
    ({"reason": None}, [{"tier": "elite", "tiers": ["elite"], "since": "2025-05-01", "as_of": "2025-06-01"}],
     "asset_triggered", [("elite", "drift", "2025-05-01")]),
])
def test_retrain_plan(params, events, run_type, expected):
    full = {"tiers": ["fast", "elite"], "as_of": None, "reason": None, "since": None, **params}
    plan = drift.retrain_plan(full, events, run_type, dt.date(2025, 6, 1))
    assert [(p["tier"], p["reason"], p["since"]) for p in plan] == expected


def test_psi_against_stored_deciles_is_zero_for_the_same_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    ref = rng.beta(2, 5, 50_000)
    edges = np.quantile(ref, np.linspace(0, 1, 11))
    assert drift.psi_from_edges(edges, None, rng.beta(2, 5, 50_000)) < 0.005
    assert drift.psi_from_edges(edges, None, rng.beta(3, 4, 50_000)) > 0.1
    assert drift.psi(ref, ref) == pytest.approx(0.0, abs=1e-9)
