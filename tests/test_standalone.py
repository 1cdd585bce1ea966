"""``make airflow-ui``: the environment ``airflow standalone`` is started in (without starting it)."""
import os
from pathlib import Path

import pytest

from demo.replay import ROOT
from demo.standalone import standalone_env

SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
VENV_BIN = "/work/checkout/.venv/bin"


@pytest.mark.parametrize("path, expected", [
    ("/usr/local/bin:/usr/bin:/bin", [VENV_BIN, "/usr/local/bin", "/usr/bin", "/bin"]),  # venv not activated
    (f"/usr/bin:{VENV_BIN}:/bin", [VENV_BIN, "/usr/bin", "/bin"]),                        # moved first, once
    (None, [VENV_BIN, *os.defpath.split(os.pathsep)]),                                    # no PATH at all
])
def test_the_interpreters_bin_folder_comes_first_on_path(path, expected):
    # airflow standalone starts its components as the program `airflow`, found through PATH.
    environ = {} if path is None else {"PATH": path}
    env = standalone_env(SERVER, Path("/state"), environ, executable=f"{VENV_BIN}/python")
    assert [p for p in env["PATH"].split(os.pathsep) if p] == [p for p in expected if p]


def test_airflow_runs_on_the_demo_databases_with_the_project_on_its_path():
    env = standalone_env(SERVER, Path("/state"), {"PATH": "/usr/bin", "KEEP": "1"}, executable="/v/bin/python")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/client_scoring_demo_airflow")
    assert env["DATABASE_URL"].endswith("/client_scoring_demo")
    assert env["AIRFLOW_HOME"] == "/state/airflow" and env["CLIENT_SCORING_HOME"] == "/state"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT / "plugins"), str(ROOT)]
    assert env["CLIENT_SCORING_HORIZON_DAYS"] == "21" and env["KEEP"] == "1"


def test_the_demo_database_name_is_a_setting_and_must_be_plain():
    from demo.replay import demo_databases
    from mlcore.exceptions import ConfigError

    env = standalone_env(SERVER, Path("/state"), {"CLIENT_SCORING_DEMO_DATABASE": "mine"}, executable="/v/bin/python")
    assert env["DATABASE_URL"].endswith("/mine")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/mine_airflow")
    assert demo_databases({}) == ("client_scoring_demo", "client_scoring_demo_airflow")
    with pytest.raises(ConfigError, match="CLIENT_SCORING_DEMO_DATABASE must be a plain database name"):
        demo_databases({"CLIENT_SCORING_DEMO_DATABASE": 'x"; DROP DATABASE postgres; --'})
