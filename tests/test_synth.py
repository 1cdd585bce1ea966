"""The synthetic world: contract format, realistic shape, known truth, drift."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlcore.demo import realized_outcomes, truth_ceiling
from mlcore.exceptions import ConfigError
from mlcore.ingest import ingest_file, read_contract_csv
from mlcore.synth import KINDS, WorldSpec, world_files, write_world
from mlcore.taxonomy import BUCKETS, taxonomy


@pytest.fixture(scope="module")
def drift_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("drift")
    write_world(WorldSpec(n_clients=3000, days=730, seed=5, drift_day=450), out)
    return out


def test_files_follow_the_data_contract(small_world):
    for kind, name in (("notes", "notes.csv"), ("concepts", "note_concepts.csv"), ("outcomes", "outcomes.csv")):
        frame = read_contract_csv(kind, (small_world / name).read_bytes(), name)   # raises on any violation
        assert len(frame) > 1000


def test_world_shape_is_realistic(small_world):
    tax = taxonomy()
    assert len(tax) >= 250 and set(tax["bucket"]) == set(BUCKETS)
    concepts = pd.read_csv(small_world / "note_concepts.csv")
    notes = pd.read_csv(small_world / "notes.csv")
    truth = pd.read_csv(small_world / "truth.csv")
    outcomes = pd.read_csv(small_world / "outcomes.csv")
    assert 6 <= len(concepts) / 2000 <= 14                     # about ten concept rows per client
    assert notes["language"].nunique() >= 5
    assert (concepts["matched_alias"] != concepts["concept_id"].str.replace("_", " ")).any()   # translated aliases
    with_notes = truth["has_notes"].to_numpy()
    assert 0.10 <= outcomes["churned"][with_notes].mean() <= 0.20
    ltv = outcomes.loc[outcomes["lifetime_value"] > 0, "lifetime_value"]
    assert ltv.quantile(0.99) > 5 * ltv.median()                # heavy tail
    assert ((outcomes["lifetime_value"] > 0) == (outcomes["purchased"] == 1)).all()
    assert pd.to_datetime(outcomes["date"]).dt.to_period("M").nunique() >= 18   # logged continuously


def test_same_seed_same_world(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_world(WorldSpec(n_clients=300, seed=3, chunk_clients=100), a)
    write_world(WorldSpec(n_clients=300, seed=3, chunk_clients=100), b)
    for name in ("notes.csv", "note_concepts.csv", "outcomes.csv", "truth.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    notes = pd.read_csv(a / "notes.csv")
    assert notes["note_id"].is_unique and notes["client_id"].nunique() > 250
    # purchases draw from streams of their own: the same seed's notes and concepts, and again the same
    p, q = tmp_path / "p", tmp_path / "q"
    for out in (p, q):
        write_world(WorldSpec(n_clients=300, seed=3, chunk_clients=100, purchases=True), out)
    for name in ("notes.csv", "note_concepts.csv"):
        assert (p / name).read_bytes() == (a / name).read_bytes()
    for name in ("transactions.csv", "truth.csv"):
        assert (p / name).read_bytes() == (q / name).read_bytes()
    assert not (p / "outcomes.csv").exists()


def test_truth_is_informative_and_drift_changes_the_relationship(drift_world):
    truth = pd.read_csv(drift_world / "truth.csv")
    outcomes = pd.read_csv(drift_world / "outcomes.csv")
    t = truth.merge(outcomes, on=["client_id", "date"])
    t = t[t["has_notes"]]
    for regime in (0, 1):
        r = t[t["regime"] == regime]
        assert roc_auc_score(r["purchased"], r["p_purchase"]) > 0.65
        assert roc_auc_score(r["churned"], r["p_churn"]) > 0.65
    assert set(truth["regime"]) == {0, 1}
    assert pd.to_datetime(truth.loc[truth["regime"] == 1, "date"]).min() == pd.Timestamp("2024-01-01") + \
        pd.Timedelta(days=450)


def test_drift_shifts_the_concept_mix(drift_world):
    notes = pd.read_csv(drift_world / "notes.csv", parse_dates=["date"])
    concepts = pd.read_csv(drift_world / "note_concepts.csv").merge(notes[["note_id", "date"]], on="note_id")
    after = concepts["date"] >= pd.Timestamp("2024-01-01") + pd.Timedelta(days=450)
    p = concepts[~after]["concept_id"].value_counts(normalize=True)
    q = concepts[after]["concept_id"].value_counts(normalize=True)
    p, q = p.align(q, fill_value=1e-4)
    psi = float(((q - p) * np.log(q / p)).sum())
    assert psi > 0.1


@pytest.mark.parametrize("kwargs", [{"n_clients": 0}, {"days": 50}, {"drift_day": 900}, {"kind": "lunar"}])
def test_bad_world_parameters_are_refused(kwargs):
    with pytest.raises(ConfigError):
        WorldSpec(**kwargs)


def test_a_covariate_drift_changes_what_the_notes_show_not_what_they_mean(tmp_path):
    """drift_flip_share=0 keeps every concept's effect; drift_concepts_per_note thins the notes from the drift day."""
    from mlcore.synth import _draw_params

    params = _draw_params(np.random.default_rng(1), taxonomy(), 0.0)
    assert np.array_equal(params.w_purchase[0], params.w_purchase[1])
    write_world(WorldSpec(n_clients=800, days=400, seed=2, drift_day=200, drift_flip_share=0.0,
                          drift_concepts_per_note=1.5), tmp_path)
    notes = pd.read_csv(tmp_path / "notes.csv", parse_dates=["date"])
    per_note = pd.read_csv(tmp_path / "note_concepts.csv").groupby("note_id").size()
    after = notes["date"] >= pd.Timestamp("2024-01-01") + pd.Timedelta(days=200)
    mean_before = per_note.reindex(notes.loc[~after, "note_id"]).mean()
    mean_after = per_note.reindex(notes.loc[after, "note_id"]).mean()
    assert mean_before > 2.5 and mean_after < 1.8


def _zoo_world(tmp_path_factory, kind):
    out = tmp_path_factory.getbasetemp() / f"zoo-{kind}"
    if not (out / "truth.csv").exists():
        write_world(WorldSpec(n_clients=2500, days=730, seed=3, kind=kind), out)
    frames = {n: pd.read_csv(out / f"{n}.csv", parse_dates=["date"] if n != "note_concepts" else None)
              for n in ("notes", "note_concepts", "outcomes", "truth")}
    return out, frames


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_world_kind_follows_the_contract_and_its_truth_is_informative(tmp_path_factory, kind):
    out, f = _zoo_world(tmp_path_factory, kind)
    for name, contract in (("notes", "notes"), ("note_concepts", "concepts"), ("outcomes", "outcomes")):
        read_contract_csv(contract, (out / f"{name}.csv").read_bytes(), name)
    t = f["truth"].merge(f["outcomes"], on=["client_id", "date"])
    t = t[t["has_notes"]]
    assert roc_auc_score(t["purchased"], t["p_purchase"]) > 0.65
    assert roc_auc_score(t["churned"], t["p_churn"]) > 0.65
    assert np.corrcoef(t["lifetime_value"], t["expected_clv"])[0, 1] ** 2 > 0.1


def _recency_effect(f) -> float:
    """Spearman correlation between days since the last note (as of date - 90) and the true churn risk."""
    t = f["truth"][f["truth"]["has_notes"]].sort_values("date")
    t = t.assign(as_of=t["date"] - pd.Timedelta(days=90))
    notes = f["notes"].sort_values("date").rename(columns={"date": "note_date"})
    last = pd.merge_asof(t, notes[["client_id", "note_date"]], left_on="as_of", right_on="note_date", by="client_id")
    age = (last["as_of"] - last["note_date"]).dt.days
    return float(pd.Series(age).corr(last["p_churn"], method="spearman"))


def test_world_kinds_differ_in_what_drives_the_outcomes(tmp_path_factory):
    f = {k: _zoo_world(tmp_path_factory, k)[1] for k in ("baseline", "strong_recency", "no_recency", "sparse",
                                                          "dense", "value_apart")}
    effect = {k: _recency_effect(f[k]) for k in ("baseline", "strong_recency", "no_recency")}
    assert effect["strong_recency"] > effect["baseline"] + 0.05 and effect["baseline"] > effect["no_recency"] + 0.3
    per_note = {k: len(f[k]["note_concepts"]) / len(f[k]["notes"]) for k in ("sparse", "baseline", "dense")}
    notes = {k: len(f[k]["notes"]) for k in ("sparse", "baseline", "dense")}
    assert per_note["sparse"] < per_note["baseline"] < per_note["dense"] and notes["sparse"] < notes["baseline"] < notes["dense"]
    cv = {k: (lambda v: v.std() / v.mean())(f[k]["outcomes"].query("lifetime_value > 0")["lifetime_value"])
          for k in ("baseline", "value_apart")}
    assert cv["value_apart"] > 1.25 * cv["baseline"]                       # heavier tails (1.83 vs 1.30)


PURCHASES = WorldSpec(n_clients=2000, days=730, seed=9, purchases=True)


@pytest.fixture(scope="module")
def purchase_world(tmp_path_factory):
    """A 2,000-client world with transactions: its files, and truth.csv beside the derived outcomes."""
    out = tmp_path_factory.mktemp("purchases")
    write_world(PURCHASES, out)
    truth = pd.read_csv(out / "truth.csv", parse_dates=["date"])
    both = truth.merge(realized_outcomes(out, PURCHASES), on=["client_id", "date"], how="outer", indicator=True)
    return out, both


def test_a_purchase_world_writes_transactions_instead_of_outcomes(purchase_world):
    out, _ = purchase_world
    assert not (out / "outcomes.csv").exists()
    tx = read_contract_csv("transactions", (out / "transactions.csv").read_bytes(), "transactions.csv")
    assert (tx["amount"] > 0).all() and tx["transaction_id"].is_unique
    assert tx["store"].nunique() >= 5 and tx["category"].nunique() >= 5 and set(tx["quantity"]) == {1, 2}
    per_day = tx.groupby(["client_id", "date"])["amount"].sum()
    assert per_day.quantile(0.99) > 5 * per_day.median()                   # heavy tail
    buyers, noted = set(tx["client_id"]), set(pd.read_csv(out / "notes.csv")["client_id"])
    assert len(buyers - noted) > 50 and len(noted - buyers) > 50           # purchases only, notes only


def test_the_purchase_truth_is_on_the_derived_rows_and_calibrated(purchase_world):
    _, both = purchase_world
    assert (both["_merge"] == "both").all()                    # exactly the rows the label policy derives
    assert both["known"].all() and 0.8 < both["has_notes"].mean() < 0.98
    assert abs(both["p_purchase"].mean() - 0.35) < 0.03
    for label, truth in (("purchased", "p_purchase"), ("churned", "p_churn")):
        assert abs(both[label].mean() - both[truth].mean()) < 0.02
        bins = pd.qcut(both[truth].rank(method="first"), 5, labels=False)
        by_bin = both.groupby(bins)[[label, truth]].mean()
        assert (by_bin[label] - by_bin[truth]).abs().max() < 0.04              # calibrated across the range
    assert abs(both["lifetime_value"].mean() / both["expected_clv"].mean() - 1) < 0.1
    assert roc_auc_score(both["purchased"], both["p_purchase"]) > 0.72
    assert roc_auc_score(both["churned"], both["p_churn"]) > 0.85


def test_purchase_history_and_notes_both_drive_purchases(purchase_world):
    out, both = purchase_world
    days = pd.read_csv(out / "transactions.csv", parse_dates=["date"])[["client_id", "date"]].drop_duplicates()
    rows = both.assign(as_of=both["date"] - pd.Timedelta(days=PURCHASES.horizon_days)).sort_values("as_of")
    last = pd.merge_asof(rows, days.rename(columns={"date": "last"}).sort_values("last"), left_on="as_of",
                         right_on="last", by="client_id")
    age = (last["as_of"] - last["last"]).dt.days
    assert roc_auc_score(last["purchased"], -age.fillna(10_000)) > 0.58    # days since the last purchase alone
    never = last[age.isna()]                                                 # known by their notes only
    assert roc_auc_score(never["purchased"], never["p_purchase"]) > 0.62


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_world_kind_has_purchases_on_demand(tmp_path, kind):
    spec = WorldSpec(n_clients=600, days=400, seed=4, kind=kind, purchases=True)
    write_world(spec, tmp_path)
    read_contract_csv("transactions", (tmp_path / "transactions.csv").read_bytes(), "transactions.csv")
    truth = pd.read_csv(tmp_path / "truth.csv", parse_dates=["date"])
    derived = realized_outcomes(tmp_path, spec)
    assert len(truth) > 1000 and len(truth.merge(derived, on=["client_id", "date"])) == len(truth) == len(derived)


def test_a_purchase_world_loads_and_trains(engine, settings, purchase_world):
    """Notes, concepts and transactions through ingest_file; Fast learns from the derived outcomes and
    its holdout rows are the truth's (the clients known by a note or a purchase)."""
    from mlcore.training import train_tier

    out, both = purchase_world
    for kind, name in world_files(purchases=True):
        ingest_file(engine, kind, out / name)
    res = train_tier(engine, settings, "fast", as_of=PURCHASES.end, reason="manual")
    start = PURCHASES.end - pd.Timedelta(days=settings.valid_days - 1)
    holdout = both[both["date"] >= pd.Timestamp(start)]
    assert res.n_valid == len(holdout) and res.n_train > 10_000
    best = truth_ceiling(both, start, PURCHASES.end)
    assert 0.65 < res.metrics["purchase"]["auc"]["value"] <= best["purchase"] + 0.02
