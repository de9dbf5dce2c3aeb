"""The safe DDL executor on MySQL / MariaDB: every statement under a metadata-lock wait limit and a statement
time limit, retried with backoff on a lock wait timeout, the blocking sessions named; every ALTER carries the
algorithm the server said it can do online, so a change that would copy the table is refused in milliseconds
instead of blocking writes for an hour.

Why a short ``lock_wait_timeout``: its default is 86,400 s, and an ALTER queued behind one long transaction
holds every later query on the table behind it (the same hazard as PostgreSQL's lock queue). MySQL counts it
in whole seconds: a limit under a second becomes one second. Why no transaction around DDL: MySQL commits
before and after each DDL statement whatever we ask, so each runs alone (``parsing.group_statements``).
Credentials never reach a log line or an error message (targets are shown with ``Target.describe``).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time

import pymysql

from airmigrate.engines import sql
from airmigrate.engines.base import PT_OSC, Executor
from airmigrate.engines.mysql import dialect, online, ptosc
from airmigrate.engines.mysql.connection import LOCK_NOWAIT, LOCK_WAIT_TIMEOUT, code, connect, message
from airmigrate.engines.mysql.parsing import group_statements, split_statements
from airmigrate.engines.mysql.state_names import schema_of
from airmigrate.engines.target import Target
from airmigrate.errors import TransientError

log = logging.getLogger(__name__)


COPY_FIX = ("Add `executor: pt-osc` to migration.yaml (pt-online-schema-change copies the table online, writes "
            "go on), or change the column with the change_column_type operation (expand / backfill / swap)")


class CopyRefused(RuntimeError):
    """The server can only do this change by copying the table under a shared lock (writes blocked): terminal,
    a retry cannot help. The message quotes the server."""


def lock_wait_seconds(lock_timeout_ms: int) -> int:
    return max(1, math.ceil(lock_timeout_ms / 1000))


def set_timeouts(cur, lock_timeout_ms: int, statement_timeout_ms: int, local: bool) -> None:
    """Metadata-lock and row-lock wait limits (whole seconds, at least 1) and a statement time limit
    (MariaDB's ``max_statement_time`` covers every statement; MySQL's ``max_execution_time`` only SELECTs,
    which is why the executor also keeps a watchdog there). `local` has no MySQL equivalent (no SET LOCAL):
    the limits last for the session, which airmigrate opens per step."""
    seconds = lock_wait_seconds(lock_timeout_ms)
    limit = (sql.SQL("max_statement_time = {}").format(sql.Literal(round(statement_timeout_ms / 1000, 3)))
             if _is_mariadb(cur) else sql.SQL("max_execution_time = {}").format(sql.Literal(int(statement_timeout_ms))))
    # one statement: every batch's claim pays it (the server's version comes from the handshake, not a query)
    cur.execute(sql.SQL("SET SESSION lock_wait_timeout = {s}, innodb_lock_wait_timeout = {s}, {limit}").format(
        s=sql.Literal(seconds), limit=limit))


def _is_mariadb(cur) -> bool:
    conn = getattr(cur, "connection", cur)
    return "mariadb" in conn.get_server_info().lower()


def estimate_rows(conn, schema: str, table: str) -> int:
    """InnoDB's estimate from information_schema.TABLES (its statistics, never a count(*)); 0 when the table
    does not exist."""
    row = conn.execute("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                       "AND TABLE_NAME = %s", (schema_of(conn, schema), table)).fetchone()
    return int(row[0] or 0) if row else 0


def run_ddl(target: Target, sql_text: str, *, lock_timeout_ms: int = 1000, statement_timeout_ms: int = 600_000,
            attempts: int = 8, table: tuple[str, str] | None = None, allow_copy: bool = False,
            executor: Executor | None = None) -> list[str]:
    """Run a SQL file safely (see the module's doc). Returns the statements run."""
    statements = split_statements(sql_text)
    for autocommit, group in group_statements(statements):
        run_group(target, group, autocommit, lock_timeout_ms=lock_timeout_ms,
                  statement_timeout_ms=statement_timeout_ms, attempts=attempts, table=table, allow_copy=allow_copy,
                  executor=executor)
    return statements


def online_statement(conn, statement: str, allow_copy: bool = False) -> str:
    """The statement with the server's online algorithm written in (``online.probe``); as written when it
    names its own ALGORITHM/LOCK or is no ALTER/CREATE INDEX; CopyRefused when only a copy works (unless
    `allow_copy`, for a table small enough that a copy is a moment)."""
    if online.table_span(statement) is None or online.has_clause(statement):
        return statement
    if online.renames_table(statement):
        return online.with_clause(statement, online.Verdict("INSTANT", ""))
    verdict, why = online.probe(conn, statement)
    if verdict is None:
        log.warning("no online algorithm known for this statement (%s): running it with LOCK=NONE, so the "
                    "server refuses rather than block writes", why)
        return f"{statement} LOCK=NONE" if statement.upper().startswith("CREATE") else f"{statement}, LOCK=NONE"
    if not verdict.online and not allow_copy:
        raise CopyRefused(
            f"{statement[:160]}: the server can only do this by copying the table with writes blocked "
            f"(ALGORITHM={verdict.algorithm}, LOCK={verdict.lock}); it says: {verdict.refusal or 'no reason given'}. "
            f"{COPY_FIX}")
    return online.with_clause(statement, verdict)


def run_group(target: Target, group: list[str], autocommit: bool, *, lock_timeout_ms: int = 1000,
              statement_timeout_ms: int = 600_000, attempts: int = 8, table: tuple[str, str] | None = None,
              still_needed=None, allow_copy: bool = False, executor: Executor | None = None) -> None:
    """One DDL statement (or a transaction of DML statements), retried on a lock wait timeout with
    exponential backoff and jitter; before each retry `still_needed()` (when given) says whether the state
    records the step as done meanwhile. The last failure names who held the lock (``Blockers``). An ALTER the
    server could only do by copying goes to pt-online-schema-change when `executor` says pt-osc."""
    for attempt in range(1, attempts + 1):
        if attempt > 1 and still_needed is not None and not still_needed():
            log.info("not retrying: the state says this step is done meanwhile")
            return
        blockers = None
        try:
            with connect(target, autocommit=True, application_name="airmigrate ddl") as conn:
                set_timeouts(conn, lock_timeout_ms, statement_timeout_ms, local=False)
                statements = _prepared(conn, group, autocommit, allow_copy, executor)
                if not isinstance(statements, str):
                    blockers = Blockers(target, conn.thread_id(), lock_wait_seconds(lock_timeout_ms) / 2)
                    _execute_group(target, conn, statements, autocommit, statement_timeout_ms)
            if isinstance(statements, str):  # pt-osc waits for its own locks (short waits, retried): not in this loop
                ptosc.run(target, statements, executor)
            return
        except pymysql.err.MySQLError as exc:
            if code(exc) not in (LOCK_WAIT_TIMEOUT, LOCK_NOWAIT):
                raise
            described = blockers.described() if blockers else None
            if attempt == attempts:
                raise TransientError(
                    f"lock wait timeout ({lock_wait_seconds(lock_timeout_ms)} s) hit {attempts} times on: "
                    f"{group[0][:120]}; blocked by {described or 'nobody any more'}. Airflow will retry; or end "
                    "that transaction") from exc
            delay = min(30.0, 0.2 * 2 ** attempt) * random.uniform(0.5, 1.5)
            log.warning("lock wait timeout on attempt %d/%d (%s); blocked by: %s; retrying in %.1fs", attempt,
                        attempts, message(exc), described or "nobody any more", delay)
            time.sleep(delay)
        finally:
            if blockers:
                blockers.cancel()


def _prepared(conn, group: list[str], autocommit: bool, allow_copy: bool, executor: Executor | None
              ) -> list[tuple[str, bool]] | str:
    """The group as it will run on this server: each statement in the server's forms (:mod:`.dialect`: on MySQL 8
    MariaDB's IF [NOT] EXISTS clauses asked of information_schema now, an anonymous block as a procedure called
    once), the online algorithm written into each DDL statement; as (statement, run even after a failure) pairs. Or
    the one ALTER pt-osc runs instead, when the server can only copy for it and the executor is pt-osc."""
    if not autocommit:
        return [(s, False) for s in group]
    out = []
    for statement in group:
        for text, always in dialect.to_run(conn, statement):
            try:
                out.append((online_statement(conn, text, allow_copy), always))
            except CopyRefused:
                if executor and executor.name == PT_OSC and len(group) == 1 and not out and ptosc.takes(text):
                    log.info("the server can only copy for this change: pt-online-schema-change runs it "
                             "(executor: pt-osc)")
                    return text
                raise
    return out


def _execute_group(target: Target, conn, statements: list[tuple[str, bool]], autocommit: bool,
                   statement_timeout_ms: int) -> None:
    """Each statement alone (DDL) or all in one transaction (DML), MySQL's DDL under a watchdog. After a failure
    the statements marked to run anyway (a session setting restored, a block's procedure dropped) still run."""
    watchdog = None if _is_mariadb(conn) else Watchdog(target, conn.thread_id(), statement_timeout_ms)
    try:
        if autocommit:
            _execute_all(conn, statements)
        else:
            with conn.transaction():
                _execute_all(conn, statements)
    finally:
        if watchdog:
            watchdog.cancel()


def _execute_all(conn, statements: list[tuple[str, bool]]) -> None:
    for at, (stmt, _) in enumerate(statements):
        try:
            _execute_logged(conn, stmt)
        except Exception:
            for after, always in statements[at + 1:]:
                if always:
                    try:
                        _execute_logged(conn, after)
                    except pymysql.err.MySQLError as exc:  # the first error is the one to report
                        log.warning("could not clean up after the failure (%s): %s", message(exc), after[:200])
            raise


def _execute_logged(conn, stmt: str) -> None:
    log.info("SQL> %s", stmt)
    conn.execute(stmt)


class Blockers:
    """Half-way through the lock wait, ask the server who is in the way, so the log names what to end.

    Where the metadata locks are visible (MySQL's performance_schema.metadata_locks, MariaDB's
    METADATA_LOCK_INFO plugin) their holders are named; otherwise (MariaDB's default) every other session
    with an open transaction, oldest first, from information_schema.INNODB_TRX and PROCESSLIST: a metadata
    lock is held until the end of the transaction that took it, so the blocker is among them."""

    OPEN_TRANSACTIONS = (
        "SELECT p.ID, TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), p.COMMAND, LEFT(COALESCE(p.INFO, ''), 100) "
        "FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p "
        "ON p.ID = t.trx_mysql_thread_id WHERE p.ID <> %s ORDER BY t.trx_started")
    MDL_HOLDERS = (
        "SELECT t.PROCESSLIST_ID, t.PROCESSLIST_TIME, t.PROCESSLIST_COMMAND, LEFT(COALESCE(t.PROCESSLIST_INFO, ''), "
        "100) FROM performance_schema.metadata_locks m JOIN performance_schema.threads t "
        "ON t.THREAD_ID = m.OWNER_THREAD_ID WHERE m.LOCK_STATUS = 'GRANTED' AND m.OBJECT_TYPE = 'TABLE' "
        "AND t.PROCESSLIST_ID <> %s AND (m.OBJECT_SCHEMA, m.OBJECT_NAME) IN (SELECT m2.OBJECT_SCHEMA, "
        "m2.OBJECT_NAME FROM performance_schema.metadata_locks m2 JOIN performance_schema.threads t2 "
        "ON t2.THREAD_ID = m2.OWNER_THREAD_ID WHERE t2.PROCESSLIST_ID = %s AND m2.LOCK_STATUS = 'PENDING')")

    def __init__(self, target: Target, thread_id: int, delay_s: float):
        self._target, self._id, self._found, self._error = target, thread_id, None, None
        self._timer = threading.Timer(delay_s, self._probe)
        self._timer.daemon = True
        self._timer.start()

    def _probe(self) -> None:
        try:
            with connect(self._target, autocommit=True, application_name="airmigrate blockers") as conn:
                rows = None
                try:
                    rows = conn.execute(self.MDL_HOLDERS, (self._id, self._id)).fetchall() or None
                except pymysql.err.MySQLError:
                    pass  # performance_schema off (MariaDB's default)
                self._found = [{"id": i, "seconds": s, "command": c, "query": q}
                               for i, s, c, q in rows or conn.execute(self.OPEN_TRANSACTIONS, (self._id,)).fetchall()]
        except Exception as exc:  # diagnostics only
            self._error = f"(could not ask the server who blocks: {message(exc)})"

    def result(self) -> list[dict] | None:
        self._timer.join(timeout=2)
        return self._found

    def described(self) -> str | None:
        """The blockers as a log line: session id, what it is doing, how long its transaction is open."""
        self.result()
        if self._error:
            return self._error
        return "; ".join(f"session {b['id']} ({b['command']}, transaction open {b['seconds']} s): "
                         f"{b['query'] or '(idle in transaction)'}" for b in self._found or []) or None

    def cancel(self) -> None:
        self._timer.cancel()


class Watchdog:
    """MySQL has no time limit for DDL statements (``max_execution_time`` covers SELECT only): after the limit,
    ``KILL QUERY`` from another session ends the statement (error 1317, a statement timeout)."""

    def __init__(self, target: Target, thread_id: int, statement_timeout_ms: int):
        self._target, self._id = target, thread_id
        self._timer = threading.Timer(statement_timeout_ms / 1000, self._kill)
        self._timer.daemon = True
        self._timer.start()

    def _kill(self) -> None:
        try:
            with connect(self._target, autocommit=True, application_name="airmigrate watchdog") as conn:
                log.warning("statement time limit reached: KILL QUERY %d", self._id)
                conn.execute(f"KILL QUERY {int(self._id)}")
        except Exception as exc:  # the statement may have ended meanwhile
            log.warning("could not end the statement: %s", message(exc))

    def cancel(self) -> None:
        self._timer.cancel()


def online_problems(conn, statements: list[str], executor: str) -> list[str]:
    """Each ALTER / CREATE INDEX the server could do only by copying the table with writes blocked (asked on an
    empty copy, as the executor will), unless `executor` is pt-osc and takes it: one line each quoting the
    server and naming the fix. A statement that names its own ALGORITHM / LOCK runs as written (lint judges
    it); one the probe cannot try (a column an earlier statement adds) is left to the run, which refuses it there
    in milliseconds before it copies."""
    problems = []
    for statement in (shown for s in statements for shown in dialect.shown(s, conn)):
        if online.table_span(statement) is None or online.renames_table(statement) or online.has_clause(statement):
            continue
        verdict, why = online.probe(conn, statement)
        if verdict is None or verdict.online or (executor == PT_OSC and ptosc.takes(statement)):
            continue
        problems.append(f"{' '.join(statement.split())[:160]}: the server can only do this by copying the table "
                        f"with writes blocked (ALGORITHM={verdict.algorithm}, LOCK={verdict.lock}); it says: "
                        f"\"{verdict.refusal or 'no reason given'}\". {COPY_FIX}")
    return problems
