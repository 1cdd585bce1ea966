"""Quality benchmark over a zoo of structurally different synthetic worlds (``mlcore.synth.KINDS``).

For each world type: writes the world (fixed seed), loads it into a fresh database (DATABASE_URL's
server or the embedded one) through ``ingest_file``, trains Fast and Elite through ``train_tier``
(the same path as ``mlcore train``, default settings) and reports, per target, each tier's holdout
metric with its interval, the trivial baseline, the best achievable value (computed from
truth.csv on the same holdout rows), the model each tier chose and whether the goals hold: Elite
within 0.02 AUC of the best on purchase and churn and within 0.05 of the best CLV R2, Elite >= Fast.
Figures go to bench/results/quality.json; ``--markdown`` prints the README's table.

``--purchases`` runs the zoo on worlds with transactions (``WorldSpec.purchases``): the
transactions are loaded instead of an outcome log, training derives the outcomes from them up to
the world's last day, and the best achievable comes from truth.csv beside the same derived labels
(figures in bench/results/quality-purchases.json).

Usage: python bench/quality.py [--clients 20000] [--seed 42] [--worlds baseline dense ...] [--purchases]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from mlcore import db
from mlcore.config import Settings
from mlcore.demo import labelled_truth, truth_ceiling
from mlcore.ingest import ingest_file
from mlcore.synth import KINDS, WorldSpec, world_files, write_world
from mlcore.training import train_tier

TARGETS = (("purchase", "auc", 0.02), ("churn", "auc", 0.02), ("clv", "r2", 0.05))


def run_world(settings: Settings, server: str, kind: str, clients: int, seed: int, purchases: bool = False) -> dict:
    spec = WorldSpec(n_clients=clients, days=730, seed=seed, kind=kind, purchases=purchases)
    work = settings.home / "bench" / (f"zoo-{kind}-{clients}-{seed}" + ("-purchases" if purchases else ""))
    if not (work / "truth.csv").exists():
        write_world(spec, work)
    name = f"cs_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = sa.create_engine(sa.make_url(server).set(database=name))
    # each world's models in a store of its own: the registry sweeps artifacts no row of its database vouches for
    world_settings = dataclasses.replace(settings, home=settings.home / "bench" / f"store-{name}")
    out = {"kind": kind, "clients": clients, "seed": seed, "purchases": purchases, "tiers": {}}
    try:
        db.upgrade(engine)
        for what, f in world_files(purchases):
            ingest_file(engine, what, work / f)
        if purchases:
            last = spec.end         # the labels are derived up to the world's last day, as the truth is
        else:
            with engine.connect() as conn:
                last = conn.execute(sa.text("SELECT max(date) FROM outcomes")).scalar_one()
        truth = labelled_truth(work, spec)
        out["best_achievable"] = truth_ceiling(truth, last - pd.Timedelta(days=settings.valid_days - 1), last)
        for tier in ("fast", "elite"):
            t0 = time.perf_counter()
            res = train_tier(engine, world_settings, tier, as_of=last, reason="manual")
            out["tiers"][tier] = {"fit_seconds": res.fit_seconds, "train_tier_seconds": time.perf_counter() - t0,
                                  "n_train": res.n_train, "n_valid": res.n_valid, "metrics": res.metrics}
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    out["goals"] = goals(out)
    return out


def goals(world: dict) -> dict:
    """Each goal of the zoo, held or not, with the gaps behind it."""
    best, tiers = world["best_achievable"], world["tiers"]
    value = lambda tier, t, k: tiers[tier]["metrics"][t][k]["value"]  # noqa: E731
    out = {}
    for target, key, within in TARGETS:
        gap = best[target] - value("elite", target, key)
        out[f"elite_within_{within}_of_best_{target}"] = {"held": gap <= within, "gap": round(gap, 4)}
        diff = value("elite", target, key) - value("fast", target, key)
        out[f"elite_at_least_fast_{target}"] = {"held": diff >= 0, "elite_minus_fast": round(diff, 4)}
    return out


def chosen(metrics: dict, target: str) -> str:
    s = metrics[target].get("selection") or {}
    method = (s.get("calibration") or {}).get("method")
    return (s.get("chosen") or "?") + (f"+{method}" if method else "")


def report(worlds: list[dict]) -> None:
    print(f"{'world':15s} {'tier':6s} {'fit s':>6s}  {'target':8s} {'metric':6s} {'value':>7s} {'95% interval':>17s} "
          f"{'baseline':>9s} {'best':>7s} {'gap':>7s}  chosen")
    for w in worlds:
        for tier, r in w["tiers"].items():
            for target, key, _ in TARGETS:
                m = r["metrics"][target]
                v = m[key]
                best = w["best_achievable"][target]
                print(f"{w['kind']:15s} {tier:6s} {r['fit_seconds']:6.1f}  {target:8s} {key.upper():6s} "
                      f"{v['value']:7.4f} [{v['lo']:.4f}, {v['hi']:.4f}] {m['baseline'][key]:9.4f} {best:7.4f} "
                      f"{best - v['value']:7.4f}  {chosen(r['metrics'], target)}")
    missed = [(w["kind"], g) for w in worlds for g, v in w["goals"].items() if not v["held"]]
    held = sum(len(w["goals"]) for w in worlds) - len(missed)
    print(f"\ngoals held: {held} of {held + len(missed)}" + "".join(f"\n  missed: {k}: {g}" for k, g in missed))


def markdown(worlds: list[dict]) -> str:
    lines = ["| world | purchase AUC: Fast / Elite / best | churn AUC: Fast / Elite / best | "
             "CLV R²: Fast / Elite / best | Elite's choice (purchase; churn; CLV) | goals |",
             "|---|---|---|---|---|---|"]
    for w in worlds:
        cells = []
        for target, key, _ in TARGETS:
            f, e = (w["tiers"][t]["metrics"][target][key]["value"] for t in ("fast", "elite"))
            cells.append(f"{f:.3f} / **{e:.3f}** / {w['best_achievable'][target]:.3f}")
        choice = "; ".join(chosen(w["tiers"]["elite"]["metrics"], t) for t, _, _ in TARGETS)
        held = sum(v["held"] for v in w["goals"].values())
        missed = [g for g, v in w["goals"].items() if not v["held"]]
        lines.append(f"| {w['kind']} | " + " | ".join(cells) + f" | {choice} | {held}/{len(w['goals'])}"
                     + (f" (missed: {', '.join(missed)})" if missed else "") + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--worlds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--markdown", action="store_true", help="also print the README's table")
    ap.add_argument("--purchases", action="store_true", help="worlds with transactions, outcomes derived from them")
    args = ap.parse_args()
    settings = Settings.from_env()
    server = db.database_url(settings)
    worlds = []
    for kind in args.worlds:
        t0 = time.perf_counter()
        worlds.append(run_world(settings, server, kind, args.clients, args.seed, args.purchases))
        print(f"{kind}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / ("quality-purchases.json" if args.purchases else "quality.json")).write_text(json.dumps(worlds, indent=2, default=str))
    report(worlds)
    if args.markdown:
        print("\n" + markdown(worlds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
