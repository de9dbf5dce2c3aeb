"""State tables in the target database (schema ``airmigrate``; on MySQL / MariaDB the database ``airmigrate``).

The database enforces the rules: CHECK constraints on statuses and a unique index that allows one active run
per migration and direction (PostgreSQL: a partial index; MySQL: a generated column, the migration while its
run is active and NULL after, under a UNIQUE index). A backfill batch's status row is updated in the same
transaction as its data, so a crash can neither lose nor double-count a batch.

The tables' DDL and the statements that differ between engines are the engine's (``Engine.state_sql()``, the
same names in each engine's ``state_sql`` module); what every engine reads alike stays here.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import time
from datetime import datetime, timezone

from airmigrate import engines, lease
from airmigrate.engines.sql import Json as Jsonb

log = logging.getLogger(__name__)


ACTIVE = ("pending", "running", "paused", "failed")
CANCELLED_WAIT_S = 120.0  # a run begun while a cancelled one's shards finish their batch waits this long for them


def who() -> str:
    """Who ran it: the Airflow run's owner when set, else the OS user."""
    return os.environ.get("AIRMIGRATE_USER") or getpass.getuser()


def _q(conn):
    """The connection's engine's state statements."""
    return engines.of(conn).state_sql()


def _names(cur) -> list[str]:
    return [c[0] for c in cur.description]


def _json(value):
    """A JSON column's value as Python (drivers that hand JSON over as text: MySQL's)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def row_dict(cur, row, *json_columns: str) -> dict | None:
    """A row as {column: value}, the `json_columns` decoded (MySQL hands JSON over as text)."""
    return _row(cur, row, *json_columns)


def utc(value):
    """A time read from the state tables, aware: they hold UTC on every engine (PostgreSQL's timestamptz comes back
    aware; MySQL's DATETIME naive), so the console's and the report's arithmetic with aware times works alike."""
    return value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) and value.tzinfo is None else value


def _row(cur, row, *json_columns: str) -> dict | None:
    if row is None:
        return None
    found = {name: utc(value) for name, value in zip(_names(cur), row)}
    for name in json_columns:
        if name in found:
            found[name] = _json(found[name])
    return found


def ensure_schema(conn) -> None:
    """Create the state tables once; the engine's lock keeps parallel shards from racing."""
    engines.of(conn).create_state_tables(conn)


def history(conn, migration_id: str) -> dict | None:
    cur = conn.execute(
        "SELECT migration_id, checksum, status, backup_path, snapshot_table, applied_at, applied_by, duration_s, "
        "error, files FROM airmigrate.history WHERE migration_id = %s", (migration_id,))
    row = cur.fetchone()
    return _row(cur, row, "files")


def begin_run(conn, migration_id: str, direction: str, dag_run_id: str | None,
              owner: lease.Owner | None = None) -> tuple[int, bool]:
    """Start a run, or take over the unfinished one whose owner is gone (resume). Returns (run_id, resumed).

    Never joins a live run: while another runner owns an open run of this migration (either direction: a
    rollback never runs beside a live up run, nor the reverse) this raises LeaseHeld, naming it. The check
    and the claim happen in one transaction under a lock keyed by the migration, so two runners released at
    the same moment cannot both pass the check. An open run that was cancelled is waited for (up to
    CANCELLED_WAIT_S): its shards let go after their batch."""
    owner = owner or lease.owner_for(conn, migration_id, dag_run_id)
    started, said = time.monotonic(), False
    while True:
        waited = round(time.monotonic() - started)
        try:
            return _begin_run_once(conn, migration_id, direction, dag_run_id, owner, waited)
        except lease.LeaseHeld:
            cancelled = cancelled_foreign_run(conn, migration_id, dag_run_id)
            if cancelled is None or waited >= CANCELLED_WAIT_S:
                raise
        if not said:
            log.info("run %d of %s was cancelled and its shards are finishing their batch: waiting up to %.0f s for "
                     "them to let go", cancelled, migration_id, CANCELLED_WAIT_S)
            said = True
        time.sleep(1.0)


def cancelled_foreign_run(conn, migration_id: str, dag_run_id: str | None) -> int | None:
    """The open run of another owner when it was cancelled from the console (its shards stop after their batch,
    then its DAG run ends and lets go), else None. A rollback clicked right after the cancel waits for that
    instead of refusing (the console offers it at once)."""
    with conn.transaction():
        row = conn.execute("SELECT r.run_id FROM airmigrate.runs r JOIN airmigrate.controls c ON c.run_id = r.run_id "
                           f"WHERE r.migration_id = %s AND r.status IN ({', '.join(['%s'] * len(ACTIVE))}) "
                           "AND c.cancelled AND (r.owner IS NULL OR r.owner <> %s) ORDER BY r.run_id DESC LIMIT 1",
                           (migration_id, *ACTIVE, dag_run_id or "")).fetchone()
    return row[0] if row else None


def _begin_run_once(conn, migration_id: str, direction: str, dag_run_id: str | None, owner: lease.Owner,
                    waited: float = 0.0) -> tuple[int, bool]:
    with conn.transaction():
        engines.of(conn).xact_lock(conn, (lease.LOCK_CLASS + 1, lease.lock_key(migration_id)[1]))
        busy = lease.live_foreign_run(conn, migration_id, dag_run_id)
        if busy:
            raise lease.LeaseHeld(lease.refusal(migration_id, busy, waited=waited))
        values = {"owner": dag_run_id, "holder": owner.holder, "kind": owner.kind, "lease": lease.lease_seconds(),
                  "migration_id": migration_id, "direction": direction}
        row = conn.execute(_q(conn).ACTIVE_RUN_FOR_UPDATE, (migration_id, direction, list(ACTIVE))).fetchone()
        if row:
            if row[1] != dag_run_id:
                log.info("run %d of %s (%s) was owned by %s, which is gone: %s takes it over and resumes it",
                         row[0], migration_id, row[3], row[2] or "an earlier runner", owner.holder)
            conn.execute(_q(conn).TAKE_OVER_RUN, {**values, "run_id": row[0]})
            return row[0], True
        return _q(conn).insert_run(conn, values), False


def owned_run(conn, migration_id: str, direction: str, dag_run_id: str | None) -> int | None:
    """The open run of this migration that `dag_run_id` owns; LeaseLost when another runner owns it now
    (a task of a runner that lost never acts, nor writes the run's state). None when there is no open run."""
    row = conn.execute(_q(conn).OWNED_RUN, (migration_id, direction, list(ACTIVE))).fetchone()
    if row is None:
        return None
    run_id, owner, holder = row
    if owner is not None and dag_run_id is not None and owner != dag_run_id:
        raise lease.LeaseLost(f"run {run_id} of {migration_id} is owned by {holder or owner} now, not by this DAG "
                              f"run ({dag_run_id}): this task stops and changes nothing")
    return run_id


def active_run(conn, migration_id: str, direction: str = "up") -> int | None:
    row = conn.execute(_q(conn).ACTIVE_RUN, (migration_id, direction, list(ACTIVE))).fetchone()
    return row[0] if row else None


def latest_run(conn, migration_id: str, direction: str | None = "up") -> dict | None:
    """The migration's newest run in that direction; with direction None whichever way it went (up or rollback):
    what its state is now (issue 18)."""
    cur = conn.execute(_q(conn).LATEST_RUN, (migration_id, direction, direction))
    return _row(cur, cur.fetchone(), "completed_stages", "facts")


def stage_done(conn, run_id: int, stage: str) -> bool:
    row = conn.execute(_q(conn).STAGE_DONE, (stage, run_id)).fetchone()
    return bool(row and row[0])


def mark_stage_done(conn, run_id: int, stage: str, **facts) -> None:
    """Record a finished stage (and facts for the report) so a resumed run skips it."""
    _q(conn).mark_stage_done(conn, run_id, stage, json.loads(json.dumps(facts, default=str)))


def run_facts(conn, run_id: int) -> dict:
    """The run's facts (empty when it has none)."""
    row = conn.execute("SELECT facts FROM airmigrate.runs WHERE run_id = %s", (run_id,)).fetchone()
    facts = row[0] if row else None
    return (json.loads(facts) if isinstance(facts, (str, bytes)) else facts) or {}


def add_facts(conn, run_id: int, **facts) -> None:
    _q(conn).add_facts(conn, run_id, json.loads(json.dumps(facts, default=str)))


def finish_run(conn, run_id: int, status: str, error: str | None = None) -> None:
    conn.execute(_q(conn).FINISH_RUN,
                 (status, error, run_id))


def start_history(conn, migration_id: str, checksum: str, files: dict[str, str] | None = None) -> None:
    """A run starts: status running, the checksum (and each file's, for drift reports) of what runs."""
    conn.execute(
        _q(conn).START_HISTORY,
        (migration_id, checksum, Jsonb(files) if files is not None else None))


def resume_history(conn, migration_id: str, checksum: str, files: dict[str, str] | None = None) -> None:
    """A run resumes (after a fix, say): the history holds the checksum of the files it now runs with, so the
    migration does not look changed once it is applied. Status and timings stay."""
    conn.execute("UPDATE airmigrate.history SET checksum = %s, files = coalesce(%s, files), "
                 "status = CASE WHEN status = 'failed' THEN 'running' ELSE status END WHERE migration_id = %s",
                 (checksum, Jsonb(files) if files is not None else None, migration_id))


def mark_expanded(conn, migration_id: str) -> None:
    """Expand, backfill and validation done; the contract waits (`airmigrate complete`, or trigger again)."""
    conn.execute("UPDATE airmigrate.history SET status = 'expanded', error = NULL WHERE migration_id = %s",
                 (migration_id,))


def tables_exist(conn) -> bool:
    """Has airmigrate's state been created in this target yet (a first deploy has no history table)?"""
    return _q(conn).state_table_exists(conn, "history")


def all_history(conn) -> list[dict]:
    """Every history row with its latest up run's rows backfilled: what `airmigrate history` lists."""
    if not _q(conn).state_table_exists(conn, "history"):
        return []
    cur = conn.execute(_q(conn).ALL_HISTORY)
    return [_row(cur, row, "files") for row in cur.fetchall()]


def record_backup(conn, migration_id: str, backup_path: str | None, snapshot_table: str | None) -> None:
    conn.execute("UPDATE airmigrate.history SET backup_path = %s, snapshot_table = %s WHERE migration_id = %s",
                 (backup_path, snapshot_table, migration_id))


def mark_history_failed(conn, migration_id: str, error: str) -> None:
    """A run that stopped half-way: the history says failed, with the error, never a stale `running`."""
    conn.execute("UPDATE airmigrate.history SET status = 'failed', error = %s WHERE migration_id = %s "
                 "AND status IN ('running', 'expanded')", (error, migration_id))


def mark_applied(conn, migration_id: str) -> None:
    conn.execute(_q(conn).MARK_APPLIED, (who(), migration_id))


def mark_rolled_back(conn, migration_id: str) -> None:
    conn.execute(_q(conn).MARK_ROLLED_BACK, (who(), migration_id))


def batch_summary(conn, run_id: int) -> dict:
    """Batches by status, rows done and wall time of the backfill: the numbers for status and the report."""
    row = conn.execute(_q(conn).BATCH_SUMMARY, (run_id,)).fetchone()
    keys = ("total", "succeeded", "failed", "pending", "rows", "seconds")
    return dict(zip(keys, row))


def state_pending(conn, run_id: int) -> int:
    return conn.execute("SELECT count(*) FROM airmigrate.batches WHERE run_id = %s AND status = 'pending'",
                        (run_id,)).fetchone()[0]


def failed_batches(conn, run_id: int) -> list[tuple]:
    return conn.execute(
        "SELECT batch_no, lo, hi, attempts, last_error FROM airmigrate.batches "
        "WHERE run_id = %s AND status = 'failed' ORDER BY batch_no", (run_id,)).fetchall()


def record_attempt(conn, run_id: int, batch_no: int, lo, hi, outcome: str, error: str | None, worker: str,
                   started_at) -> None:
    """One attempt at a batch, in the transaction that records its outcome in airmigrate.batches (so the two
    never disagree): the history a retry would otherwise erase."""
    conn.execute("INSERT INTO airmigrate.batch_attempts (run_id, batch_no, lo, hi, outcome, error, worker, "
                 "started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                 (run_id, batch_no, lo, hi, outcome, error, worker, started_at))


def batch_attempts(conn, run_id: int) -> list[dict]:
    """Every attempt of the run's batches, by batch and time (empty when an older schema has no such table)."""
    if not _q(conn).state_table_exists(conn, "batch_attempts"):
        return []
    cur = conn.execute("SELECT batch_no, lo, hi, outcome, error, worker, started_at, finished_at FROM "
                       "airmigrate.batch_attempts WHERE run_id = %s ORDER BY batch_no, id", (run_id,))
    return [_row(cur, row) for row in cur.fetchall()]


def runs_of(conn, migration_id: str, limit: int = 50) -> list[dict]:
    """Every run of the migration, newest first, with the approvals given or refused in each (from
    airmigrate.actions): the console's list of runs."""
    cur = conn.execute(_q(conn).RUNS_OF, (migration_id, limit))
    return [_row(cur, row, "approvals") for row in cur.fetchall()]


PAUSE_GAP_S = 5.0  # no batch running for longer than this is a pause, not work (left out of the rate)


def progress_now(conn, run_id: int, recent: int = 50) -> dict | None:
    """The console's progress (issue 18 §10): keys covered against the estimate, never over 100% (when more keys
    turn up than the planner estimated, the estimate grows to them), and an ETA from the recent rate of work with
    the pauses left out: the last ``recent`` batches' keys over the time a batch was running."""
    if not _q(conn).state_table_exists(conn, "cursors"):
        return None
    row = conn.execute(_q(conn).PROGRESS_NOW, (run_id,)).fetchone()
    if row is None:
        return None
    estimated, exhausted, covered, unfinished = row
    total = max(int(estimated), int(covered), 1)
    done = bool(exhausted and not unfinished)
    percent = 100.0 if done else min(99.9, 100.0 * int(covered) / total)
    spans = conn.execute("SELECT started_at, finished_at, size FROM airmigrate.batches WHERE run_id = %s AND "
                         "status = 'succeeded' AND started_at IS NOT NULL AND finished_at IS NOT NULL "
                         "ORDER BY finished_at DESC LIMIT %s", (run_id, recent)).fetchall()
    rate = _busy_rate(spans)
    return {"estimated": total, "covered": int(covered), "percent": percent, "exhausted": bool(exhausted),
            "rate": rate, "eta_s": 0.0 if done or not rate else (total - int(covered)) / rate}


def _busy_rate(spans: list[tuple]) -> float:
    """Keys per second of time when at least one batch ran (overlapping shards counted once, gaps longer than
    PAUSE_GAP_S left out; shorter ones, the pacer's sleeps between batches, count as part of the work)."""
    if not spans:
        return 0.0
    busy, keys, end = 0.0, 0, None
    for start, finish, size in sorted(spans):
        keys += size
        if end is None or (start - end).total_seconds() > PAUSE_GAP_S:
            busy += (finish - start).total_seconds()
        elif finish > end:
            busy += (finish - end).total_seconds() if start <= end else (finish - start).total_seconds() + \
                (start - end).total_seconds()
        end = finish if end is None or finish > end else end
    return keys / busy if busy > 0 else 0.0
