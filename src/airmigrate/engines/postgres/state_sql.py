"""PostgreSQL's text for airmigrate's state tables, the lease and the backfill's claims: the statements that differ
between engines, under the same names in every engine's ``state_sql`` module (reached through
``Engine.state_sql()``; the neutral statements stay in :mod:`airmigrate.state`). Moved here unchanged, byte for
byte: a PostgreSQL target sees exactly what it saw before the MySQL engine came."""

from __future__ import annotations

from airmigrate.engines import sql

# The schema: one script (PostgreSQL runs it as one statement list under a transaction-scoped advisory lock)
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
-- the claim's index: the pending batches in order (the primary key would walk every finished batch of the run
-- first, a scan per claim that grows with the table: 100,000 batches on a billion rows)
CREATE INDEX IF NOT EXISTS batches_pending ON airmigrate.batches (run_id, batch_no) WHERE status = 'pending';
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


# -- the one transaction-scoped lock: begin_run's, keyed by the migration --------------------------------------
XACT_LOCK = "SELECT pg_advisory_xact_lock(%s, %s)"
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('airmigrate.schema'))"


def state_table_exists(conn, table: str) -> bool:
    """Does airmigrate.<table> exist (a first deploy has none yet)?"""
    return conn.execute(f"SELECT to_regclass('airmigrate.{table}')").fetchone()[0] is not None


def relation_exists(conn, schema: str, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (sql.Identifier(schema, table).as_string(conn),)).fetchone()[0] \
        is not None


# -- runs -------------------------------------------------------------------------------------------------------
ACTIVE_RUN_FOR_UPDATE = ("SELECT run_id, owner, holder, status FROM airmigrate.runs WHERE migration_id = %s "
                         "AND direction = %s AND status = ANY(%s) FOR UPDATE")
TAKE_OVER_RUN = ("UPDATE airmigrate.runs SET status = 'running', dag_run_id = %(owner)s, error = NULL, "
                 "owner = %(owner)s, holder = %(holder)s, owner_kind = %(kind)s, heartbeat_at = now(), "
                 "lease_until = now() + make_interval(secs => %(lease)s) WHERE run_id = %(run_id)s")
INSERT_RUN = ("INSERT INTO airmigrate.runs (migration_id, direction, dag_run_id, status, owner, holder, owner_kind, "
              "heartbeat_at, lease_until) VALUES (%(migration_id)s, %(direction)s, %(owner)s, 'running', %(owner)s, "
              "%(holder)s, %(kind)s, now(), now() + make_interval(secs => %(lease)s)) RETURNING run_id")


def insert_run(conn, values: dict) -> int:
    """INSERT_RUN's new run_id."""
    return conn.execute(INSERT_RUN, values).fetchone()[0]


OWNED_RUN = ("SELECT run_id, owner, holder FROM airmigrate.runs WHERE migration_id = %s AND direction = %s "
             "AND status = ANY(%s)")
ACTIVE_RUN = "SELECT run_id FROM airmigrate.runs WHERE migration_id = %s AND direction = %s AND status = ANY(%s)"
LATEST_RUN = ("SELECT run_id, direction, dag_run_id, status, completed_stages, facts, started_at, finished_at, error "
              "FROM airmigrate.runs WHERE migration_id = %s AND (%s::text IS NULL OR direction = %s) "
              "ORDER BY run_id DESC LIMIT 1")
STAGE_DONE = "SELECT %s = ANY(completed_stages) FROM airmigrate.runs WHERE run_id = %s"
MARK_STAGE_DONE = ("UPDATE airmigrate.runs SET completed_stages = array_append(completed_stages, %s), "
                   "facts = facts || %s WHERE run_id = %s AND NOT (%s = ANY(completed_stages))")
ADD_FACTS = "UPDATE airmigrate.runs SET facts = facts || %s WHERE run_id = %s"


def mark_stage_done(conn, run_id: int, stage: str, facts: dict) -> None:
    """completed_stages + [stage] and facts merged (jsonb ||: each top-level key replaced), once per stage."""
    conn.execute(MARK_STAGE_DONE, (stage, sql.Json(facts), run_id, stage))


def add_facts(conn, run_id: int, facts: dict) -> None:
    conn.execute(ADD_FACTS, (sql.Json(facts), run_id))


FINISH_RUN = "UPDATE airmigrate.runs SET status = %s, finished_at = now(), error = %s WHERE run_id = %s"
# the rollback's finish: the migration's up runs are rolled back with it
UP_RUNS_ROLLED_BACK = ("UPDATE airmigrate.runs SET status = 'rolled_back', finished_at = coalesce(finished_at, now()) "
                       "WHERE migration_id = %s AND direction = 'up' AND status <> 'rolled_back'")
RUNS_OF = (
    "SELECT r.run_id, r.direction, r.dag_run_id, r.status, r.started_at, r.finished_at, r.error, "
    "coalesce((SELECT jsonb_agg(jsonb_build_object('action', a.action, 'actor', a.actor, 'at', a.at) "
    "ORDER BY a.at) FROM airmigrate.actions a WHERE a.run_id = r.run_id AND (a.action LIKE 'approve%%' "
    "OR a.action LIKE 'reject%%')), '[]'::jsonb) AS approvals "
    "FROM airmigrate.runs r WHERE r.migration_id = %s ORDER BY r.run_id DESC LIMIT %s")

# -- history ----------------------------------------------------------------------------------------------------
START_HISTORY = (
    "INSERT INTO airmigrate.history (migration_id, checksum, status, files) VALUES (%s, %s, 'running', %s) "
    "ON CONFLICT (migration_id) DO UPDATE SET checksum = EXCLUDED.checksum, status = 'running', "
    "files = EXCLUDED.files, started_at = now(), applied_at = NULL, rolled_back_at = NULL, "
    "rolled_back_by = NULL, error = NULL")
ALL_HISTORY = (
    "SELECT h.migration_id, h.checksum, h.status, h.files, h.error, h.started_at, h.applied_at, h.applied_by, "
    "h.duration_s, h.rolled_back_at, h.rolled_back_by, "
    "(SELECT coalesce(sum(b.rows), 0) FROM airmigrate.batches b WHERE b.status = 'succeeded' AND b.run_id = "
    " (SELECT max(r.run_id) FROM airmigrate.runs r WHERE r.migration_id = h.migration_id AND r.direction = 'up')"
    ") AS rows_backfilled FROM airmigrate.history h ORDER BY h.migration_id")
MARK_APPLIED = ("UPDATE airmigrate.history SET status = 'applied', applied_at = now(), applied_by = %s, "
                "duration_s = extract(epoch FROM now() - started_at) WHERE migration_id = %s")
MARK_ROLLED_BACK = ("UPDATE airmigrate.history SET status = 'rolled_back', rolled_back_at = now(), rolled_back_by = %s "
                    "WHERE migration_id = %s")

# -- batches ----------------------------------------------------------------------------------------------------
BATCH_SUMMARY = (
    "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'), "
    "count(*) FILTER (WHERE status = 'pending'), coalesce(sum(rows) FILTER (WHERE status = 'succeeded'), 0), "
    "extract(epoch FROM max(finished_at) - min(started_at)) FROM airmigrate.batches WHERE run_id = %s "
    "AND status <> 'split'")
PROGRESS_NOW = (
    "SELECT c.estimated_rows, c.exhausted, coalesce(sum(b.size) FILTER (WHERE b.status = 'succeeded'), 0), "
    "count(*) FILTER (WHERE b.status IN ('pending', 'running', 'failed')) FROM airmigrate.cursors c "
    "LEFT JOIN airmigrate.batches b USING (run_id) WHERE c.run_id = %s GROUP BY c.run_id")
PROGRESS_REFRESH = (
    "SELECT coalesce(sum(b.size) FILTER (WHERE b.status = 'succeeded'), 0), max(c.estimated_rows), "
    "extract(epoch FROM now() - max(c.started_at)) FROM airmigrate.batches b JOIN airmigrate.cursors c "
    "USING (run_id) WHERE run_id = %s")
FAILED_SHARE = ("SELECT count(*), count(*) FILTER (WHERE status = 'failed') FROM airmigrate.batches "
                "WHERE run_id = %s AND status <> 'split'")
OPEN_CONTROLS = "INSERT INTO airmigrate.controls (run_id) VALUES (%s) ON CONFLICT DO NOTHING"
OPEN_CURSOR = ("INSERT INTO airmigrate.cursors (run_id, batch_size, estimated_rows) VALUES (%s, %s, %s) "
               "ON CONFLICT (run_id) DO NOTHING")
# The batch's three statements, each one round trip (a full-speed shard's own CPU goes mostly into its round trips:
# bench/full_speed_profile.py): the claim sets the batch's limits (set_config is SET LOCAL as a function, evaluated
# with the row it locks), the success records its attempt, the range's row moves the cursor.
CLAIM_BATCH = (
    "SELECT batch_no, lo, hi, size, attempts, set_config('lock_timeout', %s, true), "
    "set_config('statement_timeout', %s, true) FROM airmigrate.batches WHERE run_id = %s AND status = 'pending' "
    "ORDER BY batch_no LIMIT 1 FOR UPDATE SKIP LOCKED")
BATCH_SUCCEEDED = (
    # now() is the transaction's start, i.e. the claim; clock_timestamp() is the real end
    "WITH done AS (UPDATE airmigrate.batches SET status = 'succeeded', rows = %s, attempts = attempts + 1, "
    "worker = %s, last_error = NULL, started_at = now(), finished_at = clock_timestamp() "
    "WHERE run_id = %s AND batch_no = %s RETURNING run_id, batch_no, lo, hi, worker) "
    "INSERT INTO airmigrate.batch_attempts (run_id, batch_no, lo, hi, outcome, error, worker, started_at) "
    "SELECT run_id, batch_no, lo, hi, 'succeeded', NULL, worker, %s FROM done")
ADD_BATCH = (
    "WITH made AS (INSERT INTO airmigrate.batches (run_id, batch_no, lo, hi, size) VALUES (%s, %s, %s, %s, %s)) "
    "UPDATE airmigrate.cursors SET position = %s, next_batch_no = next_batch_no + 1 WHERE run_id = %s")


def claim_batch(conn, run_id: int, lock_timeout_ms: int, statement_timeout_ms: int) -> tuple | None:
    """The next pending batch, locked for this transaction (SKIP LOCKED), with the batch's limits set for the rest
    of it: (batch_no, lo, hi, size, attempts), None when none is pending."""
    row = conn.execute(CLAIM_BATCH, (f"{lock_timeout_ms}ms", f"{statement_timeout_ms}ms", run_id)).fetchone()
    return tuple(row[:5]) if row else None


def batch_succeeded(conn, run_id: int, batch_no: int, rows: int, worker: str, claimed_at) -> None:
    """The batch's state row and its attempt (airmigrate.batch_attempts), in the transaction of its data change (the
    claim's time is the transaction's)."""
    conn.execute(BATCH_SUCCEEDED, (rows, worker, run_id, batch_no, claimed_at))


def add_batch(conn, run_id: int, batch_no: int, lo: str, hi: str, size: int) -> None:
    """A pending batch for the range, and the cursor past it (the caller holds the cursor row)."""
    conn.execute(ADD_BATCH, (run_id, batch_no, lo, hi, size, hi, run_id))


def take_batch_numbers(conn, run_id: int, count: int) -> int:
    """Reserve `count` batch numbers on the run's cursor (a split's halves); returns the first."""
    assert count == 2, "a split takes two numbers"
    return conn.execute("UPDATE airmigrate.cursors SET next_batch_no = next_batch_no + 2 WHERE run_id = %s "
                        "RETURNING next_batch_no - 2", (run_id,)).fetchone()[0]


# -- the key walk (stages.backfill.keys) ------------------------------------------------------------------------
KEY_AS_TEXT = "{}::text AS {}"
FIRST_KEY = "SELECT {sel} FROM {t} {where} ORDER BY {order} OFFSET %s LIMIT 1"
ROW_BETWEEN = "{row} BETWEEN {v} AND {v}"

# -- the lease (airmigrate.lease) -------------------------------------------------------------------------------
TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
TRY_LOCK_SHARED = "SELECT pg_try_advisory_lock_shared(%s, %s)"
UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"
LOCK_SESSIONS = (
    "SELECT a.application_name, a.client_addr::text, l.pid, l.mode, a.backend_start FROM pg_locks l "
    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 2 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND NOT l.pid = ANY(%s)")
EXTEND_LEASE = (
    "UPDATE airmigrate.runs SET heartbeat_at = now(), lease_until = greatest(lease_until, now() + "
    "make_interval(secs => %s)) WHERE migration_id = %s AND owner IS NOT DISTINCT FROM %s AND status = "
    "'running'")
EXTEND_LEASE_UNTIL = (
    "UPDATE airmigrate.runs SET heartbeat_at = now(), lease_until = greatest(lease_until, %s + "
    "make_interval(secs => %s)), facts = facts || jsonb_build_object('waiting', %s::text) WHERE migration_id = %s "
    "AND owner IS NOT DISTINCT FROM %s AND status = 'running'")
OPEN_RUN = (
    "SELECT run_id, direction, status, owner, holder, owner_kind, facts->>'waiting' AS waiting, "
    "extract(epoch FROM now() - heartbeat_at)::float AS heartbeat_age, "
    "extract(epoch FROM lease_until - now())::float AS lease_left FROM airmigrate.runs "
    "WHERE migration_id = %s AND status IN ('pending', 'running', 'paused', 'failed') "
    "ORDER BY (status = 'running') DESC, run_id DESC LIMIT 1")

# -- health checks between batches (stages.backfill.tuning): a hard stop each; None = not measured here ---------
HEALTH_QUERIES = {
    "replication lag": "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) FROM pg_stat_replication",
    # the target database's own transactions: since PostgreSQL 14 only they hold back the vacuum of its tables
    # (one idle elsewhere on the server, e.g. another application's database, holds back shared catalogs only)
    "oldest transaction": (
        "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0) FROM pg_stat_activity "
        "WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
        "AND datname = current_database() AND application_name NOT LIKE 'airmigrate%%'"),
    # and its own lock waiters: another database's sessions wait on no lock of ours
    "lock waiters": "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()",
    "autovacuum": "SELECT count(*) FROM pg_stat_progress_vacuum WHERE relid = to_regclass(%(table)s)",
    "WAL backlog": "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), 0) / 1e6 "
                   "FROM pg_replication_slots WHERE restart_lsn IS NOT NULL AND NOT pg_is_in_recovery()",
}


# -- what Engine's state methods run ----------------------------------------------------------------------------

def create_state_tables(conn) -> None:
    """The whole script in one transaction under an advisory lock, so parallel shards do not race."""
    with conn.transaction():
        conn.execute(SCHEMA_LOCK)
        conn.execute(SCHEMA_DDL)


def xact_lock(conn, key: tuple[int, int]) -> None:
    conn.execute(XACT_LOCK, key)


def lease_try(conn, key: tuple[int, int], exclusive: bool, label: str) -> bool:
    """A session advisory lock (the label is the connection's application_name already)."""
    return bool(conn.execute(TRY_LOCK if exclusive else TRY_LOCK_SHARED, key).fetchone()[0])


def lease_release(conn, key: tuple[int, int]) -> None:
    conn.execute(UNLOCK, key)


def lease_sessions(conn, key: tuple[int, int], exclude: set[int]) -> list[tuple]:
    first, second = key
    return conn.execute(LOCK_SESSIONS, (first, second & 0xFFFFFFFF, list(exclude))).fetchall()


# -- facts read by the stages (cleanup, the backfill's sweep, generated steps)
APPLIED_RECORDED = "SELECT facts ? 'applied_recorded' FROM airmigrate.runs WHERE run_id = %s"
SWEEPS_DONE = "SELECT (facts ->> 'sweeps')::int FROM airmigrate.runs WHERE run_id = %s"


def live_columns(conn, run_id: int):
    """The run's recorded live_columns fact (a list), None when not recorded."""
    row = conn.execute("SELECT facts -> 'live_columns' FROM airmigrate.runs WHERE run_id = %s", (run_id,)).fetchone()
    return row[0] if row else None


def recorded_fact(conn, migration_id: str, name: str, active: bool):
    """The fact `name` of the migration's newest up run that has it (`active`: not rolled back); None if none."""
    row = conn.execute("SELECT facts -> %s FROM airmigrate.runs WHERE migration_id = %s AND direction = 'up' "
                       "AND facts ? %s AND (NOT %s OR status <> 'rolled_back') ORDER BY run_id DESC LIMIT 1",
                       (name, migration_id, name, active)).fetchone()
    return row[0] if row else None


def add_fact_once(conn, run_id: int, name: str, value) -> None:
    """Record the fact `name` unless the run has it already (a resumed run keeps the first)."""
    conn.execute(f"UPDATE airmigrate.runs SET facts = facts || jsonb_build_object('{name}', %s::jsonb) "
                 f"WHERE run_id = %s AND NOT facts ? '{name}'", (sql.Json(value), run_id))


def set_stage_time(conn, run_id: int, task_id: str, entry: dict) -> None:
    """facts.stage_times[task_id] = entry (the other stages' entries kept)."""
    conn.execute("UPDATE airmigrate.runs SET facts = jsonb_set(facts, '{stage_times}', "
                 "coalesce(facts->'stage_times', '{}'::jsonb) || jsonb_build_object(%s::text, %s::jsonb)) "
                 "WHERE run_id = %s", (task_id, sql.Json(entry), run_id))
