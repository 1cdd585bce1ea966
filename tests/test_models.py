"""Training, registry and scoring against the real database on a small synthetic world."""
import dataclasses
import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import sqlalchemy as sa
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.pipeline import Pipeline

import mlcore.scoring as scoring
import mlcore.training as training
from pg import count, fresh_database
from mlcore.config import Settings
from mlcore.exceptions import ArtifactIntegrityError, ConfigError, InputDataError, ModelNotFoundError
from mlcore.features import ActivityStats
from mlcore.history_io import history_as_of, outcome_clients, read_outcomes
from mlcore.ingest import ingest_file
from mlcore.registry import Registry
from mlcore.scoring import score
from mlcore.tiers import (MultiTargetModel, SelectedBoostingClassifier, SelectedBoostingRegressor, _SelectedBoosting,
                          elite_own_pipeline)
from mlcore.training import train_tier


def load_world(engine, world):
    for kind, name in (("notes", "notes.csv"), ("concepts", "note_concepts.csv"), ("outcomes", "outcomes.csv")):
        ingest_file(engine, kind, world / name)
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT max(date) FROM outcomes")).scalar_one()


@pytest.fixture(scope="module")
def trained(server_url, small_world, tmp_path_factory):
    """A database with the small world loaded and both tiers trained once."""
    with fresh_database(server_url) as engine:
        last = load_world(engine, small_world)
        settings = Settings(database_url=engine.url.render_as_string(hide_password=False),
                            home=tmp_path_factory.mktemp("home"), n_bootstrap=50)
        results = {tier: train_tier(engine, settings, tier, as_of=last) for tier in ("fast", "elite")}
        yield engine, settings, last, results


def test_first_models_become_champions_with_metrics_beside_baselines(trained):
    engine, settings, last, results = trained
    for tier, res in results.items():
        assert res.promoted and res.model.status == "champion" and res.model.version == 1
        for target in ("purchase", "churn"):
            m = res.metrics[target]
            assert m["auc"]["lo"] <= m["auc"]["value"] <= m["auc"]["hi"]
            assert m["auc"]["value"] > 0.6 > m["baseline"]["auc"]          # clearly above the trivial baseline
            assert m["brier"]["value"] < m["baseline"]["brier"]
        assert res.metrics["clv"]["r2"]["value"] > res.metrics["clv"]["baseline"]["r2"]
    # Elite's record of each target says what served against Fast's pipeline, and why
    for target in ("purchase", "churn", "clv"):
        versus = results["elite"].metrics[target]["selection"]["versus_simple"]
        assert versus["served"] in ("simple", "rich", "mean") and "fast" in versus["why"]
        assert "versus_simple" not in results["fast"].metrics[target]["selection"]
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT train_end, valid_start, valid_end FROM model_versions "
                                   "WHERE tier = 'elite'")).one()
    assert row.valid_end == last
    assert row.valid_start - row.train_end == dt.timedelta(days=settings.horizon_days + 1)   # the embargo


def test_scoring_is_idempotent_and_covers_every_client_with_notes(trained):
    engine, settings, last, _ = trained
    first = score(engine, settings, "elite", last, run_id="run-1", chunk_size=700)
    with engine.connect() as conn:
        a = pd.read_sql(sa.text("SELECT client_id, purchase_likelihood, churn_risk, predicted_clv FROM predictions "
                                "WHERE tier = 'elite' AND scored_for = :d ORDER BY client_id"), conn, params={"d": last})
        clients = conn.execute(sa.text("SELECT count(DISTINCT client_id) FROM notes WHERE date <= :d"),
                               {"d": last}).scalar_one()
    second = score(engine, settings, "elite", last, run_id="run-2", chunk_size=300)
    with engine.connect() as conn:
        b = pd.read_sql(sa.text("SELECT client_id, purchase_likelihood, churn_risk, predicted_clv FROM predictions "
                                "WHERE tier = 'elite' AND scored_for = :d ORDER BY client_id"), conn, params={"d": last})
        runs = conn.execute(sa.text("SELECT DISTINCT run_id FROM predictions WHERE tier = 'elite'")).scalars().all()
    assert first.n_clients == second.n_clients == clients == len(a)
    pd.testing.assert_frame_equal(a, b)          # chunking and re-runs give the same rows
    assert runs == ["run-2"]


@pytest.mark.parametrize("stage", ["_history", "copy_rows_binary"])   # a read of chunk 2 fails / its COPY fails
def test_failure_mid_write_keeps_the_previous_slice(trained, monkeypatch, stage):
    engine, settings, last, _ = trained
    score(engine, settings, "fast", last, run_id="good")
    before = count(engine, "predictions")
    calls = {"n": 0}
    real = getattr(scoring, stage)

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected failure in the second chunk")
        return real(*args, **kwargs)
    monkeypatch.setattr(scoring, stage, flaky)
    with pytest.raises(RuntimeError, match="second chunk"):
        score(engine, settings, "fast", last, run_id="bad", chunk_size=500)
    assert calls["n"] >= 2
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT DISTINCT run_id FROM predictions WHERE tier = 'fast'")).scalars().all()
    assert runs == ["good"] and count(engine, "predictions") == before


def test_scoring_a_subset_replaces_only_those_clients(trained):
    engine, settings, last, _ = trained
    score(engine, settings, "fast", last, run_id="full")
    with engine.connect() as conn:
        some = conn.execute(sa.text("SELECT client_id FROM predictions WHERE tier = 'fast' AND scored_for = :d "
                                    "ORDER BY client_id LIMIT 5"), {"d": last}).scalars().all()
    n = count(engine, "predictions")
    res = score(engine, settings, "fast", last, run_id="upload", clients=some + ["no-such-client"])
    assert res.n_clients == 5 and count(engine, "predictions") == n
    with engine.connect() as conn:
        by_run = dict(conn.execute(sa.text("SELECT run_id, count(*) FROM predictions WHERE tier = 'fast' "
                                           "GROUP BY run_id")).all())
    assert by_run == {"full": n - 5 - _other_tiers(engine), "upload": 5}


def _other_tiers(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM predictions WHERE tier <> 'fast'")).scalar_one()


def test_tampered_artifact_is_refused(trained):
    engine, settings, last, _ = trained
    registry = Registry(engine, settings.model_store)
    champ = registry.require_champion("fast")
    path = settings.model_store / champ.artifact_path
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(ArtifactIntegrityError, match="refusing to load"):
            registry.load(champ)
        with pytest.raises(ArtifactIntegrityError):
            score(engine, settings, "fast", last)
    finally:
        path.write_bytes(original)
    assert registry.load(champ) is not None


def dummy_pipeline(tier, random_state=0):
    return Pipeline([("features", ActivityStats()), ("model", MultiTargetModel(
        DummyClassifier(strategy="prior"), DummyClassifier(strategy="prior"), DummyRegressor()))])


def test_promotion_gate_keeps_a_worse_candidate_out(server_url, small_world, tmp_path, monkeypatch):
    with fresh_database(server_url) as engine:
        last = load_world(engine, small_world)
        settings = Settings(database_url="unused", home=tmp_path, n_bootstrap=20, promotion_margin=0.01)
        good = train_tier(engine, settings, "fast", as_of=last)
        monkeypatch.setattr(training, "make_pipeline_for", dummy_pipeline)
        bad = train_tier(engine, settings, "fast", as_of=last, reason="manual")
        assert not bad.promoted and bad.model.status == "candidate"
        assert set(bad.gate["shortfall"]) == {"purchase", "churn", "clv"}
        registry = Registry(engine, settings.model_store)
        assert registry.require_champion("fast").version == good.model.version
        # the same model again is not worse: it is promoted and the old champion retired
        monkeypatch.undo()
        again = train_tier(engine, settings, "fast", as_of=last, reason="schedule")
        assert again.promoted
        statuses = registry.list().set_index("version")["status"].to_dict()
        assert statuses == {1: "retired", 2: "candidate", 3: "champion"}
        # rollback: promote the first version again
        registry.promote("fast", 1)
        assert registry.require_champion("fast").version == 1


def test_training_without_enough_outcomes_says_why(engine, settings, small_world):
    load_world(engine, small_world)
    with pytest.raises(InputDataError, match="training rows"):
        train_tier(engine, settings, "fast", as_of=dt.date(2024, 6, 1))
    with pytest.raises(ModelNotFoundError, match="mlcore train --tier elite"):
        score(engine, settings, "elite", dt.date(2025, 1, 1))


def test_partitioned_scoring_equals_single_partition_and_is_checked(trained):
    engine, settings, last, results = trained
    version = Registry(engine, settings.model_store).require_champion("elite").version
    frames = {}
    for n_parts in (1, 4):
        parts = scoring.plan_partitions(engine, last, n_parts)
        assert len(parts) == n_parts and len({p["lo"] for p in parts}) == n_parts
        run = f"parts-{n_parts}"
        for p in parts:
            scoring.score_partition(engine, settings, "elite", last, run, p, version)
        scoring.score_partition(engine, settings, "elite", last, run, parts[-1], version)   # a retried task
        assert scoring.publish(engine, "elite", last, run, parts) == sum(p["n"] for p in parts)
        report = scoring.quality_checks(engine, "elite", last)
        assert report["rows"] == report["clients"]
        with engine.connect() as conn:
            frames[n_parts] = pd.read_sql(sa.text(
                "SELECT client_id, model_version, purchase_likelihood, churn_risk, predicted_clv FROM predictions "
                "WHERE tier = 'elite' AND scored_for = :d ORDER BY client_id"), conn, params={"d": last})
    pd.testing.assert_frame_equal(frames[1], frames[4], check_exact=True)      # bit for bit
    assert count(engine, "prediction_batches") == 0


def test_publish_refuses_a_missing_partition(trained):
    engine, settings, last, _ = trained
    from mlcore.exceptions import DataQualityError
    version = Registry(engine, settings.model_store).require_champion("elite").version
    parts = scoring.plan_partitions(engine, last, 3)
    before = count(engine, "predictions")
    scoring.score_partition(engine, settings, "elite", last, "incomplete", parts[0], version)
    with pytest.raises(DataQualityError, match=r"partitions \[1, 2\] are missing"):
        scoring.publish(engine, "elite", last, "incomplete", parts)
    assert count(engine, "predictions") == before


def test_training_on_a_client_sample_uses_only_those_clients(trained):
    engine, settings, last, results = trained
    ids = pd.Series([f"C{i:07d}" for i in range(5000)] * 2)
    sample = training.sample_clients(ids, 1200, random_state=3)
    assert len(sample) == len(set(sample)) == 1200 and set(sample) <= set(ids)
    assert sample == training.sample_clients(ids, 1200, random_state=3)          # fixed for a seed
    assert training.sample_clients(ids, 5000) is None
    # Only the sample's outcome rows are read, in the same order as the whole log's.
    every = read_outcomes(engine, last)
    assert sorted(outcome_clients(engine, last)) == sorted(every["client_id"].unique())
    some = training.sample_clients(outcome_clients(engine, last), 100)
    pd.testing.assert_frame_equal(read_outcomes(engine, last, clients=some),
                                  every[every["client_id"].isin(some)].reset_index(drop=True))
    small = dataclasses.replace(settings, train_max_clients=1000, n_bootstrap=10)
    res = train_tier(engine, small, "fast", as_of=last)
    assert 0 < res.n_train < results["fast"].n_train * 0.75


def test_training_rows_are_thinned_to_the_cap_keeping_validation_and_the_drift_rows(trained):
    engine, settings, last, results = trained
    dates = pd.Series(pd.to_datetime("2025-01-01") + pd.to_timedelta(np.arange(5000) % 400, unit="D"))
    train = np.arange(0, 5000, 2)
    assert training.thin_rows(train, dates, None) is train and training.thin_rows(train, dates, 2500) is train
    some = training.thin_rows(train, dates, 1000, random_state=4)
    assert len(some) == 1000 and set(some) <= set(train) and (np.diff(some) > 0).all()
    assert (some == training.thin_rows(train, dates, 1000, random_state=4)).all()      # fixed for a seed
    since = dt.date(2025, 12, 1)                     # a drift retraining keeps every row since the drift
    recent = train[(dates.iloc[train] >= pd.Timestamp(since)).to_numpy()]
    kept = training.thin_rows(train, dates, 1000, since=since)
    assert len(kept) == 1000 and set(recent) <= set(kept)
    # Through train_tier: the fit sees the cap, the holdout all its rows.
    capped = train_tier(engine, dataclasses.replace(settings, train_max_rows=1000, n_bootstrap=10), "fast",
                        as_of=last)
    full = results["fast"]
    assert full.n_train > 1000 and capped.n_train == 1000 and capped.n_valid == full.n_valid
    with pytest.raises(ConfigError, match="train_max_rows must be at least 1000"):
        Settings(train_max_rows=10)
    assert Settings.from_env({"CLIENT_SCORING_TRAIN_MAX_ROWS": ""}).train_max_rows is None
    assert Settings.from_env({}).train_max_rows == 400_000


def _boosting_in(est):
    """Every boosted model inside a fitted estimator (selected candidates, two-part parts)."""
    if isinstance(est, _SelectedBoosting):
        return [est]
    inner = [*getattr(est, "estimators_", []), getattr(est, "classifier_", None), getattr(est, "regressor_", None)]
    return [b for e in inner if e is not None for b in _boosting_in(e)]


def test_elite_boosting_predicts_through_compiled_trees_exactly_as_scikit_learn(trained):
    """The registry's Elite artifact predicts with its compiled trees; the outputs equal scikit-learn's."""
    engine, settings, last, _ = trained
    registry = Registry(engine, settings.model_store)
    pipeline = registry.load(registry.require_champion("elite"))
    ids = scoring.clients_with_notes(engine, last)
    # Elite serves its own pipeline, Fast's or their mean per target: the pipelines it keeps
    kept = [p for p in (pipeline.simple_, pipeline.rich_) if p is not None]
    # a two-part CLV shares the purchase model (one object in the artifact): each boosted model once,
    # with its own pipeline's features
    in_artifact = {}
    for p in kept:
        Xp = p[:-1].transform(history_as_of(engine, ids, last))
        in_artifact.update({id(b): (b, Xp) for part in (p[-1].purchase_, p[-1].churn_, p[-1].clv_)
                            for b in _boosting_in(part)})
    # Boosted models of each kind the Elite candidates use, fitted here, whatever the artifact chose.
    X = elite_own_pipeline()[:-1].fit_transform(history_as_of(engine, ids, last))
    y = (np.arange(X.shape[0]) % 3 == 0).astype(int)
    value = 100.0 + np.arange(X.shape[0]) % 7
    fitted = [SelectedBoostingClassifier(50).fit(X, y), SelectedBoostingRegressor(50, loss="gamma").fit(X, value),
              SelectedBoostingRegressor(50, loss="poisson").fit(X, value * y)]
    for est, Xe in [*in_artifact.values(), *((f, X) for f in fitted)]:
        assert est.forest_ is not None
        if hasattr(est, "predict_proba"):
            np.testing.assert_allclose(est.predict_proba(Xe), est.model_.predict_proba(est._dense(Xe)), rtol=0,
                                       atol=1e-12)
        else:
            np.testing.assert_allclose(est.predict(Xe), est.model_.predict(est._dense(Xe)), rtol=1e-12)
    # Missing values follow each split's learnt side; rows split over two threads give the same sums.
    reg = fitted[1]
    base = reg._dense(X)
    dense = np.resize(base, (10_000, base.shape[1]))                # rows repeated
    dense[::3, reg.forest_.feature[0]] = np.nan
    np.testing.assert_allclose(reg.forest_.raw(dense, n_threads=2), reg.model_._raw_predict(dense).ravel(),
                               rtol=1e-12)
    before = pipeline.predict(history_as_of(engine, ids, last))
    for est, _ in in_artifact.values():  # an artifact pickled before compiled trees: scikit-learn predicts
        del est.forest_
    np.testing.assert_allclose(pipeline.predict(history_as_of(engine, ids, last)), before, rtol=1e-9)


def test_scoring_history_read_in_one_query_equals_the_history_built_from_the_files(trained, small_world):
    """The scoring read (one SQL query, by id range or by list) gives the features of build_history on the CSVs."""
    from mlcore.features import build_history

    engine, settings, last, _ = trained
    as_of = last - dt.timedelta(days=200)
    elite = Registry(engine, settings.model_store).load(Registry(engine, settings.model_store)
                                                        .require_champion("elite"))
    pipeline = next(p for p in (elite.rich_, elite.simple_) if p is not None)     # a pipeline Elite serves
    notes = pd.read_csv(small_world / "notes.csv", dtype={"note_id": str, "client_id": str}, parse_dates=["date"])
    concepts = pd.read_csv(small_world / "note_concepts.csv", dtype={"note_id": str, "concept_id": str})
    ids = scoring.clients_with_notes(engine, as_of)
    assert set(ids) == set(notes.loc[notes["date"] <= pd.Timestamp(as_of), "client_id"])
    expected = pipeline[:-1].transform(
        build_history(pd.DataFrame({"client_id": ids, "as_of": pd.Timestamp(as_of)}), notes, concepts)).toarray()
    ranged = history_as_of(engine, ids, as_of, ids.iloc[0], ids.iloc[-1])
    listed = history_as_of(engine, ids.iloc[::-1].reset_index(drop=True), as_of)      # any order of the list
    assert len(ranged.notes) == (notes["date"] <= pd.Timestamp(as_of)).sum()
    np.testing.assert_allclose(pipeline[:-1].transform(ranged).toarray(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pipeline[:-1].transform(listed).toarray(), expected[::-1], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="not among the samples"):
        history_as_of(engine, ids.iloc[1:-1].reset_index(drop=True), as_of, ids.iloc[0], ids.iloc[-1])


def test_binary_copy_writes_exact_values_and_refuses_what_it_cannot_encode(trained):
    """Rows COPY'd in binary read back bit for bit (floats, dates, UTF-8 text, integers); nulls are refused."""
    from mlcore.db import copy_rows_binary

    engine, *_ = trained
    rng = np.random.default_rng(0)
    p = rng.random((1000, 3))
    p[0] = [0.0, 1.0, 5e-324]                          # the extremes of the ranges, a subnormal CLV
    rows = pd.DataFrame({"scored_for": pd.Timestamp("1999-12-31"), "tier": "fast", "model_version": 1,
                         "client_id": [f"clïent-{i}" * (i % 4 + 1) for i in range(1000)], "run_id": "binary",
                         "purchase_likelihood": p[:, 0], "churn_risk": p[:, 1], "predicted_clv": p[:, 2]})
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        copy_rows_binary(cur, rows, "predictions")
        cur.execute("SELECT scored_for, client_id, model_version, purchase_likelihood, churn_risk, predicted_clv "
                    "FROM predictions WHERE run_id = 'binary'")
        back = pd.DataFrame(cur.fetchall(), columns=["d", "client_id", "v", "p", "c", "clv"]).set_index("client_id")
        back = back.loc[rows["client_id"]]
        assert (back["d"] == dt.date(1999, 12, 31)).all() and (back["v"] == 1).all()
        assert np.array_equal(back[["p", "c", "clv"]].to_numpy(float), p)
        cur.execute("SAVEPOINT s")
        with pytest.raises(ValueError, match="nulls"):
            copy_rows_binary(cur, rows.assign(churn_risk=np.nan), "predictions")
        with pytest.raises(TypeError, match="created_at"):
            copy_rows_binary(cur, rows.assign(created_at=pd.Timestamp("2025-01-01")), "predictions")
    finally:
        raw.rollback()
        raw.close()


def test_boosting_ranks_constant_columns_last_without_warning():
    """A column constant in the training window is ranked last, dense or sparse, without a warning:
    rounding gave it an F above a real column's in f_classif, and a sqrt of a negative variance in
    f_regression."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.random(5_000), np.full(5_000, 0.1), rng.random(5_000)])
    value = 100.0 * (1 + X[:, 2]) * (rng.random(5_000) < 0.2 + 0.6 * X[:, 0])
    for matrix in (X, sp.csr_matrix(X)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for est in (SelectedBoostingRegressor(2, loss="poisson", max_iter=20),
                        SelectedBoostingClassifier(2, max_iter=20)):
                est.fit(matrix, (value > 0).astype(int) if hasattr(est, "predict_proba") else value)
                assert est.selector_.get_support().tolist() == [True, False, True]
