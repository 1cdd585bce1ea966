"""DAG runs for tests that look at how a run ended, failed or not (replay.run_dag raises unless it succeeds)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
_BAG = {}


def get_dag(dag_id: str):
    if not _BAG:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert not bag.import_errors, bag.import_errors
        _BAG.update(bag.dags)
    return _BAG[dag_id]


def run_once(dag_id: str, day: dt.date | None, conf: dict | None = None, run_after: dt.datetime | None = None):
    """One ``dag.test()`` run for ``day`` (06:00 UTC; None: no logical date, as asset-triggered runs have)."""
    dag = get_dag(dag_id)
    logical = None if day is None else dt.datetime.combine(day, dt.time(6), tzinfo=dt.timezone.utc)
    # Every param explicitly: a previous run's conf leaks into the cached tasks' params (see replay.run_dag).
    full_conf = {**{name: dag.params[name] for name in dag.params}, **(conf or {})}
    return dag.test(logical_date=logical, run_after=run_after, run_conf=full_conf)


def states(run) -> dict[str, list[str]]:
    """Each task's instance states (one per map index), e.g. {"train": ["skipped", "skipped"]}."""
    out = {}
    for ti in sorted(run.get_task_instances(), key=lambda t: (t.task_id, t.map_index)):
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


def failure_alerts(engine) -> list[tuple[str, str, dict]]:
    """The task_failure alerts recorded in the scoring database: (dedup_key, title, payload)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT dedup_key, title, payload FROM alerts WHERE kind = 'task_failure' ORDER BY id"))]


def run_triggered(dag_id: str, events: list[int], run_after: dt.datetime, monkeypatch):
    """A run as the scheduler starts it for Asset events: no logical date, ``events`` (AssetEvent ids) consumed.

    ``dag.test()`` only makes manual runs, so the run it creates is given the consumed events (and
    the run type) before its tasks start; the tasks read them as ``triggering_asset_events``.
    """
    import airflow.models.dagrun as dagrun
    from airflow.models.asset import AssetEvent
    from airflow.utils.types import DagRunType

    create = dagrun.get_or_create_dagrun

    def with_events(**kwargs):
        run = create(**kwargs)
        session = kwargs["session"]
        run.consumed_asset_events.extend(session.scalars(sa.select(AssetEvent).where(AssetEvent.id.in_(events))))
        run.run_type = DagRunType.ASSET_TRIGGERED
        session.commit()
        return run

    monkeypatch.setattr(dagrun, "get_or_create_dagrun", with_events)
    try:
        return run_once(dag_id, None, run_after=run_after)
    finally:
        monkeypatch.setattr(dagrun, "get_or_create_dagrun", create)


def asset_events(uri: str, run) -> list[tuple[int, dict]]:
    """(id, extra) of the events of asset ``uri`` that ``run`` emitted, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.settings import Session

    with Session() as session:
        rows = session.execute(sa.select(AssetEvent.id, AssetEvent.extra)
                               .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                               .where(AssetModel.uri == uri, AssetEvent.source_run_id == run.run_id,
                                      AssetEvent.source_dag_id == run.dag_id).order_by(AssetEvent.id))
        return [(i, dict(extra or {})) for i, extra in rows]
