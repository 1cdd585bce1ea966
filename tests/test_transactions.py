"""Transactions: the contract and its load, labels derived from them, the BG/NBD x Gamma-Gamma baseline on CDNOW."""
import datetime as dt
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlcore.clv_baseline import fit_customer_base, predict_customer_base, purchase_days, rfm_summary
from mlcore.datasets import CALIBRATION_END, write_cdnow
from mlcore.exceptions import ConfigError, InputDataError
from mlcore.ingest import ingest_file
from mlcore.labels import LabelPolicy, combine, derive_outcomes

GOOD = ("client_id,date,amount,transaction_id,store,category,quantity\n"
        "c1,2025-01-02,120.50,t1,paris,leather,1\n"
        "c1,2025-01-02,120.50,t2,paris,leather,1\n"       # the same item twice: two ids, two rows
        "c1,2025-02-10,-120.50,t3,paris,leather,-1\n"     # a return
        "c2,2025-03-01,990,,london,,\n"
        "c2,2025-03-02,0,,london,gift wrap,1\n")          # a free item


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def rows(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT client_id, date::text, amount, transaction_id, quantity FROM transactions "
                                    "ORDER BY client_id, date, transaction_id")).all()


def test_transactions_load_once_with_returns_and_free_items(engine, tmp_path):
    r = ingest_file(engine, "transactions", write(tmp_path, "t.csv", GOOD))
    assert (r.rows_in_file, r.rows_inserted, r.clients) == (5, 5, ("c1", "c2"))
    assert ingest_file(engine, "transactions", tmp_path / "t.csv").rows_inserted == 0
    assert [tuple(x) for x in rows(engine)][:3] == [("c1", "2025-01-02", 120.5, "t1", 1), ("c1", "2025-01-02", 120.5, "t2", 1),
                                                     ("c1", "2025-02-10", -120.5, "t3", -1)]
    # column aliases of common exports
    r = ingest_file(engine, "transactions", write(tmp_path, "a.csv", "customer_id,date,value,order_id,qty\nc3,2025-01-05,10,o1,2\n"))
    assert r.rows_inserted == 1


@pytest.mark.parametrize("name, text, expected", [
    ("amount", "client_id,date,amount\nc1,2025-01-02,abc\n", ["row 2, column 'amount'", "found 'abc'"]),
    ("huge", "client_id,date,amount\nc1,2025-01-02,1e20\n", ["at most 1e+12 in size"]),
    ("quantity", "client_id,date,amount,quantity\nc1,2025-01-02,5,1.5\n", ["column 'quantity'", "a whole number other than 0"]),
    ("zero quantity", "client_id,date,amount,quantity\nc1,2025-01-02,5,0\n", ["column 'quantity'"]),
    ("date", "client_id,date,amount\nc1,2025-13-02,5\n", ["column 'date'"]),
    ("missing", "client_id,amount\nc1,5\n", ["missing required column(s) date"]),
    ("same id", "client_id,date,amount,transaction_id\nc1,2025-01-02,5,t1\nc1,2025-01-03,6,t1\n",
     ["row 3, column 'transaction_id' repeats a transaction_id of the file with other values", "row 2"]),
    ("identical", "client_id,date,amount\nc1,2025-01-02,5\nc1,2025-01-02,5\n", ["rows 2, 3 repeat the key"]),
])
def test_bad_transaction_files_are_refused_whole_with_the_row_named(engine, tmp_path, name, text, expected):
    with pytest.raises(InputDataError) as err:
        ingest_file(engine, "transactions", write(tmp_path, f"{name.replace(' ', '_')}.csv", text))
    for part in expected:
        assert part in str(err.value)
    assert rows(engine) == []


def test_a_transaction_id_loaded_with_other_values_is_a_conflict(engine, tmp_path):
    ingest_file(engine, "transactions", write(tmp_path, "t.csv", GOOD))
    with pytest.raises(InputDataError, match="conflicts with a transaction already in the database"):
        ingest_file(engine, "transactions", write(tmp_path, "u.csv", "client_id,date,amount,transaction_id\n"
                                                                     "c1,2025-01-02,99,t1\nc9,2025-01-02,5,t9\n"))
    assert len(rows(engine)) == 5


def _tx(*lines):
    return pd.DataFrame(lines, columns=["client_id", "date", "amount"]).assign(date=lambda f: pd.to_datetime(f["date"]))


def test_labels_follow_the_policy_on_a_hand_checked_example():
    tx = _tx(("a", "2025-01-10", 100.0), ("a", "2025-04-20", 50.0), ("a", "2025-04-20", -20.0),
             ("b", "2025-01-15", 300.0),                                   # active, then lapses
             ("c", "2025-04-01", -40.0), ("c", "2025-01-01", 10.0))       # a returns-only day is no purchase
    policy = LabelPolicy(horizon_days=90, every_days=30)
    out = derive_outcomes(tx, policy, until=dt.date(2025, 6, 30)).set_index(["client_id", "date"])
    assert set(out.index.get_level_values("date")) == {dt.date(2025, 4, 1), dt.date(2025, 5, 1),
                                                       dt.date(2025, 5, 31), dt.date(2025, 6, 30)}
    # 2025-06-30: window (2025-04-01, 2025-06-30]; active window (2025-01-01, 2025-04-01]
    assert out.loc[("a", dt.date(2025, 6, 30))].tolist() == [1, 0, 30.0]     # net of the return, same day
    assert out.loc[("b", dt.date(2025, 6, 30))].tolist() == [0, 1, 0.0]      # bought 2025-01-15, then nothing
    assert out.loc[("c", dt.date(2025, 6, 30))].tolist() == [0, 0, 0.0]      # last purchase before the active window
    # 2025-04-01: only c was known by 2025-01-01; it bought that day (active), then only returned
    assert out.xs(dt.date(2025, 4, 1), level="date").index.tolist() == ["c"]
    assert out.loc[("c", dt.date(2025, 4, 1))].tolist() == [0, 1, 0.0]


def test_labels_are_point_in_time_and_an_explicit_log_takes_precedence():
    rng = np.random.default_rng(0)
    n = 3000
    tx = pd.DataFrame({"client_id": rng.choice([f"c{i}" for i in range(300)], n),
                       "date": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 500, n), unit="D"),
                       "amount": rng.gamma(2, 50, n) * np.where(rng.random(n) < 0.05, -1, 1)})
    policy = LabelPolicy()
    until = dt.date(2025, 5, 1)
    base = derive_outcomes(tx, policy, until=until)
    later = pd.concat([tx, pd.DataFrame({"client_id": ["c1", "c2"], "date": pd.to_datetime(["2025-05-02", "2025-05-20"]),
                                         "amount": [1e6, 5.0]})])
    again = derive_outcomes(later, policy, until=until)
    pd.testing.assert_frame_equal(base, again)                 # nothing dated after a row's date changes it
    explicit = pd.DataFrame({"client_id": ["c1"], "date": [base["date"].max()], "purchased": [1], "churned": [0],
                             "lifetime_value": [7.0]})
    both = combine(explicit, base)
    assert (pd.to_datetime(both["date"]).dt.date == base["date"].max()).sum() == 1
    assert len(both) == len(base) - (base["date"] == base["date"].max()).sum() + 1
    with pytest.raises(ConfigError, match="every_days must be an integer >= 1"):
        LabelPolicy(every_days=0)


def test_a_bg_nbd_fit_that_does_not_converge_is_an_input_error(monkeypatch):
    """Training records the baseline as skipped on an InputDataError; lifetimes' ConvergenceError stopped it
    (seen on a sparse synthetic world with purchases at 20,000 clients)."""
    from mlcore.clv_baseline import _lifetimes
    lt = _lifetimes()

    def diverge(self, *args, **kwargs):
        raise lt.utils.ConvergenceError("\nThe model did not converge. Try adding a larger penalizer.")
    monkeypatch.setattr(lt.BetaGeoFitter, "fit", diverge)
    summary = pd.DataFrame({"frequency": [0, 1, 2] * 5, "recency": [0.0, 3.0, 9.0] * 5, "T": [10.0] * 15,
                            "monetary_value": [0.0, 5.0, 7.0] * 5})
    with pytest.raises(InputDataError, match="BG/NBD did not converge on 15 clients .The model did not converge"):
        fit_customer_base(summary)


@pytest.mark.slow
def test_cdnow_sample_through_the_cli_reproduces_the_published_estimates(engine, tmp_path):
    """The 2,357-customer CDNOW sample loaded with `mlcore ingest transactions`, read back from the database:
    BG/NBD and Gamma-Gamma on the 39-week calibration period give Fader, Hardie & Lee's estimates."""
    path = write_cdnow(tmp_path / "cdnow_sample.csv", "sample")
    env = {**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    done = subprocess.run([sys.executable, "-m", "mlcore.cli", "ingest", "transactions", str(path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "6919 rows read, 6919 new rows loaded into transactions" in done.stdout
    with engine.connect() as conn:
        tx = pd.read_sql(sa.text("SELECT client_id, date, amount FROM transactions"), conn)
    model = fit_customer_base(rfm_summary(purchase_days(tx), dt.date.fromisoformat(CALIBRATION_END)))
    bg, gg = model.params["bgnbd"], model.params["gamma_gamma"]
    assert {k: round(v, 2) for k, v in bg.items()} == {"r": 0.24, "alpha": 4.41, "a": 0.79, "b": 2.43}
    assert {k: round(v, 3) for k, v in bg.items()} == {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert {k: round(v, 2) for k, v in gg.items()} == {"p": 6.25, "q": 3.74, "v": 15.44}
    assert model.params["n_clients"] == 2357 and model.params["n_repeat_buyers"] == 946
    pred = predict_customer_base(model, rfm_summary(purchase_days(tx), dt.date.fromisoformat(CALIBRATION_END)), 90)
    assert (pred["expected_purchases"] >= 0).all() and pred["p_alive"].between(0, 1).all()


def test_purchase_features_see_nothing_dated_after_as_of():
    from mlcore.features import PurchaseHistory, build_history
    samples = pd.DataFrame({"client_id": ["a", "b"], "as_of": pd.to_datetime(["2025-03-01", "2025-03-01"])})
    empty_notes = pd.DataFrame(columns=["note_id", "client_id", "date"])
    empty_concepts = pd.DataFrame(columns=["note_id", "concept_id", "confidence"])
    days = pd.DataFrame({"client_id": ["a", "a", "a", "b"], "date": pd.to_datetime(["2025-01-01", "2025-02-01",
                                                                                   "2025-03-01", "2025-01-10"]),
                         "amount": [10.0, 20.0, 30.0, 5.0]})
    later = pd.concat([days, pd.DataFrame({"client_id": ["a", "b"], "date": pd.to_datetime(["2025-03-02", "2025-06-01"]),
                                           "amount": [1e6, 1e6]})])
    f = PurchaseHistory().fit(None)
    x = f.transform(build_history(samples, empty_notes, empty_concepts, days))
    np.testing.assert_array_equal(x, f.transform(build_history(samples, empty_notes, empty_concepts, later)))
    names = list(f.get_feature_names_out())
    a = dict(zip(names, x[0]))
    assert a["has_purchases"] == 1 and a["log_days_since_purchase"] == 0.0          # the same day counts
    assert a["log_purchase_days"] == pytest.approx(np.log1p(3)) and a["log_spend"] == pytest.approx(np.log1p(60))
    assert a["log_purchase_tenure"] == pytest.approx(np.log1p(59))
    assert dict(zip(names, x[1]))["log_purchase_days"] == pytest.approx(np.log1p(1))


def test_the_customer_base_block_is_the_published_model_on_each_sample_as_of_its_date(tmp_path):
    """Elite's BG/NBD x GG features: the RFM of each sample as of its own date, nothing later."""
    from mlcore.features import CustomerBase, build_history, purchase_summary
    days = purchase_days(pd.read_csv(write_cdnow(tmp_path / "s.csv", "sample"), parse_dates=["date"]))
    cal_end = pd.Timestamp(CALIBRATION_END)
    clients = np.sort(days["client_id"].unique())
    no_notes = pd.DataFrame(columns=["note_id", "client_id", "date"])
    no_concepts = pd.DataFrame(columns=["note_id", "concept_id", "confidence"])
    samples = pd.DataFrame({"client_id": clients, "as_of": cal_end})
    history = build_history(samples, no_notes, no_concepts, days)
    got = purchase_summary(history).set_index(pd.Index(clients, name="client_id"))
    want = rfm_summary(days, cal_end.date())
    pd.testing.assert_frame_equal(got[["frequency", "recency", "T", "monetary_value"]],
                                  want[["frequency", "recency", "T", "monetary_value"]], check_dtype=False)
    block = CustomerBase(horizon_days=90).fit(history)
    assert block.params_["bgnbd"]["r"] == pytest.approx(0.243, abs=0.001)   # the published estimate, as the baseline's
    x = block.transform(history)
    assert x.shape == (len(clients), 5) and np.isfinite(x).all() and (x[:, 0] == 1).all()
    # a sample's features ignore every purchase dated after its as_of
    later = pd.concat([days, pd.DataFrame({"client_id": clients, "date": cal_end + pd.Timedelta(days=1),
                                           "amount": 1e4})])
    np.testing.assert_array_equal(x, block.transform(build_history(samples, no_notes, no_concepts, later)))
    # a sample without purchases is zero, and so is every sample when there was nothing to fit on
    none = build_history(pd.DataFrame({"client_id": ["nobody"], "as_of": [cal_end]}), no_notes, no_concepts, days)
    assert (block.transform(none) == 0).all()
    assert (CustomerBase().fit(none).transform(history) == 0).all()


@pytest.mark.slow
def test_both_tiers_train_on_transactions_alone_beside_the_customer_base_baseline(engine, settings, tmp_path):
    """No notes, no outcome log: labels come from the CDNOW sample's purchases; BG/NBD x GG is recorded beside."""
    ingest_file(engine, "transactions", write_cdnow(tmp_path / "cdnow_sample.csv", "sample"))
    from mlcore.training import train_tier
    for tier in ("fast", "elite"):
        res = train_tier(engine, settings, tier, as_of=dt.date(1998, 6, 30), reason="manual")
        m = res.metrics
        assert res.n_train > 1000 and m["purchase"]["auc"]["value"] > 0.7
        base = m["purchase"]["bgnbd_baseline"]
        auc = base["auc"]
        assert auc["lo"] <= auc["value"] <= auc["hi"] and 0.6 < auc["value"] < 0.95
        assert set(m["clv"]["bgnbd_gg_baseline"]) >= {"r2", "mae", "score"}
        assert base["params"]["n_clients"] == 2357          # every sample customer first bought in early 1997


def test_scoring_reads_the_purchase_days_that_training_built(engine, tmp_path):
    """The scoring path's history (one query per partition) carries the same purchase days as the training one."""
    from mlcore.features import build_history
    from mlcore.history_io import history_as_of, read_transactions
    ingest_file(engine, "transactions", write(tmp_path, "t.csv", GOOD))
    as_of = dt.date(2025, 2, 28)
    clients = pd.Series(["c1", "c2"])
    served = history_as_of(engine, clients, as_of)
    built = build_history(pd.DataFrame({"client_id": clients, "as_of": pd.Timestamp(as_of)}),
                          pd.DataFrame(columns=["note_id", "client_id", "date"]),
                          pd.DataFrame(columns=["note_id", "concept_id", "confidence"]),
                          purchase_days(read_transactions(engine, as_of)))
    pd.testing.assert_frame_equal(served.purchases, built.purchases)
    assert served.purchases["row"].tolist() == [0] and served.purchases["amount"].tolist() == [241.0]


@pytest.mark.slow
def test_a_client_known_only_by_transactions_is_scored_and_partitions_cover_everyone(engine, settings, tmp_path):
    """CDNOW sample (no notes): the trained champion scores every customer, in one run or in partitions."""
    from mlcore import scoring
    from mlcore.training import train_tier
    ingest_file(engine, "transactions", write_cdnow(tmp_path / "cdnow_sample.csv", "sample"))
    ingest_file(engine, "notes", write(tmp_path, "n.csv", "note_id,client_id,date\nn1,Z1,1998-01-05\n"))
    day = dt.date(1998, 6, 30)
    train_tier(engine, settings, "fast", as_of=day, reason="manual")
    known = scoring.clients_with_notes(engine, day)
    assert len(known) == 2357 + 1 and "Z1" in set(known)                  # buyers, and the client with a note only
    res = scoring.score(engine, settings, "fast", day, chunk_size=500)      # keyset pages over the union
    assert res.n_clients == 2358
    parts = scoring.plan_partitions(engine, day, 3)
    assert sum(p["n"] for p in parts) == 2358
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT count(DISTINCT client_id), min(purchase_likelihood), max(purchase_likelihood) "
                                   "FROM predictions WHERE tier = 'fast' AND scored_for = :d"), {"d": day}).one()
    assert got[0] == 2358 and got[1] < got[2]                              # purchase history separates them


def test_the_drift_check_matures_served_predictions_with_the_label_policy(engine, settings, tmp_path):
    """Transactions alone: each served score matures H days later with the labels training derives;
    dates the explicit log covers are its own, and a feed that stops is not read as churn."""
    from mlcore.monitoring import check_tier
    from mlcore.scoring import score
    from mlcore.training import train_tier
    path = write_cdnow(tmp_path / "cdnow_sample.csv", "sample")
    ingest_file(engine, "transactions", path)
    H = settings.horizon_days
    assert train_tier(engine, settings, "fast", as_of=dt.date(1998, 2, 28), reason="manual").promoted
    for day in range(1, 6):
        score(engine, settings, "fast", dt.date(1998, 3, day), run_id=f"s{day}")
    check = dt.date(1998, 6, 3)
    result = check_tier(engine, settings, "fast", check)
    source = result.diagnostics["outcomes"]
    served_on = dt.date.fromisoformat(source["transactions"]["served_since"])
    through = dt.date.fromisoformat(source["transactions"]["through"])
    assert served_on == min(dt.date(1998, 3, 5), through - dt.timedelta(days=H)) and through <= check
    assert result.n == source["transactions"]["derived"] == 2357 and source["outcome_log"] == 0
    assert result.decision in ("ok", "breach") and 0.65 < result.live["purchase"]["auc"]["value"] < 0.95
    # the same labels as the policy's rows dated served_on + H, from the raw file
    matures = served_on + dt.timedelta(days=H)
    truth = derive_outcomes(pd.read_csv(path), LabelPolicy(horizon_days=H), until=matures)
    truth = truth[pd.to_datetime(truth["date"]).dt.date == matures]
    assert len(truth) == 2357
    live = result.live
    assert live["purchase"]["mean_observed"] == pytest.approx(truth["purchased"].mean(), abs=1e-4)
    assert live["churn"]["mean_observed"] == pytest.approx(truth["churned"].mean(), abs=1e-4)
    assert live["clv"]["mean_observed"] == pytest.approx(truth["lifetime_value"].mean(), abs=1e-3)
    # an explicit log on that date takes precedence for it
    clients = truth["client_id"].astype(str).head(40)
    write(tmp_path, "o.csv", "client_id,date,purchased,churned,lifetime_value\n" + "".join(
        f"{c},{matures},1,0,10\n" for c in clients))
    ingest_file(engine, "outcomes", tmp_path / "o.csv")
    again = check_tier(engine, settings, "fast", check).diagnostics["outcomes"]
    assert again["outcome_log"] == 40 and again["transactions"]["derived"] == 0
    # months after the last transaction loaded: nothing matures (not 'everyone stopped buying')
    late = check_tier(engine, settings, "fast", dt.date(1998, 11, 1))
    assert late.diagnostics["outcomes"]["transactions"]["derived"] == 0 and late.decision == "insufficient_data"


def test_a_model_that_ranks_a_target_backwards_is_never_promoted(engine, settings, tmp_path):
    """CDNOW sample to 1997-09-30: every training row is a client still active, so 'churned' is 'did not
    buy' there and the model ranks churn backwards on validation: registered, not promoted."""
    from mlcore.training import train_tier
    ingest_file(engine, "transactions", write_cdnow(tmp_path / "cdnow_sample.csv", "sample"))
    res = train_tier(engine, settings, "fast", as_of=dt.date.fromisoformat(CALIBRATION_END), reason="manual")
    assert not res.promoted and "churn" in res.gate["backwards"] and "backwards" in res.gate["why"]
    assert res.metrics["churn"]["auc"]["hi"] < 0.5 < res.metrics["purchase"]["auc"]["lo"]
