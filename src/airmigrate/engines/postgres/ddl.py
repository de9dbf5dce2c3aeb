"""PostgreSQL's safe DDL executor: statements split and grouped by PostgreSQL's own parser, each group under
lock_timeout/statement_timeout, retried on a lock timeout with backoff, the blockers named.

Credentials never reach a log line or an error message (targets are shown with ``Target.describe``).
"""

from __future__ import annotations

import logging
import random
import threading
import time

import pglast
import psycopg
from pglast.enums import AlterTableType

from airmigrate.engines import sql
from airmigrate.engines.postgres.connection import connect, first_line as _first_line
from airmigrate.engines.target import Target
from airmigrate.errors import TransientError

log = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"
TRANSIENT_SQLSTATES = {LOCK_NOT_AVAILABLE, "40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006"}


def estimate_rows(conn, schema: str, table: str) -> int:
    """The planner's row count: pg_class.reltuples, or for a table never analyzed (reltuples -1) the planner's
    own estimate from its size on disk (EXPLAIN), so a fresh table does not read as empty. Never counts."""
    qualified = sql.Identifier(schema, table)
    row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                       (qualified.as_string(conn),)).fetchone()
    if row is None:
        return 0
    if row[0] >= 0:
        return int(row[0])
    plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}").format(qualified)).fetchone()[0]
    return int(plan[0]["Plan"]["Plan Rows"])


def split_statements(text: str) -> list[str]:
    """Split a SQL file into statements with PostgreSQL's own parser (pglast)."""
    return [s.strip() for s in pglast.split(text) if s.strip()]


def needs_autocommit(statement: str) -> bool:
    """True for statements PostgreSQL refuses inside a transaction block (CONCURRENTLY, VACUUM, ...)."""
    node = pglast.parse_sql(statement)[0].stmt
    name = type(node).__name__
    if name in {"IndexStmt", "DropStmt", "ReindexStmt"}:
        if getattr(node, "concurrent", False):
            return True
        params = getattr(node, "params", None) or ()
        return any(getattr(p, "defname", "") == "concurrently" for p in params)
    return name in {"VacuumStmt", "CreatedbStmt", "DropdbStmt", "AlterSystemStmt", "CreateTableSpaceStmt"}


def validates_constraint(statement: str) -> bool:
    """ALTER TABLE ... VALIDATE CONSTRAINT: a full scan under SHARE UPDATE EXCLUSIVE (writes go on), but only
    in a transaction of its own; beside the ADD CONSTRAINT ... NOT VALID before it, the scan would run under
    that statement's ACCESS EXCLUSIVE lock and block every read and write of the table."""
    node = pglast.parse_sql(statement)[0].stmt
    return type(node).__name__ == "AlterTableStmt" and any(
        cmd.subtype == AlterTableType.AT_ValidateConstraint for cmd in node.cmds or ())


def group_statements(statements: list[str]) -> list[tuple[bool, list[str]]]:
    """Group consecutive transactional statements; each autocommit statement stands alone, and so does each
    VALIDATE CONSTRAINT (in its own transaction, see :func:`validates_constraint`)."""
    groups: list[tuple[bool, list[str]]] = []
    joinable = False  # may the next transactional statement join the last group?
    for stmt in statements:
        auto, alone = needs_autocommit(stmt), validates_constraint(stmt)
        if auto or alone or not joinable:
            groups.append((auto, [stmt]))
        else:
            groups[-1][1].append(stmt)
        joinable = not (auto or alone)
    return groups


def set_timeouts(cur, lock_timeout_ms: int, statement_timeout_ms: int, local: bool) -> None:
    """Both in one statement (set_config is SET as a function): one round trip, paid by every batch's claim."""
    cur.execute("SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
                (f"{lock_timeout_ms}ms", local, f"{statement_timeout_ms}ms", local))


def run_ddl(target: Target, sql_text: str, *, lock_timeout_ms: int = 500, statement_timeout_ms: int = 600_000,
            attempts: int = 8, table: tuple[str, str] | None = None) -> list[str]:
    """Run a SQL file safely: every statement under lock_timeout/statement_timeout, transactional
    statements together in one transaction, CONCURRENTLY ones alone in autocommit; a lock
    timeout (55P03) is retried with exponential backoff and jitter. Returns the statements run."""
    statements = split_statements(sql_text)
    for autocommit, group in group_statements(statements):
        run_group(target, group, autocommit, lock_timeout_ms=lock_timeout_ms,
                  statement_timeout_ms=statement_timeout_ms, attempts=attempts, table=table)
    return statements


def run_group(target: Target, group: list[str], autocommit: bool, *, lock_timeout_ms: int,
              statement_timeout_ms: int, attempts: int, table: tuple[str, str] | None,
              still_needed=None) -> None:
    """One transaction (or one autocommit statement), retried on lock timeout with backoff and jitter.

    Behind an autovacuum the retry waits a little longer than deadlock_timeout: an autovacuum only gives
    its lock up to a waiter that has waited that long, so retrying under a shorter lock_timeout would
    never get through. Behind an anti-wraparound vacuum (which never gives up) we wait, without queueing
    a lock, until it has finished. Before each retry `still_needed()` (when given) looks at the run's state
    again: a group someone recorded as done meanwhile is not run twice."""
    if autocommit:
        _drop_invalid_leftovers(target, group)
    timeout_ms = lock_timeout_ms
    for attempt in range(1, attempts + 1):
        if attempt > 1 and still_needed is not None and not still_needed():
            log.info("not retrying: the state says this step is done meanwhile")
            return
        probe = None
        try:
            with connect(target, autocommit=True) as conn:
                probe = BlockerProbe(target, conn.info.backend_pid, timeout_ms / 2000)
                if autocommit:
                    set_timeouts(conn, timeout_ms, statement_timeout_ms, local=False)
                    for stmt in group:
                        _execute_logged(conn, stmt)
                else:
                    with conn.transaction():
                        set_timeouts(conn, timeout_ms, statement_timeout_ms, local=True)
                        for stmt in group:
                            _execute_logged(conn, stmt)
            return
        except psycopg.errors.LockNotAvailable as exc:
            if autocommit:
                _drop_invalid_indexes(target, table)
            blockers = probe.result() if probe else None
            described = probe.described() if probe else None
            if attempt == attempts:
                raise TransientError(
                    f"lock_timeout ({timeout_ms} ms) hit {attempts} times on: {group[0][:120]}; blocked by "
                    f"{described or _lock_holders(target, table)}. Airflow will retry; or end that transaction"
                ) from exc
            timeout_ms = _next_lock_timeout(target, blockers or [], lock_timeout_ms, statement_timeout_ms, table)
            delay = min(30.0, 0.2 * 2 ** attempt) * random.uniform(0.5, 1.5)
            log.warning("lock timeout on attempt %d/%d (%s); blocked by: %s; retrying in %.1fs with lock_timeout "
                        "%d ms", attempt, attempts, _first_line(exc), described or _lock_holders(target, table),
                        delay, timeout_ms)
            time.sleep(delay)
        finally:
            if probe:
                probe.cancel()


def _next_lock_timeout(target: Target, blockers: list[dict], lock_timeout_ms: int, statement_timeout_ms: int,
                       table: tuple[str, str] | None = None) -> int:
    """The lock_timeout for the next attempt, from who blocked this one (see :func:`run_group`)."""
    wraparound = [b for b in blockers if b["wraparound"]]
    if wraparound:
        wait_until_gone(target, [b["pid"] for b in wraparound], statement_timeout_ms / 1000, table)
        return lock_timeout_ms
    if any(b["autovacuum"] for b in blockers):
        with connect(target, autocommit=True) as conn:
            deadlock_ms = conn.execute("SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'"
                                       ).fetchone()[0]
        return max(lock_timeout_ms, deadlock_ms + 250)
    return lock_timeout_ms


def wait_until_gone(target: Target, pids: list[int], limit_s: float, table: tuple[str, str] | None = None) -> None:
    """Poll (holding no lock) until these backends hold no lock on the table any more (or have ended, when no
    table is known: a worker moves on to other tables), at most limit_s."""
    log.warning("blocked by an anti-wraparound autovacuum (pid %s), which never yields and must not be cancelled: "
                "waiting for it to finish", ", ".join(map(str, pids)))
    query = ("SELECT count(*) FROM pg_locks WHERE pid = ANY(%s) AND relation = to_regclass(%s)" if table else
             "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)")
    params = (pids, f'"{table[0]}"."{table[1]}"') if table else (pids,)
    deadline = time.monotonic() + limit_s
    with connect(target, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if not conn.execute(query, params).fetchone()[0]:
                return
            time.sleep(1.0)


class BlockerProbe:
    """Half-way through lock_timeout, ask PostgreSQL who blocks our backend (pg_blocking_pids),
    with their query and transaction age, so the log names what to end (and the retry knows whether
    an autovacuum is in the way)."""

    # the wraparound flag is read from the whole query text: a long table name pushes it past any cut
    QUERY = ("SELECT pid, now() - xact_start, state, left(query, 100), backend_type = 'autovacuum worker', "
             "backend_type = 'autovacuum worker' AND query LIKE '%%(to prevent wraparound)' "
             "FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids(%s))")

    def __init__(self, target: Target, pid: int, delay_s: float):
        self._target, self._pid, self._found, self._error = target, pid, None, None
        self._timer = threading.Timer(delay_s, self._probe)
        self._timer.daemon = True
        self._timer.start()

    def _probe(self) -> None:
        try:
            with connect(self._target, autocommit=True) as conn:
                rows = conn.execute(self.QUERY, (self._pid,)).fetchall()
            self._found = [{"pid": pid, "age": age, "state": state, "query": query or "", "autovacuum": bool(av),
                            "wraparound": bool(wrap)} for pid, age, state, query, av, wrap in rows]
        except Exception as exc:  # diagnostics only
            self._error = f"(could not ask pg_blocking_pids: {_first_line(exc)})"

    def result(self) -> list[dict] | None:
        self._timer.join(timeout=2)
        return self._found

    def described(self) -> str | None:
        """The blockers as a log line: pid, state, transaction age, query."""
        if self._error:
            return self._error
        return "; ".join(f"pid {b['pid']} ({b['state']}, transaction open {b['age']}): {b['query']}"
                         for b in self._found or []) or None

    def cancel(self) -> None:
        self._timer.cancel()


def _execute_logged(conn, stmt: str) -> None:
    log.info("SQL> %s", stmt)
    conn.execute(stmt)


def _lock_holders(target: Target, table: tuple[str, str] | None) -> str:
    """Who holds locks on the table (pid, age, query) so the log says what to end."""
    if table is None:
        return "unknown (no table given)"
    query = sql.SQL(
        "SELECT a.pid, now() - a.xact_start AS age, left(a.query, 80) FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.relation = to_regclass({}) "
        "AND a.pid <> pg_backend_pid() AND l.granted"
    ).format(sql.Literal(f'"{table[0]}"."{table[1]}"'))
    try:
        with connect(target, autocommit=True) as conn:
            rows = conn.execute(query).fetchall()
    except Exception as exc:  # only diagnostics: never hide the original error
        return f"(could not read pg_locks: {_first_line(exc)})"
    return "; ".join(f"pid {pid} for {age}: {q}" for pid, age, q in rows) or "none any more"


def _drop_invalid_indexes(target: Target, table: tuple[str, str] | None) -> None:
    """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind; drop it before the retry."""
    if table is None:
        return
    find = sql.SQL(
        "SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid AND i.indrelid = to_regclass({})"
    ).format(sql.Literal(f'"{table[0]}"."{table[1]}"'))
    with connect(target, autocommit=True) as conn:
        for schema, name in conn.execute(find).fetchall():
            log.warning("dropping invalid index %s.%s left by a failed concurrent build", schema, name)
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name)))


def _drop_invalid_leftovers(target: Target, group: list[str]) -> None:
    """An index a failed CREATE INDEX CONCURRENTLY left INVALID would make `IF NOT EXISTS` skip the rebuild
    and leave a useless index: drop it first. Only indexes these statements name: another session's build
    in progress is also INVALID and must not be touched."""
    names = [node.idxname for node in (pglast.parse_sql(s)[0].stmt for s in group)
             if type(node).__name__ == "IndexStmt" and node.idxname]
    if not names:
        return
    query = ("SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
             "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid AND c.relname = ANY(%s) "
             "AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = c.oid)")
    with connect(target, autocommit=True) as conn:
        for schema, name in conn.execute(query, (names,)).fetchall():
            log.warning("dropping invalid index %s.%s left by an earlier failed build", schema, name)
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name)))


def is_transient(exc: BaseException) -> bool:
    """A lock timeout, a serialization failure, a deadlock, a restart or a lost connection: a retry can help."""
    if isinstance(exc, TransientError):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(exc, psycopg.OperationalError) or (sqlstate in TRANSIENT_SQLSTATES)
