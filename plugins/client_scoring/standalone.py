"""``make airflow-ui``: ``airflow standalone`` on the demo's scoring and metadata databases."""
from __future__ import annotations

import os
import sys

import sqlalchemy as sa

from client_scoring.replay import ROOT, airflow_env


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from mlcore import db
    from mlcore.config import Settings

    settings = Settings.from_env()
    server = db.normalise_url(settings.database_url) if settings.database_url else \
        db.start_embedded(settings.pgdata, cleanup_mode=None)
    url = sa.make_url(server)
    home = settings.home / "airflow"
    env = dict(os.environ)
    env.update({
        **airflow_env(url.set(database="client_scoring_demo_airflow").render_as_string(False), home),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "DATABASE_URL": url.set(database="client_scoring_demo").render_as_string(False),
        "CLIENT_SCORING_HOME": str(settings.home),
        "CLIENT_SCORING_HORIZON_DAYS": os.environ.get("CLIENT_SCORING_HORIZON_DAYS", "21"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
    })
    home.mkdir(parents=True, exist_ok=True)
    print(f"Airflow UI on http://localhost:8080 (user admin; the password is in {home / 'passwords.json'})")
    os.execvpe(sys.executable, [sys.executable, "-m", "airflow", "standalone"], env)


if __name__ == "__main__":
    sys.exit(main())
