"""SQL for analysts: the views, the documented example queries and the read-only ``analyst`` role."""
import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from mlcore import db

ROOT = Path(__file__).resolve().parents[1]
QUERIES = sorted((ROOT / "sql" / "queries").glob("*.sql"))
VIEWS = ("latest_predictions", "at_risk_clients", "live_performance", "drift_history", "model_registry")


def as_analyst(engine, sql, params=None) -> pd.DataFrame:
    with engine.connect() as conn:
        conn.execute(sa.text("SET ROLE analyst"))
        frame = pd.read_sql(sa.text(sql), conn, params=params)
        conn.rollback()
    return frame


def table(engine, sql) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text(sql), conn)


def test_upgrade_is_idempotent_and_creates_the_views(populated):
    engine, _, _ = populated
    assert db.upgrade(engine) == []
    with engine.connect() as conn:
        views = set(conn.execute(sa.text("SELECT viewname FROM pg_views WHERE schemaname = 'public'")).scalars())
    assert set(VIEWS) <= views


@pytest.mark.parametrize("view", VIEWS)
def test_analyst_reads_every_view(populated, view):
    engine, _, _ = populated
    assert len(as_analyst(engine, f"SELECT * FROM {view}")) > 0


def test_latest_predictions_is_the_newest_row_per_tier_and_client(populated):
    engine, _, _ = populated
    view = as_analyst(engine, "SELECT tier, client_id, scored_for, model_version FROM latest_predictions")
    raw = table(engine, "SELECT tier, client_id, scored_for, model_version FROM predictions")
    expected = raw.sort_values("scored_for").groupby(["tier", "client_id"]).tail(1)
    merged = expected.merge(view, on=["tier", "client_id"], suffixes=("", "_view"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (merged["scored_for"] == merged["scored_for_view"]).all()
    assert (merged["model_version"] == merged["model_version_view"]).all()


def test_top_value_at_risk_query_matches_the_predictions(populated):
    engine, _, _ = populated
    top = as_analyst(engine, (ROOT / "sql/queries/top_value_at_risk.sql").read_text())
    raw = table(engine, "SELECT tier, client_id, scored_for, churn_risk, predicted_clv FROM predictions")
    raw["elite"] = raw["tier"] == "elite"
    freshest = raw.sort_values(["scored_for", "elite"]).groupby("client_id").tail(1)
    freshest = freshest.assign(var=freshest["churn_risk"] * freshest["predicted_clv"])
    expected = freshest.sort_values(["var", "client_id"], ascending=[False, True]).head(20)
    assert list(top["client_id"]) == list(expected["client_id"])
    assert list(top["risk_rank"]) == list(range(1, 21))
    assert top["value_at_risk"].to_numpy() == pytest.approx(expected["var"].to_numpy())


def test_champions_query_shows_each_champion_with_intervals(populated):
    engine, _, _ = populated
    champions = as_analyst(engine, (ROOT / "sql/queries/champions.sql").read_text())
    registry = table(engine, "SELECT tier, version FROM model_versions WHERE status = 'champion' ORDER BY tier")
    assert champions[["tier", "version"]].values.tolist() == registry.values.tolist()
    assert (champions["purchase_auc_lo"] <= champions["purchase_auc"]).all()
    assert (champions["purchase_auc"] <= champions["purchase_auc_hi"]).all()


def test_live_auc_query_matches_the_drift_checks(populated):
    engine, settings, checks = populated
    live = as_analyst(engine, (ROOT / "sql/queries/live_auc_last_30_days.sql").read_text())
    evaluable = [c for c in checks if c.live]
    assert len(evaluable) >= 2, [dataclasses.replace(c, live={}, diagnostics={}) for c in checks]
    assert list(live["check_date"]) == [c.check_date for c in checks]
    for c in evaluable:
        row = live[live["check_date"] == c.check_date].iloc[0]
        assert float(row["purchase_auc"]) == pytest.approx(c.live["purchase"]["auc"]["value"], abs=5e-4)
        base = c.baseline["purchase"]["auc"]["value"]
        assert float(row["threshold"]) == pytest.approx(base - settings.drift_tolerance, abs=5e-4)


@pytest.mark.parametrize("query", QUERIES, ids=lambda p: p.stem)
def test_every_example_query_runs_as_analyst_and_is_in_the_readme(populated, query):
    engine, _, _ = populated
    as_analyst(engine, query.read_text())
    readme = (ROOT / "README.md").read_text()
    body = "\n".join(line for line in query.read_text().splitlines() if not line.startswith("--")).strip()
    assert body in readme, f"README does not show {query.name}"


@pytest.mark.parametrize("statement", [
    "INSERT INTO predictions SELECT * FROM predictions LIMIT 1",
    "UPDATE model_versions SET status = 'retired'",
    "DELETE FROM outcomes",
    "TRUNCATE alerts",
    "CREATE TABLE scratch (x int)",
    "DROP VIEW at_risk_clients",
])
def test_analyst_is_refused_any_write(populated, statement):
    engine, _, _ = populated
    before = table(engine, "SELECT (SELECT count(*) FROM predictions) AS p, (SELECT count(*) FROM outcomes) AS o")
    with engine.connect() as conn:
        conn.execute(sa.text("SET ROLE analyst"))
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
            conn.execute(sa.text(statement))
        conn.rollback()
    after = table(engine, "SELECT (SELECT count(*) FROM predictions) AS p, (SELECT count(*) FROM outcomes) AS o")
    assert before.equals(after)


def test_both_forms_of_the_drift_match_give_the_same_rows(populated):
    """The drift check picks a probe or a join by the planner's estimates; both must match the same rows."""
    import datetime as dt

    from mlcore import monitoring as drift
    engine, settings, checks = populated
    end = checks[-1].check_date
    params = {"tier": "elite", "version": checks[-1].model_version, "h": settings.horizon_days,
              "tol": settings.drift_match_days, "start": end - dt.timedelta(days=60), "end": end}
    cols = ["purchased", "churned", "lifetime_value", "purchase_likelihood", "churn_risk", "predicted_clv"]
    probe = pd.concat([db.read_frame(engine, drift._MATCHED, {**params, "parts": 2, "part": k}) for k in (0, 1)])
    join = db.read_frame(engine, drift._MATCHED_JOIN, params)
    assert len(probe) > 100
    pd.testing.assert_frame_equal(probe.sort_values(cols).reset_index(drop=True),
                                  join.sort_values(cols).reset_index(drop=True), check_dtype=False)
    chosen = drift.matched_outcomes(engine, params)
    pd.testing.assert_frame_equal(chosen.sort_values(cols).reset_index(drop=True),
                                  join.sort_values(cols).reset_index(drop=True), check_dtype=False)


def test_concept_mix_diagnostic_matches_the_world_files_and_its_sample_stays_close(populated, small_world):
    """All notes: the PSI of the concept shares equals one computed from the CSVs; a sample reads a share of them."""
    import datetime as dt

    import numpy as np

    from mlcore import monitoring as drift
    engine, _, checks = populated
    end = checks[-1].check_date
    notes = pd.read_csv(small_world / "notes.csv", dtype={"note_id": str}, parse_dates=["date"])
    concepts = pd.read_csv(small_world / "note_concepts.csv", dtype={"note_id": str, "concept_id": str})
    c = concepts.merge(notes[["note_id", "date"]], on="note_id")
    days = (pd.Timestamp(end) - c["date"]).dt.days
    p = c[(days >= 30) & (days < 210)]["concept_id"].value_counts()
    q = c[(days >= 0) & (days < 30)]["concept_id"].value_counts()
    p, q = p.align(q, fill_value=0)
    p, q = np.clip(p / p.sum(), 1e-5, None), np.clip(q / q.sum(), 1e-5, None)
    expected = float(np.sum((q - p) * np.log(q / p)))

    full = drift._concept_mix_drift(engine, end, 50, sample_notes=10**9)
    assert full["status"] == "ok" and full["notes_sampled"] == "1 in 1"
    assert full["psi"] == pytest.approx(expected, abs=1e-4)
    n_recent = int(((pd.Timestamp(end) - notes["date"]).dt.days.between(0, 29)).sum())
    sampled = drift._concept_mix_drift(engine, end, 50, sample_notes=n_recent // 4)
    assert sampled["notes_sampled"] == "1 in 4" and sampled["psi"] > 0
    for window in ("recent", "reference"):    # a quarter of the notes: about a quarter of their concept rows
        assert 0.15 < sampled["concept_rows"][window] / full["concept_rows"][window] < 0.35
    assert drift._concept_mix_drift(engine, end - dt.timedelta(days=3000), 50)["status"] == "insufficient_data"
