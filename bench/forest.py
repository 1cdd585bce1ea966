"""Tree inference: the Elite champion's boosting models through scikit-learn and through mlcore.forest.

Loads the Elite champion of a benchmark database (its hash checked by the registry), builds the
features of ``--clients`` clients as of the last note date, and times, for each boosting model,
scikit-learn's raw prediction (its OpenMP threads) against the compiled trees (one thread and all
cores). Prints median seconds, nanoseconds per row and tree (scikit-learn vs compiled on one
thread), the speed-up with all cores and the largest difference.

Usage: CLIENT_SCORING_HOME=var/bench python bench/forest.py --url postgresql+psycopg2://.../cs_bench_1000000
"""
from __future__ import annotations

import argparse
import sys

from timing import median_seconds  # bench/timing.py (this script's folder is on sys.path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--clients", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    import numpy as np
    import sqlalchemy as sa

    from mlcore import db
    from mlcore.config import Settings
    from mlcore.history_io import history_as_of
    from mlcore.registry import Registry
    from mlcore.scoring import clients_with_notes

    engine = db.make_engine(args.url)
    registry = Registry(engine, Settings.from_env(database_url=args.url).model_store)
    pipeline = registry.load(registry.require_champion("elite"))
    with engine.connect() as conn:
        as_of = conn.execute(sa.text("SELECT max(date) FROM notes")).scalar_one()
    ids = clients_with_notes(engine, as_of).iloc[:args.clients].reset_index(drop=True)
    features = pipeline[:-1].transform(history_as_of(engine, ids, as_of))
    model = pipeline[-1]
    boosting = {"purchase": model.purchase_.named_estimators_["hgb"],
                "churn": model.churn_.named_estimators_["hgb"], "clv": model.clv_}
    print(f"{len(ids):,d} clients, median of {args.repeats}")
    print(f"{'model':9s} {'trees':>5s} {'scikit-learn':>13s} {'compiled x1':>12s} {'compiled':>9s} "
          f"{'ns/row/tree':>18s} {'speed-up':>9s} {'max |diff|':>11s}")
    for name, est in boosting.items():
        X = est._dense(features)
        trees = len(est.forest_.roots)
        skl = median_seconds(lambda: est.model_._raw_predict(X), args.repeats)
        one = median_seconds(lambda: est.forest_.raw(X, n_threads=1), args.repeats)
        alln = median_seconds(lambda: est.forest_.raw(X), args.repeats)
        diff = np.abs(est.model_._raw_predict(X).ravel() - est.forest_.raw(X)).max()
        print(f"{name:9s} {trees:5d} {skl:12.3f}s {one:11.3f}s {alln:8.3f}s "
              f"{skl / len(X) / trees * 1e9:8.1f} vs {one / len(X) / trees * 1e9:6.1f} {skl / alln:8.1f}x "
              f"{diff:11.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
