"""The main job without Airflow: synthetic world -> ingest -> train both tiers -> score -> report."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from mlcore import db
from mlcore.config import Settings
from mlcore.evaluation import evaluate, headline
from mlcore.ingest import ingest_file
from mlcore.labels import LabelPolicy, derive_outcomes
from mlcore.scoring import score
from mlcore.synth import WorldSpec, world_files, write_world
from mlcore.training import train_tier

QUERIES = """\
-- latest Elite scores of the riskiest high-value clients
SELECT client_id, churn_risk, predicted_clv, churn_risk * predicted_clv AS value_at_risk
FROM predictions WHERE tier = 'elite' AND scored_for = (SELECT max(scored_for) FROM predictions)
ORDER BY value_at_risk DESC LIMIT 10;
-- the registry
SELECT tier, version, status, reason, metrics -> 'purchase' -> 'auc' ->> 'value' AS purchase_auc
FROM model_versions ORDER BY tier, version;"""


def truth_ceiling(truth: pd.DataFrame, start: dt.date, end: dt.date) -> dict:
    """Headline metrics of the true expected outcomes on the rows a model validates on: those of
    clients known as of date - H (``known``; in a world without it, those with notes)."""
    known = truth["known"] if "known" in truth else truth["has_notes"]
    t = truth[(truth["date"] >= pd.Timestamp(start)) & (truth["date"] <= pd.Timestamp(end)) & known]
    Y = t[["purchased", "churned", "lifetime_value"]].to_numpy(float)
    P = t[["p_purchase", "p_churn", "expected_clv"]].to_numpy(float)
    return headline(evaluate(Y, P, n_boot=1))


def realized_outcomes(world: str | Path, spec: WorldSpec) -> pd.DataFrame:
    """A written world's outcome rows: its outcomes.csv, or those the label policy derives from its
    transactions.csv (the clients' first notes count as known), as training derives them."""
    world = Path(world)
    if not spec.purchases:
        return pd.read_csv(world / "outcomes.csv", parse_dates=["date"])
    notes = pd.read_csv(world / "notes.csv", parse_dates=["date"])
    derived = derive_outcomes(pd.read_csv(world / "transactions.csv", parse_dates=["date"]),
                              LabelPolicy(horizon_days=spec.horizon_days), spec.end,
                              known=notes.groupby("client_id")["date"].min())
    return derived.assign(date=pd.to_datetime(derived["date"]))


def labelled_truth(world: str | Path, spec: WorldSpec) -> pd.DataFrame:
    """truth.csv with each row's realized outcome (:func:`realized_outcomes`), for :func:`truth_ceiling`."""
    truth = pd.read_csv(Path(world) / "truth.csv", parse_dates=["date"])
    return truth.merge(realized_outcomes(world, spec), on=["client_id", "date"])


def run_demo(settings: Settings, clients: int = 20_000, seed: int = 7) -> None:
    spec = WorldSpec(n_clients=clients, days=730, seed=seed, horizon_days=settings.horizon_days, purchases=True)
    world = settings.home / "demo" / f"world-{clients}-{seed}-purchases-h{spec.horizon_days}"
    if not (world / "truth.csv").exists():
        print(f"generating a synthetic world of {clients} clients with notes and purchases over 730 days "
              f"in {world} ...")
        write_world(spec, world)
    url = db.database_url(settings)
    engine = db.make_engine(url)
    db.upgrade(engine)
    print(f"scoring database: {engine.url.render_as_string(hide_password=True)}")
    for kind, name in world_files(spec.purchases):
        r = ingest_file(engine, kind, world / name)
        print(f"  ingest {name}: {r.rows_in_file} rows, {r.rows_inserted} new")
    last = spec.end
    truth = labelled_truth(world, spec)
    print(f"  outcomes derived from the transactions by the label policy: {len(truth)} rows on "
          f"{truth['date'].nunique()} dates up to {last}")
    for tier in ("fast", "elite"):
        res = train_tier(engine, settings, tier, as_of=last, reason="manual")
        ceiling = truth_ceiling(truth, last - dt.timedelta(days=settings.valid_days - 1), last)
        print(f"\n{tier} v{res.model.version}: {res.n_train} training rows, fit {res.fit_seconds:.1f}s, "
              f"{res.n_valid} holdout rows; gate: {res.gate['why']}")
        for target, key in (("purchase", "auc"), ("churn", "auc"), ("clv", "r2")):
            m = res.metrics[target]
            print(f"  {target:8s} {key.upper():3s} {m[key]['value']:.3f} [{m[key]['lo']:.3f}, {m[key]['hi']:.3f}]"
                  f"   baseline {m['baseline'][key]:.3f}   best achievable {ceiling[target]:.3f}")
    for tier in ("elite", "fast"):
        r = score(engine, settings, tier, last, run_id=f"demo__{tier}")
        print(f"\nscored {r.n_clients} clients for {r.scored_for} with {tier} v{r.model_version} in {r.seconds:.1f}s")
    with engine.connect() as conn:
        top = pd.read_sql(sa.text(QUERIES.split(";")[0]), conn)
    print("\nriskiest high-value clients (Elite):")
    print(top.round(3).to_string(index=False))
    print("\nQuery the results yourself (psql \"$(mlcore db url | sed 's/+psycopg2//')\"):\n" + QUERIES)
