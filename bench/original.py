"""The original Elite design, reimplemented as a comparator, and the side-by-side comparison with ours.

The design this project grew from: TF-IDF over each client's concepts (up to 800 terms) plus count
statistics; per classifier a soft-voting ensemble of RandomForest (250 trees, depth 20),
GradientBoosting (100 trees) and LogisticRegression; for CLV, RandomForest + GradientBoosting +
Ridge averaged. Here it is trained honestly (point-in-time rows, time split, features fitted on the
training rows only) on exactly the rows our Elite tier trains on, and both score the same clients.

Usage: python bench/original.py [--clients 50000] [--score-clients 20000] [--repeats 7]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor, VotingClassifier, VotingRegressor)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import MaxAbsScaler

from mlcore.evaluation import evaluate, headline
from mlcore.features import ActivityStats, History
from timing import median_seconds  # bench/timing.py (this script's folder is on sys.path)


def concept_documents(history: History) -> list[str]:
    """One text per sample: its concept ids, repeated as often as they were noted."""
    c = history.concepts
    docs = c.groupby("row", sort=True)["concept_id"].agg(" ".join)
    out = np.full(len(history), "", dtype=object)
    out[docs.index.to_numpy()] = docs.to_numpy()
    return list(out)


class OriginalElite(BaseEstimator):
    """The original Elite tier: TF-IDF (800) + statistics; RF + GB + LR soft voting; RF + GB + Ridge for CLV."""

    def __init__(self, random_state: int = 0, n_jobs: int = 2):
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _features(self, history: History, fit: bool):
        docs = concept_documents(history)
        if fit:
            self.tfidf_ = TfidfVectorizer(max_features=800, token_pattern=r"\S+", lowercase=False).fit(docs)
            self.stats_ = ActivityStats().fit(history)
        X = sp.hstack([self.tfidf_.transform(docs), sp.csr_matrix(self.stats_.transform(history))], format="csr")
        if fit:
            self.scale_ = MaxAbsScaler().fit(X)
        return self.scale_.transform(X)

    def _classifier(self):
        rs, jobs = self.random_state, self.n_jobs
        return VotingClassifier([
            ("rf", RandomForestClassifier(n_estimators=250, max_depth=20, n_jobs=jobs, random_state=rs)),
            ("gb", GradientBoostingClassifier(n_estimators=100, random_state=rs)),
            ("lr", LogisticRegression(max_iter=1000))], voting="soft")

    def fit(self, history: History, Y: np.ndarray):
        X = self._features(history, fit=True)
        self.purchase_ = self._classifier().fit(X, Y[:, 0].astype(int))
        self.churn_ = self._classifier().fit(X, Y[:, 1].astype(int))
        self.clv_ = VotingRegressor([
            ("rf", RandomForestRegressor(n_estimators=250, max_depth=20, n_jobs=self.n_jobs,
                                         random_state=self.random_state)),
            ("gb", GradientBoostingRegressor(n_estimators=100, random_state=self.random_state)),
            ("ridge", Ridge())]).fit(X, Y[:, 2])
        return self

    def predict(self, history: History) -> np.ndarray:
        X = self._features(history, fit=False)
        return np.column_stack([self.purchase_.predict_proba(X)[:, 1], self.churn_.predict_proba(X)[:, 1],
                                np.clip(self.clv_.predict(X), 0, None)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50_000, help="synthetic world size (labelled clients)")
    ap.add_argument("--score-clients", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeats", type=int, default=7, help="alternating scoring rounds (median reported)")
    ap.add_argument("--world", help="folder of the synthetic world (generated there when missing)")
    args = ap.parse_args()

    from mlcore.config import Settings
    from mlcore.synth import WorldSpec, write_world
    from mlcore.tiers import elite_pipeline
    from mlcore.training import time_split, training_set
    from mlcore.features import build_history

    settings = Settings.from_env()
    world = Path(args.world) if args.world else settings.home / "bench" / f"world-{args.clients}"
    if not (world / "truth.csv").exists():
        write_world(WorldSpec(n_clients=args.clients, days=730, seed=args.seed), world)
    notes = pd.read_csv(world / "notes.csv", dtype={"note_id": str, "client_id": str}, parse_dates=["date"])
    concepts = pd.read_csv(world / "note_concepts.csv", dtype={"note_id": str, "concept_id": str})
    outcomes = pd.read_csv(world / "outcomes.csv", dtype={"client_id": str}, parse_dates=["date"])
    as_of = outcomes["date"].max()
    ts = training_set(outcomes, notes, concepts, settings.horizon_days)
    train, valid, _ = time_split(ts.dates, as_of.date(), settings.valid_days, settings.embargo)
    hist_train, hist_valid = ts.history.take(train), ts.history.take(valid)

    scoring_ids = pd.Series(np.sort(notes["client_id"].unique())[:args.score_clients])
    scoring = build_history(pd.DataFrame({"client_id": scoring_ids, "as_of": as_of}), notes, concepts)

    results = {"clients": args.clients, "n_train": len(train), "n_valid": len(valid),
               "score_clients": len(scoring_ids), "models": {}}
    models = {"ours (Elite)": elite_pipeline(), "original design": OriginalElite()}
    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(hist_train, ts.y[train])
        fit = time.perf_counter() - t0
        metrics = headline(evaluate(ts.y[valid], model.predict(hist_valid), n_boot=1))
        results["models"][name] = {"fit_s": round(fit, 1), "auc_purchase": round(metrics["purchase"], 4),
                                   "auc_churn": round(metrics["churn"], 4), "r2_clv": round(metrics["clv"], 4)}
        print(name, results["models"][name], flush=True)
    # Scoring is timed in alternating rounds, so both designs see the same machine load.
    walls = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            walls[name].append(median_seconds(lambda: model.predict(scoring), repeats=1))
    for name, runs in walls.items():
        wall = statistics.median(runs)
        results["models"][name].update(score_s=round(wall, 3), score_runs_s=[round(w, 3) for w in runs],
                                       us_per_client=round(wall / len(scoring_ids) * 1e6, 1))
    ours, orig = results["models"]["ours (Elite)"], results["models"]["original design"]
    results["speedup_per_client"] = round(orig["us_per_client"] / ours["us_per_client"], 2)
    print(f"\nscoring {len(scoring_ids):,d} clients (features + 3 predictions, in memory): ours "
          f"{ours['us_per_client']:.1f} us/client, original {orig['us_per_client']:.1f} us/client "
          f"-> {results['speedup_per_client']:.1f}x faster; AUC purchase {ours['auc_purchase']:.3f} vs "
          f"{orig['auc_purchase']:.3f}, churn {ours['auc_churn']:.3f} vs {orig['auc_churn']:.3f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "original.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
