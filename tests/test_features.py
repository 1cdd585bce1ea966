"""Features: point-in-time correctness and behaviour of the transformers on tiny frames."""
import numpy as np
import pandas as pd
import pytest

from mlcore.features import (ActivityStats, CoOccurrence, ConceptDiversity, ConceptTfidf, RecencyConcepts,
                             build_history)
from mlcore.tiers import make_pipeline_for
from mlcore.training import training_set

NOTES = pd.DataFrame({"note_id": ["a", "b", "c", "d"], "client_id": ["c1", "c1", "c2", "c2"],
                      "date": pd.to_datetime(["2025-01-01", "2025-03-01", "2025-02-01", "2025-02-10"])})
CONCEPTS = pd.DataFrame({"note_id": ["a", "a", "b", "c", "d", "d"],
                         "concept_id": ["golf", "watches", "golf", "watches", "golf", "gift_birthday"],
                         "confidence": [1.0, 0.5, 1.0, 0.9, 1.0, 0.8]})
SAMPLES = pd.DataFrame({"client_id": ["c1", "c2", "c3"], "as_of": pd.to_datetime(["2025-03-01"] * 3)})
TRANSFORMERS = [ConceptTfidf(min_count=1), RecencyConcepts(min_count=1), ActivityStats(), ConceptDiversity(),
                CoOccurrence(n_pairs=5)]


def test_history_keeps_rows_on_or_before_as_of_only():
    h = build_history(SAMPLES.assign(as_of=pd.to_datetime(["2025-02-28", "2025-02-01", "2025-03-01"])),
                      NOTES, CONCEPTS)
    assert sorted(h.notes["row"].tolist()) == [0, 1]          # c1: note a only; c2: note c (same day) only
    assert h.notes["age"].tolist() == [58, 0]
    assert len(h.concepts) == 3 and (h.concepts["age"] >= 0).all()


@pytest.mark.parametrize("transformer", TRANSFORMERS, ids=lambda t: type(t).__name__)
def test_note_after_as_of_changes_no_feature(transformer):
    base = build_history(SAMPLES, NOTES, CONCEPTS)
    late_notes = pd.concat([NOTES, pd.DataFrame({"note_id": ["z"], "client_id": ["c1"],
                                                 "date": pd.to_datetime(["2025-03-02"])})])
    late_concepts = pd.concat([CONCEPTS, pd.DataFrame({"note_id": ["z", "z"], "concept_id": ["golf", "churn_x"],
                                                       "confidence": [1.0, 1.0]})])
    late = build_history(SAMPLES, late_notes, late_concepts)
    a = dense(transformer.fit(base).transform(base))
    assert a.shape[0] == 3
    assert np.array_equal(a, dense(transformer.transform(late)))
    # refitting on the later data learns nothing from the late note either
    assert np.array_equal(a, dense(transformer.fit(late).transform(late)))


def dense(x):
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


def test_same_day_note_counts_but_not_the_next_day():
    h = build_history(SAMPLES.iloc[[0]], NOTES, CONCEPTS)
    stats = ActivityStats().fit(h).transform(h)
    assert stats[0, 0] == pytest.approx(np.log1p(2))         # notes a and b (b is dated on as_of)
    assert stats[0, 1] == pytest.approx(0.0)                  # days since last note


def test_training_rows_ignore_notes_dated_after_date_minus_horizon():
    outcomes = pd.DataFrame({"client_id": ["c1", "c2"], "date": pd.to_datetime(["2025-05-30", "2025-05-30"]),
                             "purchased": [1, 0], "churned": [0, 1], "lifetime_value": [10.0, 0.0]})
    ts = training_set(outcomes, NOTES, CONCEPTS, horizon_days=90)   # as_of 2025-03-01
    later = pd.concat([NOTES, pd.DataFrame({"note_id": ["z"], "client_id": ["c1"],
                                            "date": pd.to_datetime(["2025-03-02"])})])
    ts_late = training_set(outcomes, later, pd.concat([CONCEPTS, pd.DataFrame(
        {"note_id": ["z"], "concept_id": ["golf"], "confidence": [1.0]})]), horizon_days=90)
    pd.testing.assert_frame_equal(ts.history.notes, ts_late.history.notes)
    pd.testing.assert_frame_equal(ts.history.concepts, ts_late.history.concepts)
    assert np.array_equal(ts.y, ts_late.y)


def test_clients_without_notes_as_of_are_not_training_rows():
    outcomes = pd.DataFrame({"client_id": ["c1", "c9"], "date": pd.to_datetime(["2025-05-30", "2025-05-30"]),
                             "purchased": [1, 0], "churned": [0, 1], "lifetime_value": [10.0, 0.0]})
    ts = training_set(outcomes, NOTES, CONCEPTS, horizon_days=90)
    assert len(ts.history) == 1 and ts.history.samples["client_id"].tolist() == ["c1"]


@pytest.mark.parametrize("tier", ["fast", "elite"])
def test_pipelines_predict_in_range_and_refuse_unfitted(tier):
    rng = np.random.default_rng(0)
    n = 400
    notes = pd.DataFrame({"note_id": [f"n{i}" for i in range(n)], "client_id": [f"c{i % 200}" for i in range(n)],
                          "date": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 60, n), unit="D")})
    concepts = pd.DataFrame({"note_id": np.repeat(notes["note_id"], 2).to_numpy(),
                             "concept_id": rng.choice(["golf", "watches", "gift_birthday", "budget"], 2 * n),
                             "confidence": rng.uniform(0.5, 1, 2 * n)})
    samples = pd.DataFrame({"client_id": [f"c{i}" for i in range(200)], "as_of": pd.Timestamp("2025-03-15")})
    h = build_history(samples, notes, concepts)
    y = np.column_stack([rng.integers(0, 2, 200), rng.integers(0, 2, 200), rng.gamma(2, 100, 200)])
    y[:, 2] *= y[:, 0]
    pipe = make_pipeline_for(tier)
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        pipe.predict(h)
    pred = pipe.fit(h, y).predict(h)
    assert pred.shape == (200, 3)
    assert ((pred[:, :2] >= 0) & (pred[:, :2] <= 1)).all() and (pred[:, 2] >= 0).all()
