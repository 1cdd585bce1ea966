"""Replay a simulated timeline through real Airflow: the main job behind ``make demo``.

A synthetic world with a drift day is cut into daily CSV drops. History up to the start day is
ingested and both tiers are trained through the DAGs; then, for each simulated day, the day's
drops land in the inbox and the day runs like production: ``ingest_inbox``,
``fast_scoring_on_upload``, ``weekly_retrain`` on Sundays (its cron slot), ``nightly_elite_scoring``
and ``drift_check``, each a real DAG run
(``dag.test()`` on a migrated metadata database). When a drift check emits the drift Asset, the
replay does what the scheduler would do and runs ``weekly_retrain`` for it.

Environment must be prepared with :func:`configure` before Airflow is imported.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Scenario:
    """A world and the slice of its timeline to replay (days are 0-based from the world's start)."""

    clients: int = 8_000
    days: int = 400
    seed: int = 7
    drift_day: int | None = 310
    horizon_days: int = 21
    outcome_gap_days: tuple[int, int] = (7, 21)
    train_day: int = 292
    first_day: int = 298
    last_day: int = 352
    partitions: int = 1
    via_inbox: bool = True
    weekly: bool = True
    #: Score the warm-up nights through nightly_elite_scoring runs (the demo) or straight with
    #: mlcore.scoring.score, the same call its tasks make (the tests: the runs themselves are tested elsewhere).
    warmup_dag_runs: bool = True
    #: The tiers the first training trains (the tests watch Elite alone: Fast serves nothing without uploads).
    tiers: tuple[str, ...] = ("fast", "elite")


def airflow_env(metadata_url: str, home: Path) -> dict[str, str]:
    """Environment that runs Airflow on ``metadata_url`` with this project's DAGs and plugins."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }


def demo_databases(environ=os.environ) -> tuple[str, str]:
    """The demo's scoring and Airflow metadata database names (``CLIENT_SCORING_DEMO_DATABASE``, default
    ``client_scoring_demo``; the metadata database is that name with ``_airflow``)."""
    name = environ.get("CLIENT_SCORING_DEMO_DATABASE") or "client_scoring_demo"
    if not name.replace("_", "").isalnum() or not name[0].isalpha() or len(name) > 50:
        from mlcore.exceptions import ConfigError
        raise ConfigError(f"CLIENT_SCORING_DEMO_DATABASE must be a plain database name (letters, digits, _; "
                          f"at most 50), got {name!r}.")
    return name, f"{name}_airflow"


def configure(metadata_url: str, home: Path) -> None:
    """Point Airflow at a metadata database and this project's DAGs and plugins (before importing it)."""
    os.environ.update({
        **airflow_env(metadata_url, home),
        "CLIENT_SCORING_TASK_RETRIES": os.environ.get("CLIENT_SCORING_TASK_RETRIES", "0"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
    })
    for folder in (ROOT / "plugins", ROOT / "dags"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


def drop(frames: dict, lo: int, hi: int, inbox: Path, tag: str) -> list[str]:
    """Write the rows of days lo..hi (inclusive) into the inbox as contract CSV files."""
    inbox.mkdir(parents=True, exist_ok=True)
    names = {"notes": "notes", "concepts": "note_concepts", "outcomes": "outcomes"}
    clients = []
    for kind, frame in frames.items():
        part = frame[(frame["_day"] >= lo) & (frame["_day"] <= hi)].drop(columns="_day")
        if len(part):
            part.to_csv(inbox / f"{names[kind]}_{tag}.csv", index=False)
            if kind == "concepts":
                clients = sorted(part["client_id"].unique())
    return clients


def load_direct(engine: sa.Engine, frames: dict, lo: int, hi: int, folder: Path, tag: str) -> None:
    """Load the rows of days lo..hi straight through ``mlcore.ingest`` (no inbox, no ingest DAG run)."""
    from mlcore.ingest import ingest_file

    drop(frames, lo, hi, folder, tag)
    for kind, name in (("notes", "notes"), ("concepts", "note_concepts"), ("outcomes", "outcomes")):
        path = folder / f"{name}_{tag}.csv"
        if path.exists():
            ingest_file(engine, kind, path)
            path.unlink()


def run_dag(dag_id: str, day: dt.date, conf: dict | None = None):
    """One real DAG run for ``day`` (logical date 06:00 UTC); raises unless it succeeds."""
    from airflow.dag_processing.dagbag import DagBag

    dag = _dags(DagBag)[dag_id]
    logical = dt.datetime.combine(day, dt.time(6), tzinfo=dt.timezone.utc)
    # Every param is passed explicitly: dag.test() runs tasks in this process, and a run's conf
    # leaks into the cached tasks' params, so an omitted param would take the previous run's value.
    full_conf = {**{name: dag.params[name] for name in dag.params}, **(conf or {})}
    run = dag.test(logical_date=logical, run_conf=full_conf)
    if str(run.state) != "success":
        failed = [ti.task_id for ti in run.get_task_instances() if str(ti.state) == "failed"]
        raise RuntimeError(f"{dag_id} for {day} ended {run.state}; failed tasks: {failed}")
    return run


_BAG = {}


def _dags(DagBag):
    if not _BAG:
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        if bag.import_errors:
            raise RuntimeError(f"DAG import errors: {bag.import_errors}")
        _BAG.update(bag.dags)
    return _BAG


def replay(engine: sa.Engine, scenario: Scenario, workdir: Path, echo=print) -> pd.DataFrame:
    """Run the scenario's timeline; returns the elite drift-check history."""
    from mlcore.synth import WorldSpec, rows_by_day, write_world

    spec = WorldSpec(n_clients=scenario.clients, days=scenario.days, seed=scenario.seed,
                     drift_day=scenario.drift_day, horizon_days=scenario.horizon_days,
                     outcome_gap_days=scenario.outcome_gap_days)
    world = workdir / "world"
    if not (world / "truth.csv").exists():
        write_world(spec, world)
    frames = rows_by_day(world, spec.start)
    inbox = Path(os.environ.setdefault("CLIENT_SCORING_INBOX", str(workdir / "inbox")))
    day = lambda i: spec.start + dt.timedelta(days=i)  # noqa: E731

    t0 = time.perf_counter()
    drop(frames, -10**6, scenario.train_day, inbox, "history")
    run_dag("ingest_inbox", day(scenario.train_day))
    run_dag("weekly_retrain", day(scenario.train_day), {"reason": "manual", "tiers": list(scenario.tiers)})
    # Predictions of the weeks before the start, so that the first checks have matured outcomes.
    warmup = range(scenario.train_day - scenario.horizon_days - 7, scenario.train_day + 1)
    for i in warmup:
        if scenario.warmup_dag_runs:
            run_dag("nightly_elite_scoring", day(i), {"max_staleness_days": 30, "partitions": scenario.partitions})
        else:
            from mlcore.config import Settings
            from mlcore.scoring import score
            settings = Settings.from_env(database_url=engine.url.render_as_string(hide_password=False))
            score(engine, settings, "elite", day(i), run_id=f"warmup_{day(i)}")
    echo(f"history to {day(scenario.train_day)} ingested, {' and '.join(scenario.tiers)} trained, {len(warmup)} warm-up nights "
         f"scored ({time.perf_counter() - t0:.0f}s)")
    echo(f"{'day':10s} {'model':>5s} {'n':>6s} {'AUC purchase':>12s} {'AUC churn':>9s} {'baseline':>8s}  "
         f"{'decision':17s} action")
    for i in range(scenario.first_day, scenario.last_day + 1):
        today = day(i)
        if scenario.via_inbox:
            uploaded = drop(frames, i, i, inbox, today.isoformat())
            run_dag("ingest_inbox", today)
            if uploaded:
                run_dag("fast_scoring_on_upload", today, {"clients": uploaded})
        else:
            load_direct(engine, frames, i, i, workdir / "direct", today.isoformat())
        if scenario.weekly and today.weekday() == 6:
            # weekly_retrain's cron slot (Sunday 03:00): both tiers through the promotion gate.
            run_dag("weekly_retrain", today, {"reason": "schedule"})
            echo(f"{today} weekly_retrain (reason schedule) -> "
                 + "; ".join(_champion(engine, tier) for tier in ("elite", "fast")))
        run_dag("nightly_elite_scoring", today, {"partitions": scenario.partitions})
        run_dag("drift_check", today)
        row = _check_row(engine, today)
        if row is not None:
            live = "" if row.purchase_auc is None else f"{row.purchase_auc:12.3f} {row.churn_auc:9.3f}"
            echo(f"{today} {'v' + str(row.model_version):>5s} {row.n:6d} "
                 f"{live or f'{chr(8212):>12s} {chr(8212):>9s}'} {row.baseline:8.3f}  {row.decision:17s} {row.action}")
        due = _due_retrain(engine, today)
        if due:
            # The drift Asset schedules weekly_retrain; without a scheduler running, start it here.
            # Each tier learns from its own drift start (one run per tier, as the Asset's extra carries).
            for tier, since in sorted(due.items()):
                run_dag("weekly_retrain", today, {"reason": "drift", "tiers": [tier], "as_of": str(today),
                                                  "since": str(since)})
            echo(f"{'':10s} weekly_retrain (reason drift, tiers {', '.join(sorted(due))}) -> "
                 + "; ".join(_champion(engine, tier) for tier in sorted(due)))
    from mlcore.monitoring import history
    return history(engine, "elite")


def _check_row(engine, day):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT model_version, n, decision, action, "
            " (metrics -> 'purchase' -> 'auc' ->> 'value')::float AS purchase_auc, "
            " (metrics -> 'churn' -> 'auc' ->> 'value')::float AS churn_auc, "
            " (baseline -> 'purchase' -> 'auc' ->> 'value')::float AS baseline "
            "FROM drift_checks WHERE tier = 'elite' AND check_date = :d"), {"d": day}).one_or_none()


def _due_retrain(engine, day) -> dict:
    """Tiers whose drift check of ``day`` emitted the drift Asset, with the day their drift began."""
    from mlcore.config import Settings
    from mlcore.drift import RETRAIN_ACTIONS, retrain_since

    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT d.tier, e.check_date AS opened FROM drift_checks d "
                                    "JOIN drift_checks e ON e.id = d.episode_id WHERE d.check_date = :d "
                                    "AND d.action = ANY(:a)"), {"d": day, "a": list(RETRAIN_ACTIONS)}).all()
    window = Settings.from_env().drift_window_days
    return {r.tier: retrain_since(r.opened, window) for r in rows}


def _champion(engine, tier: str) -> str:
    """The newest model of ``tier`` and what the promotion gate made of it."""
    with engine.connect() as conn:
        r = conn.execute(sa.text("SELECT version, status, gate ->> 'why' FROM model_versions WHERE tier = :t "
                                 "ORDER BY version DESC LIMIT 1"), {"t": tier}).one()
    return f"{tier} v{r[0]} {r[1]} ({r[2]})"


def main() -> int:
    """``make demo``: embedded Postgres (or DATABASE_URL), a drifting world, the timeline through Airflow."""
    sys.path.insert(0, str(ROOT))
    from mlcore import db
    from mlcore.config import Settings

    started = time.perf_counter()
    settings = Settings.from_env()
    server = db.normalise_url(settings.database_url) if settings.database_url else \
        db.start_embedded(settings.pgdata, cleanup_mode=None)
    scoring_db, meta_db = demo_databases()
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in (scoring_db, meta_db):
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    scoring_url = sa.make_url(server).set(database=scoring_db).render_as_string(hide_password=False)
    meta_url = sa.make_url(server).set(database=meta_db).render_as_string(hide_password=False)
    engine = db.make_engine(scoring_url)
    db.upgrade(engine)
    workdir = settings.home / "demo-replay"
    shutil.rmtree(workdir / "inbox", ignore_errors=True)
    shutil.rmtree(settings.home / "models", ignore_errors=True)
    os.environ["CLIENT_SCORING_HORIZON_DAYS"] = str(Scenario.horizon_days)
    os.environ["DATABASE_URL"] = scoring_url
    os.environ["CLIENT_SCORING_HOME"] = str(settings.home)
    os.environ["CLIENT_SCORING_INBOX"] = str(workdir / "inbox")
    configure(meta_url, settings.home / "airflow")
    print(f"scoring database {scoring_db}, Airflow metadata database {meta_db} on "
          f"{sa.make_url(server).render_as_string(hide_password=True)}")
    replay(engine, Scenario(), workdir)
    with engine.connect() as conn:
        alerts = conn.execute(sa.text("SELECT tier, count(*) FROM alerts WHERE kind = 'drift' GROUP BY 1")).all()
        retrains = conn.execute(sa.text("SELECT tier, count(*) FROM model_versions WHERE reason = 'drift' "
                                        "GROUP BY 1")).all()
    print(f"\ndrift alerts per tier: {dict(alerts)}; drift retrainings per tier: {dict(retrains)}; "
          f"{time.perf_counter() - started:.0f}s in all.")
    print(f"""
Look at the results:
  psql "{scoring_url.replace('+psycopg2', '')}"
  SELECT check_date, tier, model_version, n, decision, action FROM drift_checks ORDER BY check_date;
  SELECT id, created_at, kind, title, status FROM alerts;
  SELECT tier, version, status, reason, gate ->> 'why' FROM model_versions ORDER BY tier, version;
  SELECT scored_for, tier, count(*) FROM predictions GROUP BY 1, 2 ORDER BY 1 DESC LIMIT 6;
Browse the same runs in the Airflow UI: make airflow-ui  (http://localhost:8080)""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
