"""Quality and training-time benchmark: a 50k-client, two-year synthetic world (fixed seed).

Loads the world into the scoring database (DATABASE_URL or the embedded server), trains Fast and
Elite through ``train_tier`` (the same path as ``mlcore train``) and prints, per target, each tier's
holdout metric with its interval, the trivial baseline, and the best achievable value computed from
truth.csv on the same holdout rows. Figures go to bench/results/quality.json as well.

Usage: python bench/quality.py [--clients 50000] [--seed 42] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from mlcore import db
from mlcore.config import Settings
from mlcore.demo import truth_ceiling
from mlcore.ingest import ingest_file
from mlcore.synth import WorldSpec, write_world
from mlcore.training import train_tier


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeats", type=int, default=3, help="training runs per tier (median time reported)")
    args = ap.parse_args()
    settings = Settings.from_env()
    work = settings.home / "bench" / f"quality-{args.clients}-{args.seed}"
    if not (work / "truth.csv").exists():
        write_world(WorldSpec(n_clients=args.clients, days=730, seed=args.seed), work)
    server = db.database_url(settings)
    name = f"cs_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = sa.create_engine(sa.make_url(server).set(database=name))
    results = {"clients": args.clients, "seed": args.seed, "tiers": {}}
    try:
        db.upgrade(engine)
        for kind, f in (("notes", "notes.csv"), ("concepts", "note_concepts.csv"), ("outcomes", "outcomes.csv")):
            ingest_file(engine, kind, work / f)
        with engine.connect() as conn:
            last = conn.execute(sa.text("SELECT max(date) FROM outcomes")).scalar_one()
        truth = pd.read_csv(work / "truth.csv", parse_dates=["date"]).merge(
            pd.read_csv(work / "outcomes.csv", parse_dates=["date"]), on=["client_id", "date"])
        ceiling = truth_ceiling(truth, last - pd.Timedelta(days=settings.valid_days - 1), last)
        results["best_achievable"] = ceiling
        for tier in ("fast", "elite"):
            fits, walls, res = [], [], None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = train_tier(engine, settings, tier, as_of=last, reason="manual")
                walls.append(time.perf_counter() - t0)
                fits.append(res.fit_seconds)
            results["tiers"][tier] = {"fit_seconds_median": statistics.median(fits),
                                      "train_tier_seconds_median": statistics.median(walls),
                                      "n_train": res.n_train, "n_valid": res.n_valid, "metrics": res.metrics}
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(f"world: {args.clients} clients, seed {args.seed}; holdout = outcomes of the last "
          f"{settings.valid_days} days")
    print(f"{'tier':6s} {'fit s':>6s} {'train s':>8s}  {'target':8s} {'metric':6s} {'value':>7s} "
          f"{'95% interval':>17s} {'baseline':>9s} {'best':>7s} {'gap':>7s}")
    for tier, r in results["tiers"].items():
        for target, key in (("purchase", "auc"), ("churn", "auc"), ("clv", "r2")):
            m = r["metrics"][target]
            v = m[key]
            print(f"{tier:6s} {r['fit_seconds_median']:6.1f} {r['train_tier_seconds_median']:8.1f}  {target:8s} "
                  f"{key.upper():6s} {v['value']:7.4f} [{v['lo']:.4f}, {v['hi']:.4f}] "
                  f"{m['baseline'][key]:9.4f} {ceiling[target]:7.4f} {ceiling[target] - v['value']:7.4f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "quality.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
