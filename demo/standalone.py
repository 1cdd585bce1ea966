"""``make airflow-ui``: ``airflow standalone`` on the demo's scoring and metadata databases."""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from demo.replay import ROOT, airflow_env, demo_databases


def standalone_env(server_url: str, home: Path, environ: Mapping[str, str] = os.environ,
                   executable: str = sys.executable) -> dict[str, str]:
    """The environment ``airflow standalone`` runs in, on the demo's databases of ``server_url``.

    Args:
        server_url: SQLAlchemy URL of the Postgres server holding the demo's databases.
        home: The project's state folder (``Settings.home``); Airflow's home is its ``airflow`` folder.
        environ: The environment to extend.
        executable: The Python that runs Airflow; its ``bin`` folder goes first on ``PATH``.

    Example:
        >>> env = standalone_env("postgresql+psycopg2://postgres@localhost/postgres", Path("var"))  # doctest: +SKIP
    """
    url = sa.make_url(server_url)
    scoring_db, meta_db = demo_databases(environ)
    airflow_home = home / "airflow"
    env = dict(environ)
    env.update({
        **airflow_env(url.set(database=meta_db).render_as_string(False), airflow_home),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_home / "passwords.json"),
        "DATABASE_URL": url.set(database=scoring_db).render_as_string(False),
        "CLIENT_SCORING_HOME": str(home),
        "CLIENT_SCORING_HORIZON_DAYS": environ.get("CLIENT_SCORING_HORIZON_DAYS", "21"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
    })
    # `airflow standalone` starts its scheduler, API server and the rest as the program `airflow`,
    # looked up on PATH: without the venv activated (make runs .venv/bin/python directly) it is not there.
    bin_dir = os.path.dirname(executable)
    rest = [p for p in environ.get("PATH", os.defpath).split(os.pathsep) if p and p != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *rest])
    return env


def ensure_databases(server_url: str) -> None:
    """Create the demo's databases when they are missing (a fresh clone that never ran the demo) and
    migrate the scoring one; existing databases are kept as they are."""
    from mlcore import db

    names = demo_databases()
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in names:
                if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))  # a checked plain name (demo_databases)
    finally:
        admin.dispose()
    engine = db.make_engine(sa.make_url(server_url).set(database=names[0]).render_as_string(False))
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from mlcore import db
    from mlcore.config import Settings

    settings = Settings.from_env()
    server = db.normalise_url(settings.database_url) if settings.database_url else \
        db.start_embedded(settings.pgdata, cleanup_mode=None)
    ensure_databases(server)
    env = standalone_env(server, settings.home)
    home = settings.home / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    print(f"Airflow UI on http://localhost:{os.environ.get('AIRFLOW__API__PORT', '8080')} (user admin; the password is in {home / 'passwords.json'})")
    os.execvpe(sys.executable, [sys.executable, "-m", "airflow", "standalone"], env)


if __name__ == "__main__":
    sys.exit(main())
