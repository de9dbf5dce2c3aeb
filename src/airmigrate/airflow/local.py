"""A real Airflow 3 on this machine: api-server, scheduler, dag-processor (and triggerer), like production.

`make airflow` runs :func:`main`: it points the project's DAGs at the demo database and serves the UI
until Ctrl-C. Tests start the same topology with :class:`LocalAirflow` and drive it over the REST
API as the UI does. Metadata in SQLite (LocalExecutor, small parallelism: one worker per slot).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from airmigrate import settings

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalAirflow:
    """Start the Airflow components as separate processes in one process group; stop them all cleanly."""

    def __init__(self, home: Path, target_uri: str, components=COMPONENTS, port: int | None = None,
                 extra_env: dict | None = None):
        self.home, self.port = Path(home), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.components, self.processes = components, []
        self.password = secrets.token_urlsafe(12)
        root = settings.project_root()
        inherited = {k: v for k, v in os.environ.items() if k != "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}
        self.env = {**inherited,
                    "AIRFLOW_HOME": str(self.home),
                    "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
                    "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                    "AIRFLOW__CORE__PARALLELISM": "4",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                    "AIRFLOW__API__PORT": str(self.port),
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                    "AIRFLOW_CONN_AIRMIGRATE_TARGET": target_uri,
                    "AIRMIGRATE_MIGRATIONS_DIR": str(settings.migrations_dir()),
                    "AIRMIGRATE_EXPECTATIONS_DIR": str(settings.expectations_dir()),
                    **(extra_env or {})}

    def start(self, timeout: float = 180) -> "LocalAirflow":
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_password()
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        logs = self.home / "logs"
        logs.mkdir(exist_ok=True)
        for component in self.components:
            args = [component] + (["--port", str(self.port)] if component == "api-server" else [])
            self.spawn(component, args)
        self.wait_healthy(timeout)
        return self

    def spawn(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        """One more Airflow process in its own process group (e.g. a Celery worker), stopped with the rest."""
        out = open(self.home / "logs" / f"{name}.out", "ab")
        process = subprocess.Popen([sys.executable, "-m", "airflow", *args], env={**self.env, **(env or {})},
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def _write_password(self) -> None:
        """A known admin password (SimpleAuthManager reads it from this file), private to the user."""
        path = self.home / "simple_auth_manager_passwords.json.generated"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps({"admin": self.password}) + "\n")

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [" ".join(p.args[3:5]) for p in self.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"Airflow {dead} exited; see {self.home / 'logs'}")
            try:
                health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).json()
                if health.get("scheduler", {}).get("status") == "healthy":
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow at {self.url} not healthy after {timeout:.0f}s; see {self.home / 'logs'}")

    def token(self) -> str:
        response = requests.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password},
                                 timeout=10)
        response.raise_for_status()
        return response.json()["access_token"]

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def stop(self) -> None:
        """SIGINT to each process group (graceful), then SIGTERM/SIGKILL what is left; no orphans."""
        for sig, wait in ((signal.SIGINT, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            alive = [p for p in self.processes if p.poll() is None]
            for process in alive:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while any(p.poll() is None for p in alive) and time.monotonic() < deadline:
                time.sleep(0.2)
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # children a component left in its group
            except ProcessLookupError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main() -> None:
    """`make airflow`: the project's DAGs against the demo database, until Ctrl-C."""
    from airmigrate import devdb
    from airmigrate.cli import DEMO_DB
    from airmigrate.db import connect

    target = devdb.server_target().with_dbname(os.environ.get("AIRMIGRATE_DEMO_DB", DEMO_DB))
    try:
        with connect(target) as conn:
            seeded = conn.execute("SELECT to_regclass('public.users') IS NOT NULL").fetchone()[0]
    except Exception:
        seeded = False
    if not seeded:
        print(f"seeding {target.describe()} (run `make demo` for the full demo) ...", flush=True)
        target = devdb.recreate_database(target.with_dbname("postgres"), target.dbname)
        devdb.seed_users(target, int(os.environ.get("AIRMIGRATE_DEMO_ROWS", 1_000_000)))
    airflow = LocalAirflow(settings.var_dir() / "airflow-server", target.airflow_uri(),
                           port=int(os.environ.get("AIRMIGRATE_AIRFLOW_PORT", 8080)))
    print(f"starting Airflow (api-server, scheduler, dag-processor, triggerer) for {target.describe()} ...",
          flush=True)
    def interrupt(signum, frame):
        raise KeyboardInterrupt  # also for SIGTERM, and SIGINT when started in the background

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    airflow.start()
    print(f"\nAirflow UI: {airflow.url}\nlogin: admin / {airflow.password}\n"
          f"logs: {airflow.home / 'logs'}\nCtrl-C stops it.", flush=True)
    try:
        while all(p.poll() is None for p in airflow.processes):
            time.sleep(1)
        print("an Airflow component exited; stopping", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping Airflow ...", flush=True)
    finally:
        airflow.stop()


if __name__ == "__main__":
    main()
