"""MySQL's and MariaDB's text for what the console, the report, the plan and the lifecycle commands read and write in
airmigrate's state tables beyond :mod:`.state_sql` (the same names as every engine's ``console_sql`` module).

What differs from PostgreSQL's, and why:
- The state tables' times are UTC in DATETIME(6) columns (see :mod:`.state_sql`): "now" is UTC_TIMESTAMP(6), never
  NOW() (the session's time zone, which stays the application's), and intervals are TIMESTAMPDIFF in microseconds.
  Times read here come back as aware UTC datetimes, as PostgreSQL's timestamptz do, so the console's arithmetic
  with ``datetime.now(timezone.utc)`` works the same.
- ``rows`` is a reserved word: quoted.
- No transaction-scoped advisory lock: the baseline locks a row of airmigrate.xact_locks (released at commit or
  rollback), as begin_run does.
- No ``INSERT ... ON CONFLICT ... WHERE``: the baseline replaces a rolled_back row by UPDATE, else inserts one.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone

from airmigrate.engines.mysql import dialect, state_sql
from airmigrate.engines.mysql.ddl import lock_wait_seconds
from airmigrate.engines.mysql.state_names import QUALIFIER, schema_of

NOW = state_sql.NOW
DUMP_LABEL = "mysqldump --single-transaction"
BASELINE_LOCK = (0, zlib.crc32(b"airmigrate.baseline"))


def _utc(value):
    """A DATETIME of the state tables (naive, UTC) as an aware datetime."""
    return value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) and value.tzinfo is None else value


def state_tables(conn) -> set[str]:
    """The tables of the target's state database, airmigrate__<db> (an older version's may lack the newer ones;
    the name is a literal here, which the connection's rewrite of the ``airmigrate.`` qualifier does not reach)."""
    return {row[0] for row in conn.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                                           (schema_of(conn, QUALIFIER),))}


def pacer_rate(conn, run_id: int, window_s: int) -> float | None:
    row = conn.execute(f"SELECT rows_per_s FROM airmigrate.pacing_log WHERE run_id = %s AND at > {NOW} - "
                       "INTERVAL %s SECOND AND rows_per_s IS NOT NULL ORDER BY at DESC LIMIT 1",
                       (run_id, window_s)).fetchone()
    return float(row[0]) if row else None


def busy(conn, run_id: int, idle_s: int) -> bool:
    return bool(conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM airmigrate.batches WHERE run_id = %s AND finished_at > {NOW} - "
        f"INTERVAL %s SECOND) OR EXISTS (SELECT 1 FROM airmigrate.pacing_log WHERE run_id = %s AND at > {NOW} - "
        "INTERVAL 5 SECOND)", (run_id, idle_s, run_id)).fetchone()[0])


def rows_done_within(conn, run_id: int, window_s: int) -> int:
    return int(conn.execute("SELECT COALESCE(SUM(`rows`), 0) FROM airmigrate.batches WHERE run_id = %s AND "
                            f"status = 'succeeded' AND finished_at > {NOW} - INTERVAL %s SECOND",
                            (run_id, window_s)).fetchone()[0])


def holder_heartbeat(conn, run_id: int) -> tuple | None:
    row = conn.execute(f"SELECT holder, TIMESTAMPDIFF(MICROSECOND, heartbeat_at, {NOW}) / 1e6 FROM airmigrate.runs "
                       "WHERE run_id = %s AND holder IS NOT NULL", (run_id,)).fetchone()
    return (row[0], float(row[1]) if row[1] is not None else None) if row else None


def rate_per_10s(conn, run_id: int, limit: int) -> list[tuple]:
    """10 s slots counted from the epoch in UTC (TIMESTAMPDIFF, not UNIX_TIMESTAMP, which reads the session's
    time zone)."""
    rows = conn.execute(
        "SELECT DATE_ADD(TIMESTAMP('1970-01-01'), INTERVAL FLOOR(TIMESTAMPDIFF(SECOND, '1970-01-01', finished_at) / 10) * 10 "
        "SECOND) AS slot, SUM(`rows`) / 10.0 FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded' "
        "AND finished_at IS NOT NULL GROUP BY slot ORDER BY slot DESC LIMIT %s", (run_id, limit)).fetchall()
    return [(_utc(at), rate) for at, rate in rows]


def batch_page(conn, run_id: int, tries: str, last_failure: str, limit: int, offset: int) -> list[tuple]:
    rows = conn.execute(
        f"SELECT batch_no, lo, hi, status, size, b.`rows`, GREATEST(attempts, {tries}), worker, "
        f"COALESCE(last_error, {last_failure}), started_at, finished_at, "
        f"TIMESTAMPDIFF(MICROSECOND, started_at, COALESCE(finished_at, {NOW})) / 1e6 FROM airmigrate.batches b "
        "WHERE run_id = %s AND status <> 'split' ORDER BY CASE status WHEN 'failed' THEN 0 WHEN 'running' THEN 1 "
        "WHEN 'pending' THEN 2 ELSE 3 END, batch_no LIMIT %s OFFSET %s", (run_id, limit, offset)).fetchall()
    return [(*row[:9], _utc(row[9]), _utc(row[10]), row[11]) for row in rows]


def measured_rate(conn, migration_id: str):
    return conn.execute(
        "SELECT SUM(`rows`) / NULLIF(SUM(TIMESTAMPDIFF(MICROSECOND, started_at, finished_at) / 1e6), 0) FROM "
        "(SELECT b.`rows`, b.started_at, b.finished_at FROM airmigrate.batches b JOIN airmigrate.runs r "
        "USING (run_id) WHERE b.status = 'succeeded' AND b.`rows` > 0 "
        "ORDER BY r.migration_id = %s DESC, b.finished_at DESC LIMIT 200) recent", (migration_id,)).fetchone()[0]


# -- baseline (lifecycle.migrate.baseline), inside one transaction ------------------------------------------------
def baseline_lock(conn) -> None:
    state_sql.xact_lock(conn, BASELINE_LOCK)


def baseline_conflicts(conn, ids: list[str], active: list[str]) -> tuple[list[tuple], list[tuple]]:
    if not ids:
        return [], []
    taken = conn.execute("SELECT migration_id, status FROM airmigrate.history WHERE migration_id IN %s "
                         "AND status <> 'rolled_back' ORDER BY migration_id", (list(ids),)).fetchall()
    busy_ids = conn.execute("SELECT DISTINCT migration_id FROM airmigrate.runs WHERE migration_id IN %s AND status "
                            "IN %s ORDER BY migration_id", (list(ids), list(active))).fetchall()
    return list(taken), list(busy_ids)


def record_baseline(conn, migration_id: str, checksum: str, files: dict, by: str) -> int:
    """A rolled_back row is replaced; else a new row (0 when one appeared meanwhile: the caller refuses)."""
    replaced = conn.execute(
        f"UPDATE airmigrate.history SET checksum = %s, status = 'applied', files = %s, started_at = {NOW}, "
        f"applied_at = {NOW}, applied_by = %s, duration_s = 0, error = NULL, backup_path = NULL, "
        "snapshot_table = NULL, rolled_back_at = NULL, rolled_back_by = NULL "
        "WHERE migration_id = %s AND status = 'rolled_back'",
        (checksum, json.dumps(files), by, migration_id)).rowcount
    if replaced:
        return replaced
    return conn.execute(
        "INSERT INTO airmigrate.history (migration_id, checksum, status, files, started_at, applied_at, applied_by, "
        f"duration_s) VALUES (%s, %s, 'applied', %s, {NOW}, {NOW}, %s, 0) "
        "ON DUPLICATE KEY UPDATE migration_id = migration_id",
        (migration_id, checksum, json.dumps(files), by)).rowcount


# -- how `plan --sql` and the report's rollback script show the session's limits ---------------------------------
def timeout_settings(lock_timeout_ms: int, statement_timeout_ms: int, local: bool, conn=None) -> list[str]:
    """What the executor sets (engines.mysql.ddl.set_timeouts): whole seconds for the lock waits; the statement
    limit in the server's form (MariaDB: max_statement_time in s; MySQL 8: max_execution_time in ms, SELECTs only,
    the executor's watchdog ends a longer DDL statement). No SET LOCAL: the limits are the session's."""
    seconds = lock_wait_seconds(lock_timeout_ms)
    limit = (f"SET SESSION max_statement_time = {round(statement_timeout_ms / 1000, 3):g};"
             f"  -- MySQL 8: max_execution_time = {int(statement_timeout_ms)}"
             if dialect.flavor(conn) == dialect.MARIADB else
             f"SET SESSION max_execution_time = {int(statement_timeout_ms)};"
             f"  -- SELECTs only: a longer DDL statement is ended by airmigrate's watchdog (KILL QUERY)")
    return [f"SET SESSION lock_wait_timeout = {seconds};", f"SET SESSION innodb_lock_wait_timeout = {seconds};", limit]


# -- the console's kept connection (console.pool) -----------------------------------------------------------------
SERVER_STATUS_IN_TRANS = 1  # the server's status flag for an open transaction (MySQL's protocol docs)


def connection_usable(conn) -> bool:
    """Open, as far as PyMySQL knows without asking the server."""
    return bool(conn.open)


def connection_idle(conn) -> bool:
    """Open and in no transaction (the server says so in every reply's status flags)."""
    return bool(conn.open) and not conn.server_status & SERVER_STATUS_IN_TRANS


# -- the commands that do not run on MySQL yet, each with why and what to do instead ------------------------------
REFUSALS = {
    "rehearse": ("the rehearsal copies the tables with pg_dump and measures locks and WAL from PostgreSQL's "
                 "statistics (pg_locks, pg_current_wal_lsn); the MySQL engine has no copy or measurement yet",
                 "rehearse on a staging copy of the database instead: point AIRMIGRATE_TARGET_URL at it and run "
                 "`airmigrate run <migration>` there, then `airmigrate run <migration> --rollback`"),
    "import": ("imported Flyway and Alembic projects keep their tool's history table with PostgreSQL's SQL; the "
               "MySQL engine cannot write it yet",
               "run the project with its own tool on MySQL, and record what it applied in airmigrate with "
               "`airmigrate baseline --to <id>` for the folders that repeat it"),
    "docs": ("the schema documentation reads PostgreSQL's catalog (pg_class, pg_description); the MySQL engine has "
             "no reader for it yet",
             "read the tables' columns and comments from information_schema.COLUMNS (COLUMN_COMMENT), or run "
             "`airmigrate docs` against a PostgreSQL copy of the schema"),
}


def command_refusal(command: str) -> tuple[str, str] | None:
    return REFUSALS.get(command)
