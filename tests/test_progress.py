"""Progress of long commands: log lines off a terminal (Airflow task logs), a tqdm bar on one."""
import io
import logging
import os
import subprocess
import sys

from mlcore.ingest import ingest_file
from mlcore.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_logged_every_few_seconds(caplog):
    caplog.set_level(logging.INFO, logger="mlcore.progress")
    with Progress("ingest notes x.csv", total=4 << 20, bytes_unit=True, every=0, stream=io.StringIO()) as bar:
        bar.step(1 << 20, "10 rows read")
    with Progress("train fast", total=4, unit="phases", every=3600, stream=io.StringIO()) as bar:
        bar.step(1, "quiet: within the interval")
        bar.step(2, "fitting on 10 rows", always=True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("ingest notes x.csv: 1 MiB of 4 MiB (25%), 10 rows read, ")
    assert len(lines) == 2 and lines[1].startswith("train fast: 2 phases of 4 phases (50%), fitting on 10 rows")


def test_on_a_terminal_progress_is_a_bar(caplog):
    term = Terminal()
    caplog.set_level(logging.INFO, logger="mlcore.progress")
    with Progress("score elite for 2025-01-01", unit="clients", every=0, stream=term) as bar:
        bar.step(5000)
    assert "score elite for 2025-01-01: " in term.getvalue() and "5.00k" in term.getvalue()
    assert not caplog.records                    # the bar replaces the log lines


def test_ingest_reports_its_progress_in_the_log(engine, tmp_path, caplog, monkeypatch):
    import mlcore.progress

    monkeypatch.setattr(mlcore.progress, "EVERY_SECONDS", 0.0)     # a line per block
    caplog.set_level(logging.INFO, logger="mlcore")
    path = tmp_path / "notes.csv"
    path.write_text("note_id,client_id,date\n" + "".join(f"n{i},c{i % 7},2025-01-0{1 + i % 9}\n" for i in range(50)))
    ingest_file(engine, "notes", path)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "ingest notes notes.csv: 0 MiB of 0 MiB (100%), 50 rows read, " in text
    assert f"{path}: 50 rows read and staged; checking them against the database" in text


def test_the_command_line_logs_progress_when_stderr_is_not_a_terminal(engine, tmp_path):
    out = tmp_path / "world"
    env = {**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "CLIENT_SCORING_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "mlcore.cli", "synth", "--clients", "300", "--days", "200",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ingest = subprocess.run([sys.executable, "-m", "mlcore.cli", "ingest", "notes", str(out / "notes.csv")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    assert "INFO mlcore.progress" in ingest.stderr and "rows read and staged" in ingest.stderr
