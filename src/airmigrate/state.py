"""State tables in the target database (schema ``airmigrate``).

The database enforces the rules: CHECK constraints on statuses and a partial unique
index that allows one active run per migration and direction. A backfill batch's
status row is updated in the same transaction as its data, so a crash can neither
lose nor double-count a batch.
"""

from __future__ import annotations

import getpass
import json
import logging
import os

from airmigrate import lease
from airmigrate.engines.sql import Json as Jsonb

log = logging.getLogger(__name__)

SCHEMA_DDL = """
CREATE SCHEMA IF NOT EXISTS airmigrate;
CREATE TABLE IF NOT EXISTS airmigrate.history (
    migration_id   text PRIMARY KEY,
    checksum       text NOT NULL,
    status         text NOT NULL,  -- running, applied, expanded, failed, rolled_back (see the upgrade below)
    backup_path    text,
    snapshot_table text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    applied_at     timestamptz,
    applied_by     text,
    duration_s     double precision,
    rolled_back_at timestamptz,
    rolled_back_by text
);
-- upgrades of state tables an earlier version made (only when needed: ALTER TABLE takes a lock even when it
-- would change nothing)
DO $upgrade$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'airmigrate.history'::regclass AND attname = 'files')
    THEN
        ALTER TABLE airmigrate.history ADD COLUMN IF NOT EXISTS error text, ADD COLUMN files jsonb,
            DROP CONSTRAINT IF EXISTS history_status_check;
        ALTER TABLE airmigrate.history ADD CONSTRAINT history_status_check
            CHECK (status IN ('running', 'applied', 'expanded', 'failed', 'rolled_back'));
    END IF;
END $upgrade$;
CREATE TABLE IF NOT EXISTS airmigrate.runs (
    run_id           bigserial PRIMARY KEY,
    migration_id     text NOT NULL,
    direction        text NOT NULL CHECK (direction IN ('up', 'down')),
    dag_run_id       text,
    status           text NOT NULL CHECK (status IN ('pending', 'running', 'paused', 'succeeded', 'failed', 'rolled_back')),
    completed_stages text[] NOT NULL DEFAULT '{}',
    facts            jsonb NOT NULL DEFAULT '{}',
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    error            text
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_active_per_migration
    ON airmigrate.runs (migration_id, direction) WHERE status IN ('pending', 'running', 'paused', 'failed');
-- one runner per migration (airmigrate.lease): the run's owner (its DAG run), who that is, and its lease
DO $lease$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'airmigrate.runs'::regclass AND attname = 'lease_until')
    THEN
        ALTER TABLE airmigrate.runs ADD COLUMN IF NOT EXISTS owner text, ADD COLUMN IF NOT EXISTS holder text,
            ADD COLUMN IF NOT EXISTS owner_kind text, ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz,
            ADD COLUMN lease_until timestamptz;
    END IF;
END $lease$;
CREATE TABLE IF NOT EXISTS airmigrate.batches (
    run_id      bigint NOT NULL REFERENCES airmigrate.runs ON DELETE CASCADE,
    batch_no    integer NOT NULL,
    lo          text NOT NULL,
    hi          text NOT NULL,
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'split')),
    size        integer NOT NULL DEFAULT 0,
    rows        bigint,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    worker      text,
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (run_id, batch_no)
);
CREATE TABLE IF NOT EXISTS airmigrate.cursors (
    run_id         bigint PRIMARY KEY REFERENCES airmigrate.runs ON DELETE CASCADE,
    position       text,
    exhausted      boolean NOT NULL DEFAULT false,
    next_batch_no  integer NOT NULL DEFAULT 0,
    batch_size     integer NOT NULL CHECK (batch_size > 0),
    estimated_rows bigint NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL DEFAULT now()
);
-- Pacing (airmigrate.pacing): the run's shared budget, written by the shard that leads, read by the others
-- and the console (which may change target_ratio while it runs); one log row per decision for the charts.
CREATE TABLE IF NOT EXISTS airmigrate.pacing (
    run_id       bigint PRIMARY KEY REFERENCES airmigrate.runs ON DELETE CASCADE,
    budget       real NOT NULL,
    target_ratio real,
    baseline_ms  double precision,
    probe_until  timestamptz,
    reason       text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS airmigrate.pacing_log (
    id           bigserial PRIMARY KEY,
    run_id       bigint NOT NULL REFERENCES airmigrate.runs ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    budget       real NOT NULL,
    target_ratio real,
    latency_ratio real,
    latency_ms   double precision,
    baseline_ms  double precision,
    blocked      integer NOT NULL DEFAULT 0,
    runnable     real,
    cpu_pressure real,
    external     double precision,
    rows_per_s   real,
    decision     text NOT NULL
);
CREATE INDEX IF NOT EXISTS pacing_log_run ON airmigrate.pacing_log (run_id, at);
-- Operations (airmigrate.control): what the console asked a running backfill to do, read by its shards every
-- few seconds, and every action with who and when (the migration's history of interventions).
CREATE TABLE IF NOT EXISTS airmigrate.controls (
    run_id      bigint PRIMARY KEY REFERENCES airmigrate.runs ON DELETE CASCADE,
    paused      boolean NOT NULL DEFAULT false,
    cancelled   boolean NOT NULL DEFAULT false,
    batch_size  integer CHECK (batch_size > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS airmigrate.actions (
    id           bigserial PRIMARY KEY,
    migration_id text NOT NULL,
    run_id       bigint,
    action       text NOT NULL,
    detail       text,
    actor        text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
-- Every attempt at a batch (issue 18): its outcome, error, worker and time. airmigrate.batches keeps only the
-- latest attempt (a retry resets it), this keeps them all, so a failed-then-retried batch stays on the record.
CREATE TABLE IF NOT EXISTS airmigrate.batch_attempts (
    id          bigserial PRIMARY KEY,
    run_id      bigint NOT NULL REFERENCES airmigrate.runs ON DELETE CASCADE,
    batch_no    integer NOT NULL,
    lo          text,
    hi          text,
    outcome     text NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'split')),
    error       text,
    worker      text,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS batch_attempts_run ON airmigrate.batch_attempts (run_id, batch_no);
"""

ACTIVE = ("pending", "running", "paused", "failed")


def who() -> str:
    """Who ran it: the Airflow run's owner when set, else the OS user."""
    return os.environ.get("AIRMIGRATE_USER") or getpass.getuser()


def ensure_schema(conn) -> None:
    """Create the state tables once; an advisory lock keeps parallel shards from racing."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('airmigrate.schema'))")
        conn.execute(SCHEMA_DDL)


def history(conn, migration_id: str) -> dict | None:
    cur = conn.execute(
        "SELECT migration_id, checksum, status, backup_path, snapshot_table, applied_at, applied_by, duration_s, "
        "error, files FROM airmigrate.history WHERE migration_id = %s", (migration_id,))
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row)) if row else None


def begin_run(conn, migration_id: str, direction: str, dag_run_id: str | None,
              owner: lease.Owner | None = None) -> tuple[int, bool]:
    """Start a run, or take over the unfinished one whose owner is gone (resume). Returns (run_id, resumed).

    Never joins a live run: while another runner owns an open run of this migration (either direction: a
    rollback never runs beside a live up run, nor the reverse) this raises LeaseHeld, naming it. The check
    and the claim happen in one transaction under a lock keyed by the migration, so two runners released at
    the same moment cannot both pass the check."""
    owner = owner or lease.owner_for(migration_id, dag_run_id)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (lease.LOCK_CLASS + 1, lease.lock_key(migration_id)[1]))
        busy = lease.live_foreign_run(conn, migration_id, dag_run_id)
        if busy:
            raise lease.LeaseHeld(lease.refusal(migration_id, busy))
        claim = ("owner = %(owner)s, holder = %(holder)s, owner_kind = %(kind)s, heartbeat_at = now(), "
                 "lease_until = now() + make_interval(secs => %(lease)s)")
        values = {"owner": dag_run_id, "holder": owner.holder, "kind": owner.kind, "lease": lease.lease_seconds(),
                  "migration_id": migration_id, "direction": direction}
        row = conn.execute(
            "SELECT run_id, owner, holder, status FROM airmigrate.runs WHERE migration_id = %s AND direction = %s "
            "AND status = ANY(%s) FOR UPDATE", (migration_id, direction, list(ACTIVE))).fetchone()
        if row:
            if row[1] != dag_run_id:
                log.info("run %d of %s (%s) was owned by %s, which is gone: %s takes it over and resumes it",
                         row[0], migration_id, row[3], row[2] or "an earlier runner", owner.holder)
            conn.execute("UPDATE airmigrate.runs SET status = 'running', dag_run_id = %(owner)s, error = NULL, "
                         + claim + " WHERE run_id = %(run_id)s", {**values, "run_id": row[0]})
            return row[0], True
        run_id = conn.execute(
            "INSERT INTO airmigrate.runs (migration_id, direction, dag_run_id, status, owner, holder, owner_kind, "
            "heartbeat_at, lease_until) VALUES (%(migration_id)s, %(direction)s, %(owner)s, 'running', %(owner)s, "
            "%(holder)s, %(kind)s, now(), now() + make_interval(secs => %(lease)s)) RETURNING run_id",
            values).fetchone()[0]
        return run_id, False


def owned_run(conn, migration_id: str, direction: str, dag_run_id: str | None) -> int | None:
    """The open run of this migration that `dag_run_id` owns; LeaseLost when another runner owns it now
    (a task of a runner that lost never acts, nor writes the run's state). None when there is no open run."""
    row = conn.execute(
        "SELECT run_id, owner, holder FROM airmigrate.runs WHERE migration_id = %s AND direction = %s "
        "AND status = ANY(%s)", (migration_id, direction, list(ACTIVE))).fetchone()
    if row is None:
        return None
    run_id, owner, holder = row
    if owner is not None and dag_run_id is not None and owner != dag_run_id:
        raise lease.LeaseLost(f"run {run_id} of {migration_id} is owned by {holder or owner} now, not by this DAG "
                              f"run ({dag_run_id}): this task stops and changes nothing")
    return run_id


def active_run(conn, migration_id: str, direction: str = "up") -> int | None:
    row = conn.execute(
        "SELECT run_id FROM airmigrate.runs WHERE migration_id = %s AND direction = %s AND status = ANY(%s)",
        (migration_id, direction, list(ACTIVE))).fetchone()
    return row[0] if row else None


def latest_run(conn, migration_id: str, direction: str | None = "up") -> dict | None:
    """The migration's newest run in that direction; with direction None whichever way it went (up or rollback):
    what its state is now (issue 18)."""
    cur = conn.execute(
        "SELECT run_id, direction, dag_run_id, status, completed_stages, facts, started_at, finished_at, error "
        "FROM airmigrate.runs WHERE migration_id = %s AND (%s::text IS NULL OR direction = %s) "
        "ORDER BY run_id DESC LIMIT 1", (migration_id, direction, direction))
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row)) if row else None


def stage_done(conn, run_id: int, stage: str) -> bool:
    row = conn.execute("SELECT %s = ANY(completed_stages) FROM airmigrate.runs WHERE run_id = %s",
                       (stage, run_id)).fetchone()
    return bool(row and row[0])


def mark_stage_done(conn, run_id: int, stage: str, **facts) -> None:
    """Record a finished stage (and facts for the report) so a resumed run skips it."""
    conn.execute(
        "UPDATE airmigrate.runs SET completed_stages = array_append(completed_stages, %s), facts = facts || %s "
        "WHERE run_id = %s AND NOT (%s = ANY(completed_stages))",
        (stage, Jsonb(json.loads(json.dumps(facts, default=str))), run_id, stage))


def add_facts(conn, run_id: int, **facts) -> None:
    conn.execute("UPDATE airmigrate.runs SET facts = facts || %s WHERE run_id = %s",
                 (Jsonb(json.loads(json.dumps(facts, default=str))), run_id))


def finish_run(conn, run_id: int, status: str, error: str | None = None) -> None:
    conn.execute("UPDATE airmigrate.runs SET status = %s, finished_at = now(), error = %s WHERE run_id = %s",
                 (status, error, run_id))


def start_history(conn, migration_id: str, checksum: str, files: dict[str, str] | None = None) -> None:
    """A run starts: status running, the checksum (and each file's, for drift reports) of what runs."""
    conn.execute(
        "INSERT INTO airmigrate.history (migration_id, checksum, status, files) VALUES (%s, %s, 'running', %s) "
        "ON CONFLICT (migration_id) DO UPDATE SET checksum = EXCLUDED.checksum, status = 'running', "
        "files = EXCLUDED.files, started_at = now(), applied_at = NULL, rolled_back_at = NULL, "
        "rolled_back_by = NULL, error = NULL",
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
    return conn.execute("SELECT to_regclass('airmigrate.history')").fetchone()[0] is not None


def all_history(conn) -> list[dict]:
    """Every history row with its latest up run's rows backfilled: what `airmigrate history` lists."""
    if conn.execute("SELECT to_regclass('airmigrate.history')").fetchone()[0] is None:
        return []
    cur = conn.execute(
        "SELECT h.migration_id, h.checksum, h.status, h.files, h.error, h.started_at, h.applied_at, h.applied_by, "
        "h.duration_s, h.rolled_back_at, h.rolled_back_by, "
        "(SELECT coalesce(sum(b.rows), 0) FROM airmigrate.batches b WHERE b.status = 'succeeded' AND b.run_id = "
        " (SELECT max(r.run_id) FROM airmigrate.runs r WHERE r.migration_id = h.migration_id AND r.direction = 'up')"
        ") AS rows_backfilled FROM airmigrate.history h ORDER BY h.migration_id")
    return [dict(zip([c.name for c in cur.description], row)) for row in cur.fetchall()]


def record_backup(conn, migration_id: str, backup_path: str | None, snapshot_table: str | None) -> None:
    conn.execute("UPDATE airmigrate.history SET backup_path = %s, snapshot_table = %s WHERE migration_id = %s",
                 (backup_path, snapshot_table, migration_id))


def mark_history_failed(conn, migration_id: str, error: str) -> None:
    """A run that stopped half-way: the history says failed, with the error, never a stale `running`."""
    conn.execute("UPDATE airmigrate.history SET status = 'failed', error = %s WHERE migration_id = %s "
                 "AND status IN ('running', 'expanded')", (error, migration_id))


def mark_applied(conn, migration_id: str) -> None:
    conn.execute(
        "UPDATE airmigrate.history SET status = 'applied', applied_at = now(), applied_by = %s, "
        "duration_s = extract(epoch FROM now() - started_at) WHERE migration_id = %s", (who(), migration_id))


def mark_rolled_back(conn, migration_id: str) -> None:
    conn.execute(
        "UPDATE airmigrate.history SET status = 'rolled_back', rolled_back_at = now(), rolled_back_by = %s "
        "WHERE migration_id = %s", (who(), migration_id))


def batch_summary(conn, run_id: int) -> dict:
    """Batches by status, rows done and wall time of the backfill: the numbers for status and the report."""
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'), "
        "count(*) FILTER (WHERE status = 'pending'), coalesce(sum(rows) FILTER (WHERE status = 'succeeded'), 0), "
        "extract(epoch FROM max(finished_at) - min(started_at)) FROM airmigrate.batches WHERE run_id = %s "
        "AND status <> 'split'", (run_id,)).fetchone()
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
    if conn.execute("SELECT to_regclass('airmigrate.batch_attempts')").fetchone()[0] is None:
        return []
    cur = conn.execute("SELECT batch_no, lo, hi, outcome, error, worker, started_at, finished_at FROM "
                       "airmigrate.batch_attempts WHERE run_id = %s ORDER BY batch_no, id", (run_id,))
    return [dict(zip([c.name for c in cur.description], row)) for row in cur.fetchall()]


def runs_of(conn, migration_id: str, limit: int = 50) -> list[dict]:
    """Every run of the migration, newest first, with the approvals given or refused in each (from
    airmigrate.actions): the console's list of runs."""
    cur = conn.execute(
        "SELECT r.run_id, r.direction, r.dag_run_id, r.status, r.started_at, r.finished_at, r.error, "
        "coalesce((SELECT jsonb_agg(jsonb_build_object('action', a.action, 'actor', a.actor, 'at', a.at) "
        "ORDER BY a.at) FROM airmigrate.actions a WHERE a.run_id = r.run_id AND (a.action LIKE 'approve%%' "
        "OR a.action LIKE 'reject%%')), '[]'::jsonb) AS approvals "
        "FROM airmigrate.runs r WHERE r.migration_id = %s ORDER BY r.run_id DESC LIMIT %s", (migration_id, limit))
    return [dict(zip([c.name for c in cur.description], row)) for row in cur.fetchall()]


PAUSE_GAP_S = 5.0  # no batch running for longer than this is a pause, not work (left out of the rate)


def progress_now(conn, run_id: int, recent: int = 50) -> dict | None:
    """The console's progress (issue 18 §10): keys covered against the estimate, never over 100% (when more keys
    turn up than the planner estimated, the estimate grows to them), and an ETA from the recent rate of work with
    the pauses left out: the last ``recent`` batches' keys over the time a batch was running."""
    if conn.execute("SELECT to_regclass('airmigrate.cursors')").fetchone()[0] is None:
        return None
    row = conn.execute(
        "SELECT c.estimated_rows, c.exhausted, coalesce(sum(b.size) FILTER (WHERE b.status = 'succeeded'), 0), "
        "count(*) FILTER (WHERE b.status IN ('pending', 'running', 'failed')) FROM airmigrate.cursors c "
        "LEFT JOIN airmigrate.batches b USING (run_id) WHERE c.run_id = %s GROUP BY c.run_id", (run_id,)).fetchone()
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
