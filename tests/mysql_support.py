"""What the MySQL / MariaDB server tests share: the server (AIRMIGRATE_TEST_MYSQL_URL, else 127.0.0.1:3306 as
root), the one-line skip of a whole module when it does not answer, a fresh database per test, and a table of
n rows made by the server itself (a cross join of digits: no round trip per row), and the application meanwhile
(:class:`Writer`)."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from airmigrate import db
from airmigrate.engines import sql
from airmigrate.engines.mysql.state_names import state_database
from airmigrate.engines.target import Target

URL = os.environ.get("AIRMIGRATE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def skip_without_server() -> None:
    """Skip the calling module, with one line saying why, when no server answers (not in `make check`)."""
    if os.environ.get("AIRMIGRATE_CHECK") == "1":
        return
    target = Target.from_url(URL)
    try:
        db.connect(target).close()
    except Exception as exc:
        pytest.skip(f"no MySQL/MariaDB answers at {target.describe()} ({type(exc).__name__}): these MySQL server "
                    "tests are skipped; set AIRMIGRATE_TEST_MYSQL_URL to run them", allow_module_level=True)


def fresh_database(prefix: str) -> Target:
    server = Target.from_url(URL)
    name = f"{prefix}_{WORKER}_{uuid.uuid4().hex[:8]}"
    with db.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.with_dbname(name)


def drop_database(target: Target) -> None:
    """The database and its state database (airmigrate__<name>, made by a test that ran a migration in it)."""
    with db.connect(target.with_dbname("mysql"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(target.dbname)))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(state_database(target.dbname))))


def fill(target: Target, table: str, rows: int) -> None:
    """`table` (id INT PRIMARY KEY, a INT NOT NULL, s VARCHAR(40)) with ids 1..rows."""
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS digits (d INT)")
        conn.execute("DELETE FROM digits")
        conn.execute("INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)")
        conn.execute(sql.SQL("CREATE TABLE {} (id INT PRIMARY KEY, a INT NOT NULL, s VARCHAR(40))").format(
            sql.Identifier(table)))
        conn.execute(sql.SQL(
            "INSERT INTO {} SELECT n, MOD(n, 1000), CONCAT('row ', n) FROM (SELECT 1 + a.d + 10 * b.d + 100 * c.d + "
            "1000 * e.d + 10000 * f.d + 100000 * g.d AS n FROM digits a, digits b, digits c, digits e, digits f, "
            "digits g) x WHERE n <= {}").format(sql.Identifier(table), sql.Literal(int(rows))))


def rows_of(target: Target, table: str, columns: str = "*") -> list[tuple]:
    with db.connect(target) as conn:
        return list(conn.execute(f"SELECT {columns} FROM `{table}` ORDER BY 1").fetchall())


def wait_for(condition, timeout: float = 30.0, what: str = "condition", interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class Writer(threading.Thread):
    """The application while a migration runs: `work(conn, rng, i)` in a loop on its own autocommit connection, a
    short pause between; every error and the slowest call are kept (the operations' tests fail on any error and on
    a statement slower than the lock wait limit + 1 s)."""

    def __init__(self, target: Target, work: Callable, pause_s: float = 0.002, seed: int = 7):
        super().__init__(daemon=True)
        self.target, self.work, self.pause_s, self.seed = target, work, pause_s, seed
        self.stop, self.calls, self.errors, self.slowest = threading.Event(), 0, [], 0.0

    def run(self) -> None:
        rng = random.Random(self.seed)
        with db.connect(self.target, autocommit=True) as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    self.work(conn, rng, self.calls)
                    self.calls += 1
                except Exception as exc:  # the application's error: what the tests look for
                    self.errors.append(repr(exc))
                self.slowest = max(self.slowest, time.monotonic() - started)
                time.sleep(self.pause_s)

    def finish(self) -> "Writer":
        """Stop and wait for the loop; the writer, for its counts."""
        self.stop.set()
        self.join(timeout=60)
        return self
