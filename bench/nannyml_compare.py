"""Our drift check against NannyML's realized performance and univariate drift, on the same rows.

Run by the main environment: exports the matched predictions and outcomes of the benchmark database
to a Parquet-free CSV, runs NannyML in its own virtual environment (``var/bench/nannyml-venv``:
NannyML pins older pandas than ours), and times our ``check_tier`` on the same database.
Figures go to ``bench/results/nannyml.json``.

Usage: python bench/nannyml_compare.py --url postgresql+psycopg2://.../cs_bench_1000000 [--days 30]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Runs inside the NannyML venv: realized ROC AUC per day of the analysis half, univariate drift of
# the two scores, both against the reference half. Prints one JSON line of timings.
NANNYML_SCRIPT = r'''
import json, sys, time
import pandas as pd
import nannyml as nml
t0 = time.perf_counter()
df = pd.read_csv(sys.argv[1], parse_dates=["date"])
load = time.perf_counter() - t0
df["y_pred"] = (df["purchase_likelihood"] >= 0.5).astype(int)
cut = df["date"].sort_values().iloc[len(df) // 2]
reference, analysis = df[df["date"] < cut], df[df["date"] >= cut]
t0 = time.perf_counter()
perf = nml.PerformanceCalculator(problem_type="classification_binary", y_pred_proba="purchase_likelihood",
                                 y_pred="y_pred", y_true="purchased", timestamp_column_name="date",
                                 metrics=["roc_auc"], chunk_period="D")
perf.fit(reference)
perf_result = perf.calculate(analysis)
perf_s = time.perf_counter() - t0
t0 = time.perf_counter()
drift = nml.UnivariateDriftCalculator(column_names=["purchase_likelihood", "churn_risk"],
                                      timestamp_column_name="date", chunk_period="D",
                                      continuous_methods=["kolmogorov_smirnov", "jensen_shannon"])
drift.fit(reference)
drift_result = drift.calculate(analysis)
drift_s = time.perf_counter() - t0
print(json.dumps({"rows": len(df), "load_s": load, "realized_performance_s": perf_s, "univariate_drift_s": drift_s,
                  "nannyml": nml.__version__}))
'''


def matched_rows(url: str, days: int, tier: str = "elite") -> tuple[pd.DataFrame, float]:
    """The rows our drift check matches (outcome x latest prediction H days before).

    Returns them and the seconds their read from Postgres took (what NannyML would need too).
    """
    from mlcore import db
    from mlcore.config import Settings
    from mlcore.monitoring import _MATCHED

    s = Settings.from_env(database_url=url)
    engine = db.make_engine(url)
    import sqlalchemy as sa
    with engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version FROM model_versions WHERE tier = :t AND status = 'champion'"),
                               {"t": tier}).scalar_one()
        end = conn.execute(sa.text("SELECT max(date) FROM outcomes")).scalar_one()
    import datetime as dt
    sql = _MATCHED.replace("SELECT o.purchased", "SELECT o.date, o.purchased", 1)
    t0 = time.perf_counter()
    frame = db.read_frame(engine, sql, {"tier": tier, "version": version, "h": s.horizon_days,
                                        "tol": s.drift_match_days, "start": end - dt.timedelta(days=days), "end": end,
                                        "parts": 1, "part": 0})
    return frame, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--days", type=int, default=30, help="the drift check's window (days of outcomes)")
    ap.add_argument("--venv", default=str(HERE.parent / "var" / "bench" / "nannyml-venv"),
                    help="NannyML's own virtual environment (created when missing)")
    args = ap.parse_args()
    venv = Path(args.venv)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "nannyml==0.13.1", "statsmodels"], check=True)  # an undeclared import of nannyml
    data = venv.parent / "matched.csv"
    matched, _ = matched_rows(args.url, args.days)
    matched.to_csv(data, index=False)
    n = len(matched)
    del matched

    from mlcore import db
    from mlcore.config import Settings
    from mlcore.monitoring import check_tier
    import sqlalchemy as sa
    engine = db.make_engine(args.url)
    with engine.connect() as conn:
        end = conn.execute(sa.text("SELECT max(date) FROM notes")).scalar_one()
    import pandas as pd

    from mlcore.drift import psi
    from mlcore.evaluation import evaluate
    frame = pd.read_csv(data, parse_dates=["date"])
    Y = frame[["purchased", "churned", "lifetime_value"]].to_numpy(float)
    P = frame[["purchase_likelihood", "churn_risk", "predicted_clv"]].to_numpy(float)
    half = frame["date"] < frame["date"].sort_values().iloc[len(frame) // 2]
    ours, theirs, in_memory, reads = [], [], [], []
    for _ in range(args.repeats):
        reads.append(matched_rows(args.url, args.days)[1])
        t0 = time.perf_counter()      # the same in-memory work NannyML does: metrics with intervals, score drift
        evaluate(Y, P, n_boot=200, max_resample=10_000)
        for col in ("purchase_likelihood", "churn_risk"):
            psi(frame.loc[half, col].to_numpy(), frame.loc[~half, col].to_numpy())
        in_memory.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        check_tier(engine, Settings.from_env(database_url=args.url, drift_window_days=args.days), "elite", end)
        ours.append(time.perf_counter() - t0)
        out = subprocess.run([str(venv / "bin" / "python"), "-c", NANNYML_SCRIPT, str(data)], check=True,
                             capture_output=True, text=True)
        theirs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    nanny = statistics.median(t["realized_performance_s"] + t["univariate_drift_s"] for t in theirs)
    result = {"matched_rows": n, "ours_check_tier_s": round(statistics.median(ours), 3),
              "ours_in_memory_metrics_and_psi_s": round(statistics.median(in_memory), 3),
              "nannyml_performance_plus_drift_s": round(nanny, 3),
              "nannyml_runs": theirs,
              # In memory: our metrics with bootstrap intervals and score PSI against NannyML's calculators.
              "ratio_nannyml_over_ours_in_memory": round(nanny / statistics.median(in_memory), 2),
              # End to end: NannyML also needs the matched rows out of Postgres (the same query, median of the repeats).
              "matched_rows_read_s": round(statistics.median(reads), 3),
              "ratio_nannyml_over_ours": round((statistics.median(reads) + nanny) / statistics.median(ours), 2)}
    print(json.dumps(result, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "nannyml.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
