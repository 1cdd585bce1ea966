"""Scale benchmark: the whole path at 10k, 100k and 1M clients, each step in its own process.

Every step runs in a fresh Python process so its peak RSS (``ru_maxrss`` from ``wait4``) is its own;
short steps repeat and report the median wall time. Figures print as a table and go to
``bench/results/suite.json``. The scoring database is a fresh ``cs_bench_<n>`` on the server of
``DATABASE_URL`` (or the embedded one), dropped at the end unless ``--keep``.

Usage:
    python bench/suite.py                       # 10k, 100k, 1M clients
    python bench/suite.py --sizes 10000 100000 --train-sizes 50000
    python bench/suite.py --keep ...; python bench/suite.py --reuse   # the second run skips synth + ingest
    python bench/suite.py --purchases --sizes 100000 1000000 --train-sizes 50000

``--purchases`` runs the same path on worlds with transactions (``WorldSpec.purchases``): the
transactions file is loaded instead of an outcome log, training derives the labels from it, scoring
reads every client's purchase days beside the notes, and the drift check matures the served
predictions from the transactions (no N ⋈ N step: there is no outcome log). Its figures go to
``bench/results/suite-purchases.json`` and their own section of ``docs/BENCHMARKS.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# --- steps: each runs in a child process and prints one JSON line {"rows", "seconds", "extra"}

def timed(fn):
    """Time the step's own work (imports excluded: the wall time of a warm Airflow task)."""
    def wrapper(**kwargs):
        t0 = time.perf_counter()
        out = fn(**kwargs)
        return {"seconds": time.perf_counter() - t0, **out}   # a step may time just its core itself
    wrapper.__name__ = fn.__name__
    return wrapper


def _imports():
    """The heavy imports every step needs, done before its clock starts."""
    import sklearn.ensemble  # noqa: F401
    import sqlalchemy  # noqa: F401

    import mlcore.scoring  # noqa: F401
    import mlcore.training  # noqa: F401

def _settings(url: str, **overrides):
    from mlcore.config import Settings

    return Settings.from_env(database_url=url, **overrides)


def _engine(url: str):
    from mlcore import db

    return db.make_engine(url)


def _spec(n: int, purchases: bool):
    from mlcore.synth import WorldSpec

    return WorldSpec(n_clients=n, days=730, seed=42, purchases=purchases)


@timed
def step_synth(world: str, n: int, purchases: bool = False) -> dict:
    from mlcore.synth import write_world

    counts = write_world(_spec(n, purchases), world)
    return {"rows": counts["concepts"], "extra": counts}


def _files(purchases: bool) -> dict[str, str]:
    from mlcore.synth import world_files

    return dict(world_files(purchases))


@timed
def step_ingest(world: str, url: str, kind: str, file: str) -> dict:
    """``mlcore ingest`` of one of the world's files into the (migrated) database."""
    from mlcore import db
    from mlcore.ingest import ingest_file

    engine = _engine(url)
    db.upgrade(engine)
    t0 = time.perf_counter()
    res = ingest_file(engine, kind, Path(world) / file)
    return {"seconds": time.perf_counter() - t0, "rows": res.rows_inserted,
            "extra": {"file_mib": round((Path(world) / file).stat().st_size / 2**20, 1)}}


@timed
def step_copy_floor(world: str, url: str, kind: str, file: str) -> dict:
    """The floor under ingest: the server's own COPY of the file into a bare, unindexed temporary table."""
    from mlcore.db import raw_transaction
    from mlcore.ingest import SPECS

    with raw_transaction(_engine(url)) as cur, open(Path(world) / file, "rb") as fh:
        cur.execute(f"CREATE TEMP TABLE floor (LIKE {SPECS[kind].table} INCLUDING DEFAULTS) ON COMMIT DROP")
        header = fh.readline().decode().strip()
        t0 = time.perf_counter()
        cur.copy_expert(f"COPY floor ({header}) FROM STDIN WITH (FORMAT csv, NULL '')", fh, size=1 << 20)
        seconds = time.perf_counter() - t0
        rows = cur.rowcount
    return {"seconds": seconds, "rows": rows}


def _last_day(engine) -> dt.date:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT max(date) FROM notes")).scalar_one()


@timed
def step_train(url: str, tier: str, max_clients: int) -> dict:
    """Train ``tier`` on the outcomes of (at most) ``max_clients`` labelled clients."""
    from mlcore.training import train_tier

    engine = _engine(url)
    res = train_tier(engine, _settings(url, n_bootstrap=50, train_max_clients=max_clients), tier, reason="manual")
    return {"rows": res.n_train, "extra": {"fit_seconds": round(res.fit_seconds, 2), "n_valid": res.n_valid,
                                           "auc_purchase": res.metrics["purchase"]["auc"]["value"],
                                           "auc_churn": res.metrics["churn"]["auc"]["value"],
                                           "r2_clv": res.metrics["clv"]["r2"]["value"]}}


@timed
def step_ceiling(world: str, url: str, n: int, purchases: bool = False) -> dict:
    """The best achievable holdout metrics (true expected outcomes from truth.csv, same window)."""
    import pandas as pd

    from mlcore.demo import labelled_truth, truth_ceiling

    s = _settings(url)
    spec = _spec(n, purchases)
    truth = labelled_truth(world, spec)
    # The labels end where training's do: the outcome log's last date, or the world's last day
    # when they are derived from its transactions.
    end = spec.end if purchases else truth["date"].max().date()
    best = truth_ceiling(truth, end - dt.timedelta(days=s.valid_days - 1), end)
    return {"rows": len(truth), "extra": {f"best_{k}": round(v, 4) for k, v in best.items()}}


@timed
def step_features(url: str) -> dict:
    """Elite features of every client as of the last day (read from Postgres, chunk by chunk)."""
    from mlcore.history_io import history_as_of
    from mlcore.registry import Registry
    from mlcore.scoring import clients_with_notes

    engine = _engine(url)
    s = _settings(url)
    features = Registry(engine, s.model_store).load(Registry(engine, s.model_store).require_champion("elite"))[0]
    day = _last_day(engine)
    ids = clients_with_notes(engine, day)
    cols = 0
    for start in range(0, len(ids), s.score_chunk_size):
        chunk = ids.iloc[start:start + s.score_chunk_size].reset_index(drop=True)
        X = features.transform(history_as_of(engine, chunk, day, chunk.iloc[0], chunk.iloc[-1]))
        cols = X.shape[1]
    return {"rows": len(ids), "extra": {"columns": cols}}


@timed
def step_score_elite(url: str) -> dict:
    from mlcore.scoring import score

    engine = _engine(url)
    res = score(engine, _settings(url), "elite", _last_day(engine), run_id="bench")
    return {"rows": res.n_clients}


@timed
def step_score_fast_upload(url: str, n: int = 2000) -> dict:
    import numpy as np

    from mlcore.scoring import clients_with_notes, score

    engine = _engine(url)
    day = _last_day(engine)
    ids = clients_with_notes(engine, day)
    upload = list(np.random.default_rng(0).choice(ids.to_numpy(), size=min(n, len(ids)), replace=False))
    t0 = time.perf_counter()      # choosing the upload above is not part of the work measured
    res = score(engine, _settings(url), "fast", day, run_id="bench-upload", clients=upload)
    return {"rows": res.n_clients, "seconds": time.perf_counter() - t0}


def _vacuum(engine) -> None:
    """VACUUM ANALYZE predictions after the bulk delete + insert, as autovacuum would before the next night."""
    import sqlalchemy as sa

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE predictions"))


@timed
def step_prepare_drift(url: str, days: int = 30) -> dict:
    """30 days of Elite predictions matured against the outcome log: the scored day, re-dated H+k days back."""
    import sqlalchemy as sa

    engine = _engine(url)
    s = _settings(url)
    day = _last_day(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM predictions WHERE tier = 'elite' AND run_id LIKE 'bench-drift%'"))
        for k in range(days):
            conn.execute(sa.text(
                "INSERT INTO predictions (scored_for, tier, client_id, model_version, purchase_likelihood, churn_risk, "
                " predicted_clv, run_id) SELECT CAST(:d AS date), tier, client_id, model_version, purchase_likelihood, "
                " churn_risk, predicted_clv, 'bench-drift' FROM predictions WHERE tier = 'elite' AND scored_for = :src"),
                {"d": day - dt.timedelta(days=s.horizon_days + k), "src": day})
        n = conn.execute(sa.text("SELECT count(*) FROM predictions WHERE run_id = 'bench-drift'")).scalar_one()
    _vacuum(engine)
    return {"rows": n}


@timed
def step_prepare_drift_matched(url: str, target: int = 1_000_000) -> dict:
    """One matured prediction for each of the newest ``target`` outcomes: N predictions joined with N outcomes.

    Each outcome of the window gets the client's scored prediction re-dated to the outcome's date
    minus the horizon; the window is the number of days that holds ``target`` outcomes of scored
    clients (or all of them).
    """
    import sqlalchemy as sa

    engine = _engine(url)
    s = _settings(url)
    day = _last_day(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM predictions WHERE tier = 'elite' AND run_id LIKE 'bench-drift%'"))
        first = conn.execute(sa.text(
            "SELECT min(date) FROM (SELECT o.date FROM outcomes o WHERE o.date <= :d AND EXISTS (SELECT 1 FROM "
            " predictions p WHERE p.client_id = o.client_id AND p.tier = 'elite' AND p.scored_for = :d) "
            " ORDER BY o.date DESC LIMIT :n) newest"), {"d": day, "n": target}).scalar_one()
        conn.execute(sa.text(
            "INSERT INTO predictions (scored_for, tier, client_id, model_version, purchase_likelihood, churn_risk, "
            " predicted_clv, run_id) SELECT o.date - CAST(:h AS int), p.tier, o.client_id, p.model_version, "
            " p.purchase_likelihood, p.churn_risk, p.predicted_clv, 'bench-drift-matched' FROM outcomes o "
            " JOIN predictions p ON p.client_id = o.client_id AND p.tier = 'elite' AND p.scored_for = :d "
            "WHERE o.date >= :first AND o.date <= :d"), {"h": s.horizon_days, "d": day, "first": first})
        n = conn.execute(sa.text("SELECT count(*) FROM predictions WHERE run_id = 'bench-drift-matched'")).scalar_one()
    _vacuum(engine)
    return {"rows": n, "extra": {"window_days": (day - first).days + 1}}


@timed
def step_drift(url: str, days: int = 30) -> dict:
    from mlcore.monitoring import check_tier

    engine = _engine(url)
    res = check_tier(engine, _settings(url, drift_window_days=days), "elite", _last_day(engine))
    return {"rows": res.n, "extra": {"decision": res.decision,
                                     "auc_purchase": res.live.get("purchase", {}).get("auc", {}).get("value")}}


STEPS = {name[5:]: fn for name, fn in globals().items() if name.startswith("step_")}


# --- the driver

def run_step(name: str, repeats: int, **kwargs) -> dict:
    """Run ``name`` in ``repeats`` fresh processes; median wall, max peak RSS, rows/s."""
    walls, ops, rss, out = [], [], [], None
    for _ in range(repeats):
        cmd = [sys.executable, __file__, "--step", name, "--kwargs", json.dumps(kwargs)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - t0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"step {name} {kwargs} failed (exit {os.waitstatus_to_exitcode(status)})")
        rss.append(usage.ru_maxrss / 1024)          # KiB -> MiB
        out = json.loads(stdout.strip().splitlines()[-1])
        ops.append(out["seconds"])
    op = statistics.median(ops)
    return {"step": name, "seconds": round(op, 3), "runs_s": [round(w, 3) for w in ops],
            "process_wall_s": round(statistics.median(walls), 3),
            "peak_rss_mib": round(max(rss)), "rows": out["rows"], "rows_per_s": round(out["rows"] / op),
            **({"extra": out["extra"]} if "extra" in out else {})}


def _database(server: str, name: str, reuse: bool = False) -> tuple[str, bool]:
    """URL of a fresh benchmark database ``name``, or of the kept one when ``reuse``; True if kept."""
    import sqlalchemy as sa

    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        kept = reuse and conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                      {"n": name}).scalar() is not None
        if not kept:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    if kept:
        from mlcore import db
        engine = db.make_engine(url)
        with engine.connect() as conn:
            kept = conn.execute(sa.text("SELECT to_regclass('notes') IS NOT NULL AND EXISTS (SELECT 1 FROM notes)")
                                ).scalar()
        engine.dispose()
    return url, bool(kept)


def _clear_run(url: str) -> None:
    """Forget what an earlier run of the suite left in a reused database (models, predictions, checks)."""
    import sqlalchemy as sa

    engine = _engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE predictions, prediction_batches, drift_checks, alerts, model_versions CASCADE"))
    engine.dispose()


def _drop(server: str, name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--train-sizes", type=int, nargs="+", default=[50_000, 200_000])
    ap.add_argument("--repeats", type=int, default=3, help="runs of each step shorter than --repeat-below seconds")
    ap.add_argument("--repeat-below", type=float, default=30.0)
    ap.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a database kept by an earlier --keep run: its synth and ingest are not re-run "
                         "(nor reported); everything after them is")
    ap.add_argument("--no-docs", dest="docs", action="store_false", help="do not rewrite docs/BENCHMARKS.md")
    ap.add_argument("--no-compare", dest="compare", action="store_false",
                    help="skip the original-design comparator and the NannyML comparison")
    ap.add_argument("--docs-only", action="store_true",
                    help="rewrite docs/BENCHMARKS.md from bench/results/*.json without running anything")
    ap.add_argument("--purchases", action="store_true",
                    help="worlds with transactions instead of an outcome log (labels derived from them)")
    ap.add_argument("--step"), ap.add_argument("--kwargs")
    args = ap.parse_args()
    if args.docs_only:
        result = RESULTS / ("suite-purchases.json" if args.purchases else "suite.json")
        write_docs(json.loads(result.read_text()), HERE.parent / "docs" / "BENCHMARKS.md", args.purchases)
        return 0
    if args.step:
        _imports()
        print(json.dumps(STEPS[args.step](**json.loads(args.kwargs)), default=str))
        return 0

    from mlcore import db
    from mlcore.config import Settings

    settings = Settings.from_env()
    server = db.database_url(settings)
    home = settings.home / "bench"
    os.environ["CLIENT_SCORING_HOME"] = str(home)
    rows = []

    def record(size, label, name, repeat=True, **kwargs):
        first = run_step(name, 1, **kwargs)
        if repeat and first["seconds"] < args.repeat_below and args.repeats > 1:
            more = run_step(name, args.repeats - 1, **kwargs)
            runs = first["runs_s"] + more["runs_s"]
            first.update(seconds=round(statistics.median(runs), 3), runs_s=runs,
                         peak_rss_mib=max(first["peak_rss_mib"], more["peak_rss_mib"]))
            first["rows_per_s"] = round(first["rows"] / first["seconds"])
        first.update(clients=size, label=label)
        rows.append(first)
        print(f"{size:>9,d}  {label:38s} {first['seconds']:9.2f} s  {first['peak_rss_mib']:7,d} MiB  "
              f"{first['rows']:>11,d} rows  {first['rows_per_s']:>11,d} rows/s", flush=True)

    print(f"{'clients':>9s}  {'step':38s} {'time (median)':>11s}  {'peak RSS':>11s}  {'rows':>16s}  {'throughput':>18s}")
    urls, windows, reused = {}, {}, []
    tag = "_purchases" if args.purchases else ""
    files = _files(args.purchases)
    for size in sorted(args.sizes):
        world = str(home / f"world-{size}{tag.replace('_', '-')}")
        name = f"cs_bench_{size}{tag}"
        url, kept = _database(server, name, args.reuse)
        urls[size] = url
        try:
            if not (Path(world) / "truth.csv").exists():
                record(size, "synth (CSV files)", "synth", world=world, n=size, purchases=args.purchases)
            if kept:
                print(f"{size:>9,d}  (ingest skipped: database {name} reused)", flush=True)
                reused.append(size)
                _clear_run(url)
            else:
                for kind, file in files.items():    # loaded once each: a second run would be a reload
                    record(size, f"ingest {kind} (validate + load)", "ingest", repeat=False, world=world,
                           url=url, kind=kind, file=file)
                record(size, "COPY floor: concepts into a bare table", "copy_floor", world=world, url=url,
                       kind="concepts", file=files["concepts"])
                floor = rows[-1]
                load = next(r for r in rows if r["clients"] == size and r["label"].startswith("ingest concepts"))
                floor["extra"] = {"ingest_over_floor": round(load["seconds"] / floor["seconds"], 2)}
            # The champions that score are trained on (at most) the smallest training size; the larger
            # training sizes are measured where the world has that many clients.
            for k in sorted({min(t, size) for t in args.train_sizes}, reverse=True):
                for tier in ("fast", "elite"):
                    record(size, f"train {tier.title()} ({k:,d} labelled clients)", "train", url=url, tier=tier,
                           max_clients=k)
            rows[-1]["best_achievable"] = run_step("ceiling", 1, world=world, url=url, n=size,
                                                   purchases=args.purchases)["extra"]
            record(size, "Elite features (from Postgres)", "features", url=url)
            record(size, "Elite scoring end to end", "score_elite", url=url)
            record(size, "Fast scoring, 2,000-client upload", "score_fast_upload", url=url)
            run_step("prepare_drift", 1, url=url)
            record(size, "drift check, 30 days of predictions" + (" (matured from transactions)" if args.purchases
                                                                  else ""), "drift", url=url)
            if not args.purchases:          # N ⋈ N joins served predictions with the outcome log
                window = windows[size] = run_step("prepare_drift_matched", 1, url=url)["extra"]["window_days"]
                record(size, "drift check, N predictions ⋈ N outcomes", "drift", url=url, days=window)
        except BaseException:
            if not args.keep:
                _drop(server, name)
            raise
    if args.compare and not args.purchases:
        # Side by side in the same run: the original design on the 50k world, NannyML on the largest.
        subprocess.run([sys.executable, str(HERE / "original.py"), "--clients", "50000",
                        "--world", str(home / "world-50000")], check=True)
        subprocess.run([sys.executable, str(HERE / "nannyml_compare.py"), "--url", urls[max(urls)],
                        "--days", str(windows[max(urls)])], check=True)
    if not args.keep:
        for size in urls:
            _drop(server, f"cs_bench_{size}{tag}")
    meta = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpus": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") *
                                                                    os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "rows": rows,
            "reused_databases": reused}
    RESULTS.mkdir(exist_ok=True)
    result = RESULTS / f"suite{tag.replace('_', '-')}.json"
    result.write_text(json.dumps(meta, indent=2, default=str))
    print(f"\nfigures written to {result}")
    if args.docs:
        write_docs(meta, HERE.parent / "docs" / "BENCHMARKS.md", args.purchases)
    return 0


def _table(meta: dict, heading: str, note: str) -> list[str]:
    """One results file as a section of docs/BENCHMARKS.md: steps, ingest over its floor, quality."""
    m = meta["machine"]
    lines = [heading, "", f"Latest run: {meta['date']} on {m['platform']}, Python {m['python']}, "
             f"{m['cpus']} CPUs, {m['memory_gib']} GiB RAM. {note}", ""]
    if meta.get("reused_databases"):
        sizes = ", ".join(f"{n:,d}" for n in meta["reused_databases"])
        lines += [f"Run with `--reuse`: the {sizes}-client database was kept from an earlier run, so its "
                  "synth and ingest rows are not in this table.", ""]
    lines += ["| clients | step | time (s) | runs (s) | peak RSS (MiB) | rows | rows/s |", "|---|---|---|---|---|---|---|"]
    for r in meta["rows"]:
        lines.append(f"| {r['clients']:,d} | {r['label']} | {r['seconds']:.2f} | "
                     f"{', '.join(f'{x:.2f}' for x in r['runs_s'])} | {r['peak_rss_mib']:,d} | {r['rows']:,d} | "
                     f"{r['rows_per_s']:,d} |")
    for r in meta["rows"]:
        if r["step"] == "copy_floor" and "ingest_over_floor" in r.get("extra", {}):
            lines += ["", f"{r['clients']:,d} clients: ingesting the concept file takes "
                      f"{r['extra']['ingest_over_floor']:.2f}× the server's bare COPY of it (validation, the checks "
                      "against the database, the insert into the indexed table, audit row, all in one transaction)."]
    lines += ["", "Quality: holdout metrics of each trained model (newest 60 days of outcomes) beside the best "
              "achievable on the same window (the true expected outcomes from `truth.csv`).", "",
              "| clients | model | purchase AUC | best | churn AUC | best | CLV R² | best |",
              "|---|---|---|---|---|---|---|---|"]
    best = {r["clients"]: r["best_achievable"] for r in meta["rows"] if "best_achievable" in r}
    nan = float("nan")
    for r in meta["rows"]:
        e, b = r.get("extra", {}), best.get(r["clients"], {})
        if r["step"] == "train" and "auc_purchase" in e:
            lines.append(f"| {r['clients']:,d} | {r['label'][6:]} | {e['auc_purchase']:.3f} | "
                         f"{b.get('best_purchase', nan):.3f} | {e['auc_churn']:.3f} | "
                         f"{b.get('best_churn', nan):.3f} | {e['r2_clv']:.3f} | {b.get('best_clv', nan):.3f} |")
    return lines + [""]


PURCHASES = "## With purchases"


def write_docs(meta: dict, path: Path, purchases: bool = False) -> None:
    """docs/BENCHMARKS.md: a notes-only run rewrites the page and keeps its purchases section; a
    ``--purchases`` run replaces just that section (bench/results is not versioned: the page is)."""
    old = path.read_text() if path.exists() else ""
    kept = old[old.index(PURCHASES):] if PURCHASES in old else ""
    if purchases:
        head = old[:old.index(PURCHASES)] if PURCHASES in old else old
        lines = [head.rstrip("\n"), ""] + _table(
            meta, PURCHASES, "`bench/suite.py --purchases`: worlds of `mlcore synth --purchases` (notes, "
            "concepts, `transactions.csv`). Training derives the labels from the transactions, scoring reads "
            "every client's purchase days beside the notes, and the drift check matures the served predictions "
            "from the transactions.")
    else:
        lines = ["# Benchmarks", "", "`make bench` (`bench/suite.py`). Each step runs in a fresh process; *time* "
                 "is the median of the step's own work over repeated runs where a run takes under 30 s (imports "
                 "excluded), *peak RSS* the process's maximum resident memory (imports included). Training rows "
                 "are (client, outcome date) pairs of the sampled labelled clients; scoring rows are clients; "
                 "drift rows are matched (outcome, prediction) pairs.", ""]
        lines += _table(meta, "## Notes and an outcome log", "Worlds of `mlcore synth` (notes, concepts, "
                        "`outcomes.csv`).")
        for extra in ("original.json", "nannyml.json"):
            if (RESULTS / extra).exists():
                lines += [f"`bench/results/{extra}`:", "", "```json", (RESULTS / extra).read_text().strip(),
                          "```", ""]
        lines += [kept.rstrip("\n")] if kept else []
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
    print(f"{path} updated")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
