"""The deployment's secret rules (mlcore.deployment) and the compose stack's check-secrets service."""
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mlcore.deployment import check_secrets, secret_kind, secret_problem
from test_deploy import ROOT, compose_config

FERNET = Fernet.generate_key().decode()


SECRET_CASES = [
    ("AIRFLOW_JWT_SECRET", secrets.token_urlsafe(48), None),
    ("AIRFLOW_JWT_SECRET", "generate", "is the placeholder 'generate'"),
    ("AIRFLOW_JWT_SECRET", "GENERATE", "is the placeholder 'GENERATE'"),
    ("AIRFLOW_JWT_SECRET", "a" * 40, "is the placeholder"),                 # one repeated character
    ("AIRFLOW_JWT_SECRET", "x7Kp2mQ9vL4nR8sT1wY6", "has 20 characters; at least 32"),
    ("AIRFLOW_JWT_SECRET", "", "is not set"),
    ("AIRFLOW_JWT_SECRET", None, "is not set"),
    ("AIRFLOW_FERNET_KEY", FERNET, None),
    ("AIRFLOW_FERNET_KEY", "generate", "is the placeholder"),
    ("AIRFLOW_FERNET_KEY", secrets.token_urlsafe(48), "is not a Fernet key"),  # long, but not 32 bytes
    ("AIRFLOW_FERNET_KEY", "not base64 at all!!", "is not a Fernet key"),
    ("POSTGRES_PASSWORD", secrets.token_urlsafe(24), None),
    ("POSTGRES_PASSWORD", "changeme", "is the placeholder"),
    ("POSTGRES_PASSWORD", "s3cret-but-short", None),                        # 16 characters is the floor
    ("POSTGRES_PASSWORD", "s3cret-but-shor", "has 15 characters; at least 16"),
]


# ids without the values: random ones would differ between the test workers (and a secret stays out of logs)
@pytest.mark.parametrize("name, value, expected", SECRET_CASES,
                         ids=[f"{name}-{i}" for i, (name, _, _) in enumerate(SECRET_CASES)])
def test_secret_rules(name, value, expected):
    problem = secret_problem(name, value)
    assert problem is None if expected is None else problem.startswith(expected), problem


@pytest.mark.parametrize("name, kind", [("AIRFLOW_FERNET_KEY", "fernet"), ("AIRFLOW_JWT_SECRET", "signing"),
                                        ("API_SECRET_KEY", "signing"), ("AIRFLOW_ADMIN_PASSWORD", "password")])
def test_secret_kind_from_the_name(name, kind):
    assert secret_kind(name) == kind


def test_each_message_names_the_secret_and_how_to_make_one():
    [message] = check_secrets({"AIRFLOW_FERNET_KEY": "generate"}, ["AIRFLOW_FERNET_KEY"])
    assert message.startswith("AIRFLOW_FERNET_KEY is the placeholder 'generate': generate one with python -c")
    assert "Fernet.generate_key()" in message and message.endswith("set it in .env")


def _run_check_secrets(env_file: Path) -> subprocess.CompletedProcess:
    """The compose service check-secrets: its own command, with its own resolved environment."""
    service = json.loads(compose_config(env_file=env_file).stdout)["services"]["check-secrets"]
    env = {**service["environment"], "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin"}
    return subprocess.run([*service["entrypoint"], *service["command"]], env=env, capture_output=True, text=True,
                          cwd=ROOT)


def test_the_stack_refuses_the_placeholders_of_env_example():
    out = _run_check_secrets(ROOT / ".env.example")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "refusing to start with 6 unsafe secret(s)" in out.stderr
    for name in ("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "CLIENT_SCORING_DB_PASSWORD", "AIRFLOW_JWT_SECRET",
                 "AIRFLOW_FERNET_KEY", "AIRFLOW_ADMIN_PASSWORD"):
        assert f"{name} is the placeholder 'generate'" in out.stderr


def test_the_stack_starts_with_generated_secrets_and_everything_waits_for_the_check(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(generated_env())
    out = _run_check_secrets(env_file)
    assert out.returncode == 0 and "6 secret(s) set" in out.stdout, out.stdout + out.stderr
    services = json.loads(compose_config(env_file=env_file, env={"AIRFLOW_EXECUTOR": "CeleryExecutor"}).stdout,
                          )["services"]
    assert services["postgres"]["depends_on"]["check-secrets"]["condition"] == "service_completed_successfully"
    # Every other service waits for postgres (directly or through the init steps), so for the check.
    for name, service in services.items():
        if name not in ("check-secrets", "postgres", "redis"):
            assert "postgres" in service.get("depends_on", {}), name


def generated_env(**overrides) -> str:
    """.env.example with every "generate" replaced by a fresh secret of the right kind."""
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, _, value = line.partition("=")
        if value == "generate":
            value = FERNET if secret_kind(name) == "fernet" else secrets.token_urlsafe(32)
        lines.append(f"{name}={overrides.get(name, value)}" if _ else line)
    return "\n".join(lines) + "\n"
