"""A real Airflow 3 on this machine: api-server, scheduler, dag-processor (and triggerer), like production.

`make airflow` runs :func:`main`: it points the project's DAGs at the demo database and serves the UI
until Ctrl-C. Tests start the same topology with :class:`LocalAirflow` and drive it over the REST
API as the UI does. Metadata in a PostgreSQL database of its own when one is given (SQLite locks up
under load with four components writing), else SQLite in the Airflow home. LocalExecutor, small parallelism.

The REST client waits on conditions, not on fixed short timeouts: a busy machine answers slowly, and a
request that may be repeated safely is repeated on a timeout or a 5xx.
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
import uuid
from pathlib import Path

import requests

from airmigrate import devdb, engines, settings
from airmigrate.db import Target, connect
from airmigrate.engines import sql
from airmigrate.settings import DEMO_DB

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HTTP_TIMEOUT = 90  # seconds for one request: an api-server on a loaded 2-core machine can take tens of seconds
HTTP_ATTEMPTS = 5  # for requests safe to repeat, on a timeout, a dropped connection or a 5xx
RETRY_STATUS = frozenset({500, 502, 503, 504})


def sqlalchemy_url(target: Target) -> str:
    """The SQLAlchemy form of a target, with its engine's driver (a socket directory stays in ?host=)."""
    return engines.named(target.engine).sqlalchemy_url(target.url())


def metadata_database(server: Target, name: str, *, recreate: bool = True) -> str:
    """A PostgreSQL database for one Airflow's metadata on ``server``: (re)created empty, or kept when it exists
    and ``recreate`` is false. Returns its SQLAlchemy URL for AIRFLOW__DATABASE__SQL_ALCHEMY_CONN."""
    with connect(server, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if recreate and exists:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if recreate or not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return sqlalchemy_url(server.with_dbname(name))


def migrate_metadata(env: dict) -> None:
    """`airflow db migrate` with that environment (idempotent; creates the tables in an empty database)."""
    result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                            text=True)
    if result.returncode:
        raise RuntimeError(f"airflow db migrate failed ({result.returncode}):\n{result.stdout[-3000:]}"
                           f"{result.stderr[-3000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def component_flags(component: str, port: int) -> list[str]:
    """Listen on 127.0.0.1 only (AIRMIGRATE_AIRFLOW_HOST to choose another address). The scheduler's and
    triggerer's log servers would listen on every interface; on one machine the api-server reads the task
    logs from disk, so they are not started."""
    if component == "api-server":
        return ["--port", str(port), "--host", os.environ.get("AIRMIGRATE_AIRFLOW_HOST", "127.0.0.1")]
    if component in ("scheduler", "triggerer"):
        return ["--skip-serve-logs"]
    return []


class LocalAirflow:
    """Start the Airflow components as separate processes in one process group; stop them all cleanly."""

    def __init__(self, home: Path, target_uri: str, components=COMPONENTS, port: int | None = None,
                 extra_env: dict | None = None, metadata_url: str | None = None, users: dict[str, str] | None = None):
        """``metadata_url``: SQLAlchemy URL of the metadata database (see :func:`metadata_database`);
        None keeps SQLite in ``home`` (fine for one user clicking, not for a loaded machine). ``users``: more
        logins besides admin, name -> SimpleAuthManager role (viewer, user, op, admin), each with a password of
        its own (``passwords``)."""
        self.home, self.port = Path(home), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.components, self.processes = components, []
        self.password = secrets.token_urlsafe(12)
        self.roles = {"admin": "admin", **(users or {})}
        self.passwords = {name: self.password if name == "admin" else secrets.token_urlsafe(12) for name in self.roles}
        self._token: str | None = None
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
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, r in self.roles.items()),
                    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                    "AIRFLOW__API__PORT": str(self.port),
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                    "AIRFLOW_CONN_AIRMIGRATE_TARGET": target_uri,
                    "AIRMIGRATE_MIGRATIONS_DIR": str(settings.migrations_dir()),
                    "AIRMIGRATE_EXPECTATIONS_DIR": str(settings.expectations_dir()),
                    # a local Airflow runs against a demo or test database: its changelog is not the project's
                    "AIRMIGRATE_DOCS_DIR": os.environ.get("AIRMIGRATE_DOCS_DIR", str(self.home / "docs" / "schema")),
                    **({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url} if metadata_url else {}),
                    **(extra_env or {})}

    @property
    def metadata(self) -> str:
        """Where the metadata lives, for messages (no password)."""
        url = self.env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        if not url:
            return f"SQLite {self.home / 'airflow.db'}"
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"

    def start(self, timeout: float = 300, migrate: bool = True) -> "LocalAirflow":
        """``migrate=False`` for a metadata database known to be at Airflow's head already (a copy of a migrated
        one): `airflow db migrate` costs ~7 s even with nothing to do."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_password()
        if migrate:
            migrate_metadata(self.env)
        logs = self.home / "logs"
        logs.mkdir(exist_ok=True)
        for component in self.components:
            args = [component, *component_flags(component, self.port)]
            self.spawn(component, args)
        self.wait_healthy(timeout)
        return self

    def spawn(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:  # noqa: D401
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
            file.write(json.dumps(self.passwords) + "\n")

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                health = requests.get(f"{self.url}/api/v2/monitor/health",
                                      timeout=max(1.0, min(30.0, deadline - time.monotonic()))).json()
                if health.get("scheduler", {}).get("status") == "healthy":
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow at {self.url} not healthy after {timeout:.0f}s; see {self.home / 'logs'}")

    def check_alive(self) -> None:
        dead = [" ".join(map(str, p.args[3:5])) for p in self.processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"Airflow {dead} exited; see {self.home / 'logs'}")

    def token(self, renew: bool = False) -> str:
        """A JWT for the admin (cached; renewed when the api-server says 401)."""
        if self._token is None or renew:
            response = self._request("POST", "/auth/token", retry=True,
                                     json={"username": "admin", "password": self.password})
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, *, retry: bool | None = None, **kwargs) -> requests.Response:
        """One REST call as the admin. ``retry`` (default: for GET, HEAD, PUT, DELETE and PATCH, which set a
        state and may be repeated) repeats it on a timeout, a dropped connection or a 5xx, with backoff."""
        retry = method.upper() in ("GET", "HEAD", "PUT", "DELETE", "PATCH") if retry is None else retry
        response = self._request(method, path, retry=retry, auth=True, **kwargs)
        if response.status_code == 401:
            response = self._request(method, path, retry=retry, auth=True, renew=True, **kwargs)
        return response

    def _request(self, method: str, path: str, *, retry: bool, auth: bool = False, renew: bool = False,
                 **kwargs) -> requests.Response:
        attempts = HTTP_ATTEMPTS if retry else 1
        timeout = kwargs.pop("timeout", HTTP_TIMEOUT)
        for attempt in range(1, attempts + 1):
            headers = {"Authorization": f"Bearer {self.token(renew=renew)}"} if auth else {}
            renew = False
            try:
                response = requests.request(method, f"{self.url}{path}", headers=headers,
                                            timeout=timeout, **kwargs)
            except (requests.Timeout, requests.ConnectionError):
                if attempt == attempts:
                    raise
            else:
                if response.status_code not in RETRY_STATUS or attempt == attempts:
                    return response
            self.check_alive()
            time.sleep(min(2 ** attempt, 20))
        raise AssertionError("unreachable")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """POST a DAG run with a run id of our own, so a retried POST cannot start a second run (409 then
        means the first one got through). Returns the run id."""
        run_id = f"manual__airmigrate_{uuid.uuid4().hex[:12]}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        for attempt in range(1, HTTP_ATTEMPTS + 1):
            try:
                response = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", retry=False, json=body)
            except (requests.Timeout, requests.ConnectionError):
                response = None
            if response is not None and response.status_code == 200:
                return response.json()["dag_run_id"]
            if response is not None and response.status_code == 409:  # an earlier attempt got through
                if self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").status_code == 200:
                    return run_id
            if response is not None and response.status_code not in RETRY_STATUS | {409}:
                raise RuntimeError(f"triggering {dag_id}: {response.status_code} {response.text}")
            self.check_alive()
            time.sleep(min(2 ** attempt, 20))
        raise RuntimeError(f"triggering {dag_id}: no answer after {HTTP_ATTEMPTS} attempts")

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.5):
        """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass;
        a component that died ends the wait at once. Every 0.5 s: a wait ends on average a quarter of a second
        after its condition holds (every 2 s cost the suite's ~100 waits a second each); a predicate is one REST
        call or one look at a page."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} (after {timeout:.0f}s; logs in {self.home / 'logs'})")
            time.sleep(interval)

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
    target = named_target(os.environ)
    if target is not None:  # the database the user named: used as it is, never seeded nor recreated
        print(f"target: {target.describe()} (from AIRMIGRATE_TARGET_URL)", flush=True)
    else:
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
    airflow = LocalAirflow(settings.var_dir() / "airflow-server", target.airflow_uri(), port=pick_port(os.environ),
                           metadata_url=_server_metadata_url(target.with_dbname("postgres")),
                           users=extra_users(os.environ))
    print(f"starting Airflow (api-server, scheduler, dag-processor, triggerer) for {target.describe()}, "
          f"metadata in {airflow.metadata} ...", flush=True)
    def interrupt(signum, frame):
        raise KeyboardInterrupt  # also for SIGTERM, and SIGINT when started in the background

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    airflow.start()
    logins = "".join(f"\nlogin: {name} / {airflow.passwords[name]} ({role})" for name, role in airflow.roles.items()
                     if name != "admin")
    print(f"\nAirflow UI: {airflow.url}\nlogin: admin / {airflow.password}{logins}\n"
          f"logs: {airflow.home / 'logs'}\nCtrl-C stops it.", flush=True)
    try:
        while all(p.poll() is None for p in airflow.processes):
            time.sleep(1)
        print("an Airflow component exited; stopping", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping Airflow ...", flush=True)
    finally:
        airflow.stop()


ROLES = ("viewer", "user", "op", "admin")


def named_target(env) -> Target | None:
    """AIRMIGRATE_TARGET_URL naming a database (not the server's maintenance database `postgres`): `make airflow`
    points the DAGs at that database itself. None: the demo database on that server (or the embedded one)."""
    url = env.get("AIRMIGRATE_TARGET_URL")
    if not url:
        return None
    target = Target.from_url(url)
    return target if target.dbname and target.dbname != "postgres" else None


def pick_port(env, default: int = 8080) -> int:
    """AIRMIGRATE_AIRFLOW_PORT when set (refused, saying so, when something listens there); else 8080, or a free
    port when 8080 is taken (another Airflow, another developer)."""
    wanted = env.get("AIRMIGRATE_AIRFLOW_PORT")
    port = int(wanted) if wanted else default
    if _port_free(port):
        return port
    if wanted:
        raise SystemExit(f"AIRMIGRATE_AIRFLOW_PORT={port}: something already listens there; choose another port "
                         "or leave it unset for a free one")
    other = free_port()
    print(f"port {port} is taken: Airflow listens on {other}", flush=True)
    return other


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def extra_users(env) -> dict[str, str]:
    """AIRMIGRATE_AIRFLOW_USERS="viewer:viewer,ops:op": more logins for `make airflow` (name:role, roles of
    SimpleAuthManager: viewer, user, op, admin), to try the console as someone who may only look."""
    users = {}
    for item in filter(None, (part.strip() for part in env.get("AIRMIGRATE_AIRFLOW_USERS", "").split(","))):
        name, _, role = item.partition(":")
        if not name or role not in ROLES:
            raise SystemExit(f"AIRMIGRATE_AIRFLOW_USERS: '{item}' is not name:role with a role of {', '.join(ROLES)}")
        users[name] = role
    return users


def _server_metadata_url(server: Target) -> str | None:
    """`make airflow`'s metadata: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN when the user set it, else the database
    airmigrate_airflow on the same PostgreSQL server (kept across restarts), else SQLite when we may not create
    a database there."""
    if os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    name = os.environ.get("AIRMIGRATE_AIRFLOW_METADATA_DB", "airmigrate_airflow")
    try:
        return metadata_database(server, name, recreate=False)
    except Exception as exc:  # e.g. no CREATEDB privilege on a named server
        print(f"cannot create the database {name} on {server.describe()} ({exc}); Airflow's metadata goes "
              "into SQLite instead", file=sys.stderr)
        return None


if __name__ == "__main__":
    main()
