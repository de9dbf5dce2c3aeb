"""What the MySQL / MariaDB server tests share: the server (AIRMIGRATE_TEST_MYSQL_URL, else 127.0.0.1:3306 as
root), the one-line skip of a whole module when it does not answer, a scratch database per test
(:func:`scratch_database`), a table of n rows made by the server itself (a cross join of digits: no round trip
per row), the md5 of a query's rows (:func:`rows_md5`), and the application meanwhile (:class:`Writer`, in a process of its own)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from polling import wait_for

from airmigrate import db, state
from airmigrate.engines import sql
from airmigrate.engines.mysql import dialect
from airmigrate.engines.mysql.state_names import state_database
from airmigrate.engines.target import Target
from airmigrate.stages import backfill

URL = os.environ.get("AIRMIGRATE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
# The operations' tests under a writer (tests/test_operations_mysql_*.py): enough rows for several batches of each
# run with the application writing through all of them; the README's figures are at 1,000,000
OPERATION_ROWS = int(os.environ.get("AIRMIGRATE_TEST_MYSQL_ROWS", "30000"))
# The writer's process is forked, not spawned: its work may be any callable (a closure over the test's run), and it
# starts in milliseconds (a spawned one imports airmigrate again, a second or two per start)
FORK = multiprocessing.get_context("fork")


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


@contextmanager
def scratch_database(prefix: str, monkeypatch: pytest.MonkeyPatch, dags_in: Path | None = None) -> Iterator[Target]:
    """A fresh database for one test (a fixture's body), dropped afterwards with its state database.

    Without `dags_in`, the test calls the stages itself: the configured target is the server (its engine reads the
    SQL files; the stages are given the database) and no Airflow connection is set. With `dags_in` (the test's
    tmp_path) the DAGs run on it: the Airflow connection and the configured target are the database, and the
    migrations, expectations and docs folders are under `dags_in`."""
    made = fresh_database(prefix)
    try:
        if dags_in is None:
            monkeypatch.setenv("AIRMIGRATE_TARGET_URL", URL)
            monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
        else:
            monkeypatch.setenv("AIRMIGRATE_TARGET_URL", made.url())
            monkeypatch.setenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", made.airflow_uri())
            for variable, name in (("AIRMIGRATE_MIGRATIONS_DIR", "migrations"),
                                   ("AIRMIGRATE_EXPECTATIONS_DIR", "expectations"), ("AIRMIGRATE_DOCS_DIR", "docs")):
                monkeypatch.setenv(variable, str(dags_in / name))
            (dags_in / "expectations").mkdir(parents=True, exist_ok=True)
        yield made
    finally:
        drop_database(made)


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


def begin_backfill(target: Target, migration) -> int:
    """A run of `migration` (up) with its batches laid out, as the backfill stage's start leaves it: its id (the
    shards are the test's)."""
    with db.connect(target) as conn:
        state.ensure_schema(conn)
        run_id, _ = state.begin_run(conn, migration.id, "up", None)
    backfill.start_backfill(target, migration, run_id)
    return run_id


def rows_of(target: Target, table: str, columns: str = "*") -> list[tuple]:
    with db.connect(target) as conn:
        return list(conn.execute(f"SELECT {columns} FROM `{table}` ORDER BY 1").fetchall())


def rows_md5(target: Target, query: str) -> str:
    """md5 of every row `query` gives, every column, in the order of its first column (the key, an integer): the
    server hashes chunks of 10,000 keys, nothing but the chunks' md5 comes back. Each value is QUOTE()d (NULL
    differs from 'NULL' and from a missing column); equal md5, equal rows."""
    with db.connect(target) as conn:
        names = [d[0] for d in conn.execute(f"SELECT * FROM ({query}) x LIMIT 0").description]
        row = sql.SQL(", ").join(sql.SQL("QUOTE({})").format(sql.Identifier(name)) for name in names)
        key = sql.Identifier(names[0])
        conn.execute("SET SESSION group_concat_max_len = 67108864")
        chunks = conn.execute(sql.SQL(
            "SELECT {key} DIV 10000, COUNT(*), MD5(GROUP_CONCAT(CONCAT_WS(',', {row}) ORDER BY {key} SEPARATOR '|')) "
            "FROM ({query}) x GROUP BY 1 ORDER BY 1").format(key=key, row=row, query=sql.SQL(query))).fetchall()
    return hashlib.md5("".join(f"{c}:{n}:{h};" for c, n, h in chunks).encode()).hexdigest()


@contextmanager
def dialect_asked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each answer :func:`dialect.flavor` gave in this process meanwhile: every choice between MariaDB's and MySQL
    8's forms asks it (:func:`dialect.to_run`, :func:`dialect.shown`, the online algorithm, the session limits
    shown). Empty: the switch AIRMIGRATE_MYSQL_DIALECT=mysql8 could not have changed a statement sent, so the test
    needs no second run in MySQL 8's forms (conftest's sql_forms)."""
    asked: list[str] = []
    real = dialect.flavor

    def spied(conn=None):
        asked.append(real(conn))
        return asked[-1]

    monkeypatch.setattr(dialect, "flavor", spied)
    yield asked
    monkeypatch.setattr(dialect, "flavor", real)


def switch():
    """An on/off switch the test flips while a :class:`Writer` runs (an Event the writer's process shares: make it
    before the writer starts)."""
    return FORK.Event()


class Writer:
    """The application while a migration runs, in a process of its own: `work(conn, rng, i)` in a loop on its own
    autocommit connection (`i`: the calls done so far; a transaction is the work's own, ``conn.transaction()``),
    `pause_s` between calls. A thread beside Airflow's dag.test() would wait on the GIL, and its statement times
    would measure that, not the database.

    Counts: `calls` (live while it runs), and after :meth:`finish` `errors` (each a repr; the tests fail on any),
    `slowest` (the slowest call's seconds; the operations' tests fail on one slower than the lock wait limit + 1 s)
    and `times` (each call's end, time.monotonic()). What the work writes into the `keep` dict in the writer's
    process comes back into `keep` at finish (e.g. the ids it inserted). The process is forked: `work` may be any
    callable, a closure too; what it changes in the test's process after the start, it does not see (a
    :func:`switch` it does)."""

    def __init__(self, target: Target, work: Callable, pause_s: float = 0.002, seed: int = 7,
                 keep: dict | None = None):
        self.target, self.work, self.pause_s, self.seed, self.keep = target, work, pause_s, seed, keep
        self.errors: list[str] = []
        self.slowest, self.times = 0.0, []
        self._calls, self._failures = FORK.RawValue("q", 0), FORK.RawValue("q", 0)
        self._stop, self._out = FORK.Event(), FORK.Queue()
        self._process = None
        self._finished = False

    @property
    def calls(self) -> int:
        return self._calls.value

    def start(self) -> "Writer":
        """The process started; back once its first call ended (the application is running when the test goes
        on)."""
        self._process = FORK.Process(target=self._run, daemon=True, name="application")
        self._process.start()
        wait_for(lambda: self.calls or self._failures.value or not self._process.is_alive(), timeout_s=60,
                 what="the application's first statement")
        return self

    def _run(self) -> None:
        rng, errors, slowest, times = random.Random(self.seed), [], 0.0, []
        try:
            with db.connect(self.target, autocommit=True) as conn:
                while not self._stop.is_set():
                    started = time.monotonic()
                    try:
                        self.work(conn, rng, self._calls.value)
                        times.append(time.monotonic())
                        self._calls.value += 1
                    except Exception as exc:  # the application's error: what the tests look for
                        errors.append(repr(exc))
                        self._failures.value += 1
                    slowest = max(slowest, time.monotonic() - started)
                    if self.pause_s:
                        time.sleep(self.pause_s)
        except Exception as exc:  # no connection: an error like any other
            errors.append(repr(exc))
        finally:
            self._out.put({"errors": errors, "slowest": slowest, "times": times, "keep": self.keep})

    def finish(self) -> "Writer":
        """Stop after the call under way, collect the counts; the writer (again: nothing more happens)."""
        if self._finished or self._process is None:
            return self
        self._stop.set()
        deadline = time.monotonic() + 120
        while True:
            try:
                found = self._out.get(timeout=1)
                break
            except queue.Empty:
                if not self._process.is_alive() and self._out.empty():
                    raise AssertionError(f"the application's process ended ({self._process.exitcode}) without "
                                         "its counts") from None
                if time.monotonic() > deadline:
                    raise AssertionError("the application did not stop within 120 s") from None
        self._process.join(timeout=60)
        self._finished = True
        self.errors, self.slowest, self.times = found["errors"], found["slowest"], found["times"]
        if self.keep is not None:
            self.keep.update(found["keep"])
        return self

    def __enter__(self) -> "Writer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.finish()


def assert_unharmed(writer: Writer, lock_wait_s: float, min_calls: int = 10) -> None:
    """The application under a migration: no error, more than `min_calls` calls (it ran meanwhile: otherwise
    nothing was tested), none slower than the lock wait limit + 1 s."""
    assert writer.errors == [], writer.errors[:3]
    assert writer.calls > min_calls, f"the application hardly ran ({writer.calls} calls): nothing was tested"
    assert writer.slowest <= lock_wait_s + 1, f"an application statement took {writer.slowest:.2f} s"
