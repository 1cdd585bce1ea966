"""A scoring task killed inside Airflow: the Airflow process running ``nightly_elite_scoring`` is sent
SIGKILL or SIGTERM while its partitions write; the previous day stays byte-identical, the killed
day is absent or whole, no lock is left, and the next run of the same day completes it."""
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from demo.replay import run_dag
from mlcore.config import Settings
from mlcore.training import train_tier
from pg import advisory_locks, count, ingest_world, prediction_slice as _slice

HERE = Path(__file__).resolve().parent
RUN = f"""
import datetime as dt, sys
sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]
from dagrun import run_once
print(run_once("nightly_elite_scoring", dt.date.fromisoformat(sys.argv[1]), {{"partitions": 4}}).state)
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_scoring_task_killed_inside_airflow_keeps_the_previous_day_and_the_next_run_completes(
        scoring_env, small_world, sig):
    engine = scoring_env
    last = ingest_world(engine, small_world)
    H = Settings().horizon_days
    previous, day = last - dt.timedelta(days=H + 7), last - dt.timedelta(days=H)
    train_tier(engine, Settings.from_env(database_url=engine.url.render_as_string(False), n_bootstrap=20),
               "elite", as_of=previous)
    run_dag("nightly_elite_scoring", previous, {"partitions": 2})
    before = _slice(engine, previous)
    with engine.connect() as conn:
        expected = conn.execute(sa.text("SELECT count(DISTINCT client_id) FROM notes WHERE date <= :d"),
                                {"d": day}).scalar_one()

    proc = subprocess.Popen([sys.executable, "-c", RUN, str(day)], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, struck = time.monotonic() + 240, False
    while time.monotonic() < deadline and proc.poll() is None:      # strike once a partition has written
        if count(engine, "prediction_batches") > 0:
            proc.send_signal(sig)
            struck = True
            break
        time.sleep(0.05)
    proc.communicate(timeout=60)
    assert struck, "the run ended before any partition wrote: nothing was injected"
    time.sleep(1)                                # Postgres ends the killed sessions; their locks go with them
    rows, runs, _ = _slice(engine, day)
    assert _slice(engine, previous) == before
    assert rows in (0, expected) and runs <= 1
    assert advisory_locks(engine) == 0

    again = subprocess.run([sys.executable, "-c", RUN, str(day)], env=dict(os.environ), capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0 and "success" in again.stdout, again.stderr[-3000:]
    assert _slice(engine, day)[:2] == (expected, 1) and _slice(engine, previous) == before
    assert count(engine, "prediction_batches") == 0
