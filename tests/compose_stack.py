"""docker-compose.yaml run without Docker: each service's own command with its own resolved environment.

Docker does not run on these machines, so the test harness provides what a container would and
changes nothing else of a service:

- **the image**: the project's wheel, built from the Dockerfile's build context as its
  ``pip install .`` builds it, installed non-editably into a new virtual environment outside the
  checkout. Its dependencies are the test environment's pinned ones, reached through a ``.pth``
  line (so the checkout's editable finder is not on the path); the environment variables are the
  Dockerfile's ``ENV`` plus the official image's ``AIRFLOW_HOME``; a command that is not ``bash``
  or ``python`` runs as ``airflow <command>``, as the official image's entrypoint does.
- **the file system**: every container path lives under one private root folder; a bind mount is
  a symlink to the repo folder, a named volume a folder that every service mounting it shares.
- **the network**: a service's host name is this machine (Postgres and Redis are this machine's
  own servers), and every port a service listens on is a free local port, set through Airflow's
  own setting for that port (``LISTEN``).
- **host names**: a Celery worker gets a UTS namespace of its own (``unshare --uts``) with its
  container's host name, as each container has.

Not emulated: the container user (``AIRFLOW_UID``), restart policies and resource limits.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
#: The official apache/airflow image's own environment that the services rely on.
IMAGE_ENV = {"AIRFLOW_HOME": "/opt/airflow"}
#: Airflow's setting for each port a component listens on inside its container.
LISTEN = {
    8080: "AIRFLOW__API__PORT",
    8974: "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
    8793: "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    8794: "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
    5555: "AIRFLOW__CELERY__FLOWER_PORT",
}
CONTAINER_ROOTS = ("/opt/airflow", "/opt/client-scoring")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dockerfile_env(text: str) -> dict[str, str]:
    """The ``ENV`` of a Dockerfile (``ENV a=b \\`` continuation lines included)."""
    env = {}
    for block in re.findall(r"^ENV\s+((?:.*\\\n)*.*)$", text, re.M):
        for key, value in re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")):
            env[key] = value
    return env


def install_image(venv: Path, wheel: Path) -> Path:
    """A new virtual environment with ``wheel`` installed non-editably; the dependencies come from this one."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_client_scoring_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "--quiet",
                    "--no-deps", "--no-compile", str(wheel)], check=True)
    # The dependencies' programs (airflow, celery), pointed at the new interpreter; mlcore is the wheel's own.
    for script in Path(sys.executable).parent.iterdir():
        target = venv / "bin" / script.name
        if target.exists() or not script.is_file():
            continue
        head = script.read_bytes()[:200]
        if head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]:
            body = script.read_text().split("\n", 1)[1]
            target.write_text(f"#!{venv / 'bin/python'}\n{body}")
            target.chmod(0o755)
    return venv


@dataclasses.dataclass
class Stack:
    """The services of one resolved compose model, run as processes on this machine."""

    model: dict
    root: Path                     # the containers' file system
    venv: Path                     # the image's Python environment
    db_host: str                   # this machine's Postgres: a host name, or a socket folder
    db_port: int
    logs: Path
    ports: dict = dataclasses.field(default_factory=dict)    # (instance, container port) -> local port
    procs: dict = dataclasses.field(default_factory=dict)    # instance -> Popen

    def __post_init__(self):
        self.image_env = {**IMAGE_ENV, **dockerfile_env((ROOT / "Dockerfile").read_text())}
        self.logs.mkdir(parents=True, exist_ok=True)
        for name, service in self.model["services"].items():
            for volume in service.get("volumes") or []:
                self._mount(volume)
        for path in (self.image_env["AIRFLOW_HOME"], self.image_env.get("CLIENT_SCORING_HOME", "/opt/client-scoring/var")):
            self.path(path).mkdir(parents=True, exist_ok=True)

    # -- the file system ---------------------------------------------------------------------------
    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def _mount(self, volume: dict) -> None:
        target = self.path(volume["target"])
        if target.exists() or target.is_symlink():
            return
        if volume["type"] == "bind":
            source = Path(volume["source"])
        else:
            source = self.root.parent / "volumes" / volume["source"]
            source.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source, target_is_directory=True)

    # -- the network -------------------------------------------------------------------------------
    def port(self, instance: str, container_port: int) -> int:
        key = (instance, int(container_port))
        if key not in self.ports:
            self.ports[key] = free_port()
        return self.ports[key]

    def _published(self, host_port: int) -> tuple[str, int] | None:
        for name, service in self.model["services"].items():
            for p in service.get("ports") or []:
                if int(p.get("published") or 0) == host_port:
                    return name, int(p["target"])
        return None

    def rewrite(self, value: str, instance: str) -> str:
        """A value as seen from ``instance`` on this machine: container paths, host names and ports.

        ``docker-compose config`` keeps the file's ``$$`` escapes (its output is a compose file
        again); the container gets a single ``$``.
        """
        value = value.replace("$$", "$")
        roots = "|".join(re.escape(r) for r in CONTAINER_ROOTS)
        value = re.sub(rf"(?<![\w.-])({roots})(?=/|$|[\s:'\"])", lambda m: str(self.root) + m[1], value)
        names = "|".join(re.escape(n) for n in sorted(self.model["services"], key=len, reverse=True))

        def host(m):
            name, port = m[2], int(m[3])
            if name == "postgres":
                return m[1] + (f"{self.db_host}:{self.db_port}" if not self.db_host.startswith("/") else f":{self.db_port}")
            if name == "redis":
                return m[1] + f"127.0.0.1:{port}"
            return m[1] + f"127.0.0.1:{self.port(name, port)}"

        value = re.sub(rf"([@/])({names}):(\d+)", host, value)

        def local(m):
            published = self._published(int(m[2]))
            owner, target = published if published else (instance, int(m[2]))
            return f"{m[1]}127.0.0.1:{self.port(owner, target)}"

        return re.sub(r"(//|\s|^)localhost:(\d+)", local, value)

    # -- processes ---------------------------------------------------------------------------------
    def env(self, service: str, instance: str | None = None, hostname: str | None = None,
            extra: dict | None = None) -> dict[str, str]:
        instance = instance or service
        spec = self.model["services"][service]
        env = {**self.image_env, **{k: ("" if v is None else str(v)) for k, v in (spec.get("environment") or {}).items()}}
        env = {k: self.rewrite(v, instance) for k, v in env.items()}
        env.update({var: str(self.port(instance, p)) for p, var in LISTEN.items()})
        env.update({
            "PATH": f"{self.venv / 'bin'}{os.pathsep}/usr/bin:/bin",
            "HOME": str(self.path("/home/airflow")),
            "HOSTNAME": hostname or socket.gethostname(),   # as Docker sets it: the container's host name
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        if self.db_host.startswith("/"):
            env.update({"PGHOST": self.db_host, "PGPORT": str(self.db_port)})
        self.path("/home/airflow").mkdir(parents=True, exist_ok=True)
        env.update(extra or {})
        return env

    def argv(self, service: str, instance: str | None = None) -> list[str]:
        spec = self.model["services"][service]
        command = [self.rewrite(c, instance or service) for c in spec.get("command") or []]
        if spec.get("entrypoint"):
            return [*spec["entrypoint"], *command]
        return command if command[:1] in (["bash"], ["python"]) else ["airflow", *command]

    def run(self, service: str, timeout: float = 600, extra: dict | None = None) -> subprocess.CompletedProcess:
        """A one-shot service, to its end."""
        return subprocess.run(self.argv(service), env=self.env(service, extra=extra), cwd=self.root,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, service: str, instance: str | None = None, hostname: str | None = None,
              extra: dict | None = None) -> subprocess.Popen:
        """A long-running service; ``hostname`` gives it a UTS namespace (its own host name) of its own."""
        instance = instance or service
        argv = self.argv(service, instance)
        if hostname:
            argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *argv]
        log = (self.logs / f"{instance}.log").open("a")
        proc = subprocess.Popen(argv, env=self.env(service, instance, hostname, extra), cwd=self.root,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[instance] = proc
        return proc

    def healthy(self, service: str, instance: str | None = None, hostname: str | None = None) -> bool:
        """The service's own health check, run as Docker would run it."""
        instance = instance or service
        test = self.model["services"][service]["healthcheck"]["test"]
        argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        argv = [self.rewrite(a, instance) for a in argv]
        try:
            out = subprocess.run(argv, env=self.env(service, instance, hostname), capture_output=True,
                                 timeout=60, cwd=self.root)
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0

    def wait_healthy(self, service: str, instance: str | None = None, hostname: str | None = None,
                     timeout: float = 240) -> None:
        instance = instance or service
        deadline = time.monotonic() + timeout
        while not self.healthy(service, instance, hostname):
            proc = self.procs.get(instance)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{instance} exited with {proc.returncode}:\n{self.log_tail(instance)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{instance} not healthy after {timeout:.0f}s:\n{self.log_tail(instance)}")
            time.sleep(3)

    def log_tail(self, instance: str, chars: int = 4000) -> str:
        path = self.logs / f"{instance}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def stop(self, *instances: str) -> None:
        """SIGTERM (as ``docker compose stop``), then SIGKILL after 30 s."""
        for name in instances or list(self.procs):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def api(self) -> "Api":
        return Api(f"http://127.0.0.1:{self.port('airflow-apiserver', 8080)}")


class Api:
    """The Airflow REST API (v2) as a user drives it: a token from ``/auth/token``, then JSON calls."""

    def __init__(self, base: str):
        self.base, self.token = base, None

    def login(self, username: str, password: str) -> None:
        self.token = self.call("POST", "/auth/token", {"username": username, "password": password})["access_token"]

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, method=method, headers=headers,
                                         data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path} -> HTTP {e.code}: {e.read()[:2000]!r}") from None

    def runs(self, dag_id: str) -> list[dict]:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=run_after")["dag_runs"]

    def trigger(self, dag_id: str, conf: dict | None = None, logical_date: str | None = None) -> str:
        run = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf or {}})
        return run["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str | None = None, run_type: str | None = None, after: set | None = None,
                 timeout: float = 600) -> dict:
        """The run ``run_id`` (or the first new run of ``run_type`` not in ``after``) once it has ended."""
        deadline = time.monotonic() + timeout
        while True:
            runs = [r for r in self.runs(dag_id)
                    if (run_id is None or r["dag_run_id"] == run_id)
                    and (run_type is None or r["run_type"] == run_type)
                    and (after is None or r["dag_run_id"] not in after)]
            if runs and runs[0]["state"] in ("success", "failed"):
                return runs[0]
            if time.monotonic() > deadline:
                seen = [{k: r[k] for k in ("dag_run_id", "state", "logical_date", "run_after")}
                        | {"tasks": self.states(dag_id, r["dag_run_id"])} for r in runs]
                raise AssertionError(f"{dag_id} {run_id or run_type}: no ended run after {timeout:.0f}s: {seen}")
            time.sleep(2)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=500")["task_instances"]

    def states(self, dag_id: str, run_id: str) -> dict[str, list[str]]:
        out = {}
        for ti in sorted(self.task_instances(dag_id, run_id), key=lambda t: (t["task_id"], t["map_index"])):
            out.setdefault(ti["task_id"], []).append(ti["state"])
        return out


def server_parts(server_url: str) -> tuple[str, int, str]:
    """(host or socket folder, port, superuser) of the Postgres server under test."""
    url = sa.make_url(server_url)
    host = url.host or url.query.get("host")
    return host, int(url.port or 5432), url.username or "postgres"


def reset_server(server_url: str, roles: tuple[str, ...], marker: str) -> None:
    """Drop the databases and roles an earlier run of this test left; refuse to touch anyone else's."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in roles:
                row = conn.execute(sa.text("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                           "WHERE datname = :n"), {"n": name}).first()
                if row is not None and row[0] != marker:
                    raise RuntimeError(f"database {name!r} exists on {admin.url.host} and was not made by this test; "
                                       "run it against a server without one")
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))
    finally:
        admin.dispose()


def mark_databases(server_url: str, names: tuple[str, ...], marker: str) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f"COMMENT ON DATABASE \"{name}\" IS '{marker}'"))
    finally:
        admin.dispose()


def run_init_scripts(stack: Stack, superuser: str) -> None:
    """The postgres service's first start: its /docker-entrypoint-initdb.d scripts, with its environment."""
    spec = stack.model["services"]["postgres"]
    [init] = [v for v in spec["volumes"] if v["target"] == "/docker-entrypoint-initdb.d"]
    env = {**{k: str(v) for k, v in spec["environment"].items()}, "PATH": "/usr/bin:/bin",
           "PGHOST": stack.db_host, "PGPORT": str(stack.db_port), "POSTGRES_USER": superuser}
    for script in sorted(Path(init["source"]).glob("*.sh")):
        out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{script.name}: {out.stdout}{out.stderr}"
