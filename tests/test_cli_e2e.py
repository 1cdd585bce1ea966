"""End to end through the command line: synth -> ingest -> train both tiers -> score, on the real database."""
import sqlalchemy as sa

from mlcore.cli import main


def test_synth_ingest_train_score(engine, tmp_path, monkeypatch, capsys):
    url = engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CLIENT_SCORING_HOME", str(tmp_path / "home"))
    world = tmp_path / "world"
    assert main(["synth", "--clients", "1500", "--days", "730", "--seed", "3", "--out", str(world)]) == 0
    assert main(["db", "upgrade"]) == 0
    assert main(["ingest", "notes", str(world / "notes.csv")]) == 0
    assert main(["ingest", "concepts", str(world / "note_concepts.csv")]) == 0
    assert main(["ingest", "outcomes", str(world / "outcomes.csv")]) == 0
    assert main(["train", "--tier", "fast"]) == 0
    assert main(["train", "--tier", "elite", "--reason", "schedule"]) == 0
    assert main(["score", "--tier", "elite", "--date", "2025-12-30", "--run-id", "e2e"]) == 0
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "promoted to champion" in out and "scored" in out and "elite" in out
    assert "clv: lowest squared_error on the newest" in out                # why each target chose what it did
    with engine.connect() as conn:
        n_pred = conn.execute(sa.text("SELECT count(*) FROM predictions WHERE run_id = 'e2e'")).scalar_one()
        n_clients = conn.execute(sa.text("SELECT count(DISTINCT client_id) FROM notes "
                                         "WHERE date <= '2025-12-30'")).scalar_one()
        reasons = conn.execute(sa.text("SELECT tier, reason, status FROM model_versions ORDER BY tier")).all()
    assert n_pred == n_clients > 1000
    assert [tuple(r) for r in reasons] == [("elite", "schedule", "champion"), ("fast", "manual", "champion")]


def test_cli_reports_bad_input_without_a_traceback(engine, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    bad = tmp_path / "notes.csv"
    bad.write_text("note_id,client_id\nn1,c1\n")
    assert main(["ingest", "notes", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing required column(s) date" in err
