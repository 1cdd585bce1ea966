"""The monitoring loop in the production cadence, without Airflow (bench/cadence.py, shortened).

Nightly Elite scoring, Fast scoring of each day's uploads, weekly retraining of both tiers through the
promotion gate, a daily drift check: the champion is always younger than H, so only a check that
watches what was served (whatever version made it) can see the drift. H is 30 days here (90 in the
benchmark) to keep the test short; every other setting is the default.
"""
import dataclasses
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlcore.config import Settings
from mlcore.drift import OUT_OF

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from cadence import Timeline, run  # noqa: E402


@pytest.mark.slow
def test_drift_in_the_weekly_cadence_is_caught_once_within_the_bound(engine, tmp_path):
    settings = dataclasses.replace(Settings(), database_url=engine.url.render_as_string(hide_password=False),
                                   home=tmp_path, horizon_days=30)
    timeline = Timeline(clients=1500, seed=5, drift_day=352, first_day=300, last_day=376, world_days=420,
                        outcome_gap_days=(15, 45))
    out = run(engine, settings, timeline, tmp_path, echo=lambda *a: None)
    checks, summary = out["checks"], out["summary"]
    elite = checks[checks["tier"] == "elite"]
    before = elite[elite["day"] < timeline.drift_day]
    matured = timeline.first_day + settings.horizon_days + settings.drift_match_days
    # never blind once the first served predictions have matured, though a new champion came every week
    assert summary["scheduled_retrainings"] >= 2 * 7 and summary["scheduled_promoted"] >= 4
    assert (elite[elite["day"] > matured]["n"] > 0).all()
    assert (before[before["day"] > matured]["decision"] == "ok").sum() >= 5
    assert not before["decision"].isin(["breach", "drift"]).any()
    assert len(set().union(*elite["versions"].map(set))) >= 3
    # before any outcome matured, the estimate spoke (shown as estimated, never as a realized "ok")
    young = elite[elite["day"] < timeline.first_day + settings.horizon_days]
    assert young["est_purchase"].notna().all() and (young["decision"] == "insufficient_data").all()
    # detected once, within the window plus the anti-flapping checks, retrained once
    lag = summary["elite"]["detection_lag_days"]
    assert lag is not None and 0 <= lag <= settings.drift_window_days + OUT_OF
    with engine.connect() as conn:
        alerts = conn.execute(sa.text("SELECT tier, count(*) FROM alerts WHERE kind = 'drift' GROUP BY 1")).all()
        drift_models = conn.execute(sa.text("SELECT tier, count(*) FROM model_versions WHERE reason = 'drift' "
                                            "GROUP BY 1")).all()
    assert dict(alerts) == {"elite": 1}      # Fast's served scores (on upload) are too few here to evaluate
    assert dict(drift_models) == {"elite": 1}
    assert summary["fast"]["estimable"] > 0  # ... but its estimate speaks
