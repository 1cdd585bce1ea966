"""Real data: the CDNOW purchases against the published customer-base models (``make bench-cdnow``).

1. The 2,357-customer sample, loaded with ``mlcore ingest transactions``: BG/NBD and Gamma-Gamma on
   its 39-week calibration period (to 1997-09-30) against Fader, Hardie & Lee's estimates.
2. The full file (23,570 customers), loaded the same way: Fast and Elite trained through
   ``train_tier`` on the labels derived from the transactions up to 1997-09-30 (transactions alone:
   no notes), each scored as of that day; BG/NBD x Gamma-Gamma fitted on the same calibration data.
   Reported on the following H days: AUC for a purchase, R2 and MAE for the spend, with 95 %
   bootstrap intervals. Figures go to bench/results/cdnow.json.

Usage: python bench/cdnow.py [--horizon 90]
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mlcore import db
from mlcore.clv_baseline import fit_customer_base, predict_customer_base, purchase_days, rfm_summary
from mlcore.config import Settings
from mlcore.datasets import CALIBRATION_END, write_cdnow
from mlcore.evaluation import CLASSIFIER_METRICS, REGRESSOR_METRICS, bootstrap
from mlcore.features import build_history
from mlcore.registry import Registry
from mlcore.training import train_tier

PUBLISHED = {"bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}, "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44}}


def _database(server: str):
    name = f"cs_cdnow_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    return name, url, admin


def _load(url: str, path: Path) -> pd.DataFrame:
    done = subprocess.run([sys.executable, "-m", "mlcore.cli", "ingest", "transactions", str(path)],
                          env={**__import__("os").environ, "DATABASE_URL": url}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    print("  " + done.stdout.strip().splitlines()[-1])
    with db.make_engine(url).connect() as conn:
        return pd.read_sql(sa.text("SELECT client_id, date, amount FROM transactions"), conn, parse_dates=["date"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--horizon", type=int, default=90)
    args = ap.parse_args()
    settings = Settings.from_env()
    server = db.database_url(settings)
    work = settings.home / "bench" / "cdnow"
    cal_end = dt.date.fromisoformat(CALIBRATION_END)
    H = args.horizon
    out = {"horizon_days": H, "calibration_end": CALIBRATION_END}
    names = []
    try:
        print("1. CDNOW sample (2,357 customers): BG/NBD and Gamma-Gamma on the 39-week calibration period")
        name, url, admin = _database(server)
        names.append(name)
        tx = _load(url, write_cdnow(work / "cdnow_sample.csv", "sample"))
        model = fit_customer_base(rfm_summary(purchase_days(tx), cal_end))
        out["sample"] = {"estimated": model.params, "published": PUBLISHED}
        for part in ("bgnbd", "gamma_gamma"):
            est = model.params[part]
            print(f"  {part:12s} " + "  ".join(f"{k} {est[k]:.3f} (published {v})" for k, v in PUBLISHED[part].items()))

        print(f"2. CDNOW master (23,570 customers): models trained to {cal_end}, scored on the next {H} days")
        name, url, admin = _database(server)
        names.append(name)
        tx = _load(url, write_cdnow(work / "cdnow_master.csv", "master"))
        engine = db.make_engine(url)
        run_settings = dataclasses.replace(settings, database_url=url, horizon_days=H,
                                           home=settings.home / "bench" / f"store-{name}")
        days = purchase_days(tx)
        clients = pd.Series(np.sort(days["client_id"].unique()))
        after = days[(days["date"] > pd.Timestamp(cal_end)) & (days["date"] <= pd.Timestamp(cal_end) + pd.Timedelta(days=H))]
        bought = clients.isin(after["client_id"]).to_numpy().astype(float)
        spend = after.groupby("client_id")["amount"].sum().reindex(clients).fillna(0.0).to_numpy()
        history = build_history(pd.DataFrame({"client_id": clients, "as_of": pd.Timestamp(cal_end)}),
                                pd.DataFrame(columns=["note_id", "client_id", "date"]),
                                pd.DataFrame(columns=["note_id", "concept_id", "confidence"]),
                                days[days["date"] <= pd.Timestamp(cal_end)])
        preds = {}
        for tier in ("fast", "elite"):
            res = train_tier(engine, run_settings, tier, as_of=cal_end, reason="manual")
            pipe = Registry(engine, run_settings.model_store).load(res.model)
            p = pipe.predict(history)
            preds[tier.title()] = (p[:, 0], p[:, 2])
            out.setdefault("training", {})[tier] = {"n_train": res.n_train, "n_valid": res.n_valid,
                                                    "fit_seconds": res.fit_seconds,
                                                    "selection": {t: (res.metrics[t].get("selection") or {}).get("chosen")
                                                                  for t in ("purchase", "churn", "clv")}}
        cb = fit_customer_base(rfm_summary(days, cal_end))
        cbp = predict_customer_base(cb, rfm_summary(days, cal_end), H).reindex(clients)
        preds["BG/NBD x GG"] = (cbp["expected_purchases"].to_numpy(), cbp["expected_spend"].to_numpy())
        out["holdout"] = {"n": int(len(clients)), "bought": int(bought.sum())}
        print(f"  {len(clients):,} customers, {int(bought.sum()):,} bought in the {H} days after {cal_end}")
        print(f"  {'model':12s} {'purchase AUC [95% CI]':>28s} {'spend R2 [95% CI]':>28s} {'spend MAE [95% CI]':>28s}")
        for label, (p_buy, p_spend) in preds.items():
            auc = bootstrap({"auc": CLASSIFIER_METRICS["auc"]}, bought, p_buy, 200)["auc"]
            reg = bootstrap({k: REGRESSOR_METRICS[k] for k in ("r2", "mae")}, spend, p_spend, 200)
            out["holdout"][label] = {"auc": auc, **reg}
            fmt = lambda m: f"{m['value']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]"  # noqa: E731
            print(f"  {label:12s} {fmt(auc):>28s} {fmt(reg['r2']):>28s} {fmt(reg['mae']):>28s}")
    finally:
        for name in names:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "cdnow.json").write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
