"""The drift check on a real database: it watches what was served, across promotions, from the CLI too."""
import datetime as dt
import json

import pytest
import sqlalchemy as sa

from mlcore.cli import main
from mlcore.config import Settings
from mlcore.registry import Registry
from mlcore.scoring import score
from mlcore.training import train_tier
from pg import fresh_database, ingest_world


@pytest.fixture(scope="module")
def served(server_url, small_world, tmp_path_factory):
    """v1 served the weeks whose outcomes have matured; v2 was promoted since and served the last of them."""
    with fresh_database(server_url) as engine:
        last = ingest_world(engine, small_world)
        settings = Settings(database_url=engine.url.render_as_string(hide_password=False),
                            home=tmp_path_factory.mktemp("home"), n_bootstrap=30, drift_min_n=50,
                            drift_window_days=28)
        H = settings.horizon_days
        train_tier(engine, settings, "elite", as_of=last - dt.timedelta(days=H + 60))
        for back in range(35, 10, -3):                      # v1 serves until H + 10 days before the end
            score(engine, settings, "elite", last - dt.timedelta(days=H + back), run_id=f"v1_{back}")
        v2 = train_tier(engine, settings, "elite", as_of=last - dt.timedelta(days=H + 10), reason="schedule")
        Registry(engine, settings.model_store).promote("elite", v2.model.version, {"why": "test"})
        for back in range(9, -1, -3):                       # v2 serves the rest
            score(engine, settings, "elite", last - dt.timedelta(days=H + back), run_id=f"v2_{back}")
        yield engine, settings, last


def test_a_promotion_does_not_blind_the_check_it_matches_every_served_version(served):
    from mlcore.monitoring import check_tier
    engine, settings, last = served
    result = check_tier(engine, settings, "elite", last)
    assert result.model_version == 2                       # the champion when the check ran
    assert set(result.versions) == {"1", "2"} and sum(result.versions.values()) == result.n
    assert result.n >= settings.drift_min_n and result.decision in ("ok", "breach")
    groups = result.live["purchase"]["auc_by_version"]
    assert set(groups) == {"1", "2"}
    # the baseline is each version's validation AUC weighted by its share of the matches
    metrics = {v: Registry(engine, settings.model_store).get("elite", v).metrics for v in (1, 2)}
    share = {v: result.versions[str(v)] / result.n for v in (1, 2)}
    expected = sum(share[v] * metrics[v]["purchase"]["auc"]["value"] for v in (1, 2))
    assert result.baseline["purchase"]["auc"]["value"] == pytest.approx(expected, abs=0.02)
    assert result.baseline["purchase"]["versions"] == {str(v): metrics[v]["purchase"]["auc"]["value"] for v in (1, 2)}


def test_the_estimate_covers_the_newest_scores_and_is_shown_as_estimated(served):
    from mlcore.monitoring import check_tier
    engine, settings, last = served
    result = check_tier(engine, settings, "elite", last)
    est = result.estimate
    assert est["status"] == "ok" and est["model_version"] == 2
    assert est["scored_for"] == str(last - dt.timedelta(days=settings.horizon_days))
    for target in ("purchase", "churn"):
        e = est[target]
        assert e["lo"] <= e["value"] <= e["hi"] and e["ece"] is not None and e["reference"] is not None
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT decision, estimate_decision, est_purchase_auc, purchase_auc "
                                   "FROM live_performance WHERE tier = 'elite' AND check_date = :d"),
                           {"d": last}).one()
    assert row.estimate_decision.startswith("estimated_") or row.estimate_decision == "unavailable"
    assert row.decision != row.estimate_decision and row.est_purchase_auc == pytest.approx(est["purchase"]["value"])


def test_training_records_calibration_and_the_validation_estimate(served):
    engine, settings, _ = served
    m = Registry(engine, settings.model_store).get("elite", 2).metrics
    for target in ("purchase", "churn"):
        cal = m[target]["calibration"]
        assert 0 <= cal["ece"] < 0.2 and cal["ece_noise"] > 0 and len(cal["bins"]) == 10
        # CBPE on validation ~ realized. Elite serves Fast's pipeline on this small world (its own is not
        # ahead beyond noise), whose churn logistic kept no map: ECE 0.046, the estimate 0.064 below
        assert abs(cal["estimated_auc"] - m[target]["auc"]["value"]) < 0.08
        assert len(m[target]["score_deciles"]) == 11


def test_drift_check_from_the_command_line_records_the_same_check(served, monkeypatch, capsys):
    engine, settings, last = served
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CLIENT_SCORING_HOME", str(settings.home))
    monkeypatch.setenv("CLIENT_SCORING_DRIFT_MIN_N", "50")
    monkeypatch.setenv("CLIENT_SCORING_DRIFT_WINDOW_DAYS", "28")
    day = last - dt.timedelta(days=1)
    assert main(["drift", "check", "--tier", "elite", "--date", str(day)]) == 0
    out = capsys.readouterr().out
    assert f"elite {day}:" in out and "versions" in out and "estimated AUC (no labels yet)" in out
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT n, versions, run_id FROM drift_checks WHERE tier = 'elite' "
                                   "AND check_date = :d"), {"d": day}).one()
    assert row.n > 0 and row.run_id.startswith("cli__") and set(row.versions) <= {"1", "2"}
    assert main(["drift", "history", "--tier", "elite"]) == 0
    assert str(day) in capsys.readouterr().out
    assert main(["drift", "check", "--tier", "elite"]) == 2             # --date is required: one clear line
    assert "needs --date" in capsys.readouterr().err


def test_drift_alerts_name_the_served_versions_and_warnings_say_estimated():
    from mlcore.monitoring import CheckResult, alerts_for
    base = dict(tier="elite", check_date=dt.date(2025, 6, 1), model_version=5, n=400, breach=True,
                decision="drift", action="alert", episode_id=11,
                live={"purchase": {"auc": {"value": 0.6}}, "churn": {"auc": {"value": 0.6}}},
                baseline={"purchase": {"auc": {"value": 0.75}}, "churn": {"auc": {"value": 0.7}}},
                diagnostics={}, id=11, versions={"3": 100, "4": 300},
                estimate={"model_version": 5, "scored_for": "2025-06-01",
                          "purchase": {"value": 0.6, "reference": 0.7, "ece": 0.02},
                          "churn": {"value": 0.6, "reference": 0.7, "ece": 0.02}},
                estimate_drop=True, estimate_decision="estimated_drop", estimate_action="warn", estimate_episode_id=9)
    alerts = alerts_for(CheckResult(**base))
    assert [a.kind for a in alerts] == ["drift", "drift_estimate"]
    assert alerts[0].dedup_key == "drift:elite:11" and alerts[0].payload["served_versions"] == {"3": 100, "4": 300}
    assert alerts[1].dedup_key == "drift_estimate:elite:9" and alerts[1].payload["estimated"] is True
    json.dumps([a.payload for a in alerts])
    quiet = CheckResult(**{**base, "action": "none", "estimate_action": "none"})
    assert alerts_for(quiet) == []
