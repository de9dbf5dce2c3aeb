"""PostgreSQL's text for what the console, the report, the plan and the lifecycle commands read and write in
airmigrate's state tables beyond :mod:`.state_sql`: time arithmetic (rows/s now, heartbeat ages, batch seconds),
the catalog's list of state tables, the baseline's upsert, and how a script shows its session settings.

The same names as every engine's ``console_sql`` module (reached through ``Engine.console_sql()``); the text is
what these modules ran before the MySQL engine came, word for word.
"""

from __future__ import annotations

from airmigrate.engines.sql import Json

NOW = "now()"  # the transaction's time: what the console's actions stamp airmigrate.controls with
DUMP_LABEL = "pg_dump -Fc"  # the report's name for a table dump of this engine


def state_tables(conn) -> set[str]:
    """The tables of the schema airmigrate (an older version's may lack the newer ones)."""
    return {row[0] for row in conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON "
                                           "n.oid = c.relnamespace WHERE n.nspname = 'airmigrate'")}


def pacer_rate(conn, run_id: int, window_s: int) -> float | None:
    """The pacer's latest rows/s logged in the last `window_s` seconds (None: none logged)."""
    row = conn.execute("SELECT rows_per_s FROM airmigrate.pacing_log WHERE run_id = %s AND "
                       "at > clock_timestamp() - make_interval(secs => %s) AND rows_per_s IS NOT NULL "
                       "ORDER BY at DESC LIMIT 1", (run_id, window_s)).fetchone()
    return float(row[0]) if row else None


def busy(conn, run_id: int, idle_s: int) -> bool:
    """A shard at work: a batch finished in the last `idle_s` seconds, or its pacer logged in the last 5."""
    return bool(conn.execute(
        "SELECT EXISTS (SELECT FROM airmigrate.batches WHERE run_id = %s AND finished_at > clock_timestamp() - "
        "make_interval(secs => %s)) OR EXISTS (SELECT FROM airmigrate.pacing_log WHERE run_id = %s AND at > "
        "clock_timestamp() - interval '5 seconds')", (run_id, idle_s, run_id)).fetchone()[0])


def rows_done_within(conn, run_id: int, window_s: int) -> int:
    """Rows the run's succeeded batches changed in the last `window_s` seconds."""
    return int(conn.execute("SELECT coalesce(sum(rows), 0) FROM airmigrate.batches WHERE run_id = %s AND "
                            "status = 'succeeded' AND finished_at > clock_timestamp() - make_interval(secs => %s)",
                            (run_id, window_s)).fetchone()[0])


def holder_heartbeat(conn, run_id: int) -> tuple | None:
    """(holder, seconds since its heartbeat or None) of the run's lease holder; None when nobody holds it."""
    return conn.execute("SELECT holder, extract(epoch FROM now() - heartbeat_at)::float FROM airmigrate.runs "
                        "WHERE run_id = %s AND holder IS NOT NULL", (run_id,)).fetchone()


def rate_per_10s(conn, run_id: int, limit: int) -> list[tuple]:
    """(start of a 10 s slot, rows/s in it) from the succeeded batches, newest first: the chart without a pacer."""
    return conn.execute(
        "SELECT to_timestamp(floor(extract(epoch FROM finished_at) / 10) * 10) AS at, sum(rows) / 10.0 "
        "FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded' AND finished_at IS NOT NULL "
        "GROUP BY 1 ORDER BY 1 DESC LIMIT %s", (run_id, limit)).fetchall()


def batch_page(conn, run_id: int, tries: str, last_failure: str, limit: int, offset: int) -> list[tuple]:
    """The batches failed first, then running, then by number: number, lo, hi, status, size, rows, attempts,
    worker, error, started, finished, seconds (to now while running). `tries` and `last_failure` are the
    caller's neutral subqueries over airmigrate.batch_attempts (or constants)."""
    return conn.execute(
        f"SELECT batch_no, lo, hi, status, size, rows, greatest(attempts, {tries}), worker, "
        f"coalesce(last_error, {last_failure}), started_at, finished_at, "
        "extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at) FROM airmigrate.batches b "
        "WHERE run_id = %s AND status <> 'split' ORDER BY CASE status WHEN 'failed' THEN 0 WHEN 'running' THEN 1 "
        "WHEN 'pending' THEN 2 ELSE 3 END, batch_no LIMIT %s OFFSET %s", (run_id, limit, offset)).fetchall()


def measured_rate(conn, migration_id: str):
    """Rows/s of the target's 200 most recent succeeded batches, this migration's own first (the plan's ETA)."""
    return conn.execute(
        "SELECT sum(rows) / nullif(sum(extract(epoch FROM finished_at - started_at)), 0) FROM "
        "(SELECT b.rows, b.started_at, b.finished_at FROM airmigrate.batches b JOIN airmigrate.runs r "
        "USING (run_id) WHERE b.status = 'succeeded' AND b.rows > 0 "
        "ORDER BY r.migration_id = %s DESC, b.finished_at DESC LIMIT 200) recent", (migration_id,)).fetchone()[0]


# -- baseline (lifecycle.migrate.baseline), inside one transaction ------------------------------------------------
def baseline_lock(conn) -> None:
    """One baseline at a time, until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('airmigrate.baseline'))")


def baseline_conflicts(conn, ids: list[str], active: list[str]) -> tuple[list[tuple], list[tuple]]:
    """(the ids' history rows other than rolled_back as (id, status), the ids with a run in `active` as (id,))."""
    taken = conn.execute(
        "SELECT migration_id, status FROM airmigrate.history WHERE migration_id = ANY(%s) "
        "AND status <> 'rolled_back' ORDER BY migration_id", (ids,)).fetchall()
    busy_ids = conn.execute(
        "SELECT DISTINCT migration_id FROM airmigrate.runs WHERE migration_id = ANY(%s) AND status = ANY(%s) "
        "ORDER BY migration_id", (ids, active)).fetchall()
    return list(taken), list(busy_ids)


def record_baseline(conn, migration_id: str, checksum: str, files: dict, by: str) -> int:
    """The migration recorded applied now (a rolled_back row replaced, any other left): the rows written (0 or 1)."""
    return conn.execute(
        "INSERT INTO airmigrate.history AS h (migration_id, checksum, status, files, started_at, "
        "applied_at, applied_by, duration_s) VALUES (%s, %s, 'applied', %s, now(), now(), %s, 0) "
        "ON CONFLICT (migration_id) DO UPDATE SET checksum = EXCLUDED.checksum, status = 'applied', "
        "files = EXCLUDED.files, started_at = now(), applied_at = now(), applied_by = EXCLUDED.applied_by, "
        "duration_s = 0, error = NULL, backup_path = NULL, snapshot_table = NULL, rolled_back_at = NULL, "
        "rolled_back_by = NULL WHERE h.status = 'rolled_back'",
        (migration_id, checksum, Json(files), by)).rowcount


# -- how `plan --sql` and the report's rollback script show the session's limits ---------------------------------
def timeout_settings(lock_timeout_ms: int, statement_timeout_ms: int, local: bool, conn=None) -> list[str]:
    prefix = "LOCAL " if local else ""
    return [f"SET {prefix}lock_timeout = '{lock_timeout_ms}ms';",
            f"SET {prefix}statement_timeout = '{statement_timeout_ms}ms';"]


# -- the console's kept connection (console.pool) -----------------------------------------------------------------
def connection_usable(conn) -> bool:
    """Open and not broken, as far as the driver knows without asking the server."""
    return not conn.closed and not conn.broken


def connection_idle(conn) -> bool:
    """Usable and in no transaction: safe to hand out again after an error."""
    return not conn.broken and conn.info.transaction_status.name in ("IDLE",)
