"""MySQL's and MariaDB's text for airmigrate's state tables, the lease and the backfill's claims: the same names as
every engine's ``state_sql`` module (reached through ``Engine.state_sql()``), each doing what PostgreSQL's does.

What differs, and why:
- The tables live in a database of the target's own on the same server, ``airmigrate__<database>`` (MySQL has no
  schemas inside a database): the statements say ``airmigrate.`` and the connection reads it as that database
  (:mod:`.state_names` says why; :mod:`.legacy_state` moves the server-wide state of earlier versions in).
- One active run per migration and direction: MySQL has no partial unique index, so a stored generated column
  holds ``direction:migration`` while the run is active (pending, running, paused, failed) and NULL after; a
  UNIQUE index on it allows any number of NULLs and one active run.
- facts, files and completed_stages are JSON columns (MariaDB: LONGTEXT checked by JSON_VALID). Facts are merged
  key by key with JSON_SET, which replaces a top-level key as PostgreSQL's ``jsonb || jsonb`` does (MySQL's
  JSON_MERGE_PATCH would merge nested objects and drop nulls).
- Times are UTC (UTC_TIMESTAMP(6) in DATETIME(6) columns), whatever the session's time zone, which stays the
  application's: airmigrate never changes how the user's own SQL reads NOW().
- ``rows`` is a reserved word (window functions): quoted in every statement.
- No transaction-scoped advisory lock: begin_run locks a row of ``airmigrate.xact_locks`` (released at commit
  or rollback, as pg_advisory_xact_lock is). The lease (GET_LOCK and its registry) is in :mod:`.leases`.
"""

from __future__ import annotations

import json
from datetime import timezone

from airmigrate.engines.mysql import ddl
from airmigrate.engines.mysql.legacy_state import adopt_legacy_state
from airmigrate.engines.mysql.state_names import quote_identifier, schema_of

NOW = "UTC_TIMESTAMP(6)"
ACTIVE_KEY = ("CASE WHEN status IN ('pending', 'running', 'paused', 'failed') "
              "THEN CONCAT(direction, ':', migration_id) END")

CREATE_DATABASE = "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4"  # the state database's name
SCHEMA_DDL = (
    f"""CREATE TABLE IF NOT EXISTS airmigrate.history (
    migration_id   VARCHAR(255) NOT NULL PRIMARY KEY,
    checksum       VARCHAR(255) NOT NULL,
    status         VARCHAR(16) NOT NULL
                   CHECK (status IN ('running', 'applied', 'expanded', 'failed', 'rolled_back')),
    backup_path    TEXT,
    snapshot_table VARCHAR(64),
    started_at     DATETIME(6) NOT NULL DEFAULT ({NOW}),
    applied_at     DATETIME(6),
    applied_by     TEXT,
    duration_s     DOUBLE,
    rolled_back_at DATETIME(6),
    rolled_back_by TEXT,
    error          TEXT,
    files          JSON
) ENGINE = InnoDB""",
    f"""CREATE TABLE IF NOT EXISTS airmigrate.runs (
    run_id           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    migration_id     VARCHAR(255) NOT NULL,
    direction        VARCHAR(4) NOT NULL CHECK (direction IN ('up', 'down')),
    dag_run_id       VARCHAR(250),
    status           VARCHAR(16) NOT NULL
                     CHECK (status IN ('pending', 'running', 'paused', 'succeeded', 'failed', 'rolled_back')),
    completed_stages JSON NOT NULL DEFAULT ('[]'),
    facts            JSON NOT NULL DEFAULT ('{{}}'),
    started_at       DATETIME(6) NOT NULL DEFAULT ({NOW}),
    finished_at      DATETIME(6),
    error            TEXT,
    owner            VARCHAR(250),
    holder           TEXT,
    owner_kind       VARCHAR(16),
    heartbeat_at     DATETIME(6),
    lease_until      DATETIME(6),
    active_key       VARCHAR(260) AS ({ACTIVE_KEY}) STORED,
    UNIQUE KEY runs_one_active_per_migration (active_key),
    KEY runs_migration (migration_id, direction, run_id)
) ENGINE = InnoDB""",
    """CREATE TABLE IF NOT EXISTS airmigrate.batches (
    run_id      BIGINT NOT NULL,
    batch_no    INT NOT NULL,
    lo          TEXT NOT NULL,
    hi          TEXT NOT NULL,
    status      VARCHAR(10) NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'split')),
    size        INT NOT NULL DEFAULT 0,
    `rows`      BIGINT,
    attempts    INT NOT NULL DEFAULT 0,
    last_error  TEXT,
    worker      TEXT,
    started_at  DATETIME(6),
    finished_at DATETIME(6),
    PRIMARY KEY (run_id, batch_no),
    KEY batches_claim (run_id, status, batch_no),
    FOREIGN KEY (run_id) REFERENCES airmigrate.runs (run_id) ON DELETE CASCADE
) ENGINE = InnoDB""",
    f"""CREATE TABLE IF NOT EXISTS airmigrate.cursors (
    run_id         BIGINT NOT NULL PRIMARY KEY,
    position       TEXT,
    exhausted      BOOLEAN NOT NULL DEFAULT FALSE,
    next_batch_no  INT NOT NULL DEFAULT 0,
    batch_size     INT NOT NULL CHECK (batch_size > 0),
    estimated_rows BIGINT NOT NULL DEFAULT 0,
    started_at     DATETIME(6) NOT NULL DEFAULT ({NOW}),
    FOREIGN KEY (run_id) REFERENCES airmigrate.runs (run_id) ON DELETE CASCADE
) ENGINE = InnoDB""",
    f"""CREATE TABLE IF NOT EXISTS airmigrate.pacing (
    run_id       BIGINT NOT NULL PRIMARY KEY,
    budget       FLOAT NOT NULL,
    target_ratio FLOAT,
    baseline_ms  DOUBLE,
    probe_until  DATETIME(6),
    reason       TEXT,
    updated_at   DATETIME(6) NOT NULL DEFAULT ({NOW}),
    FOREIGN KEY (run_id) REFERENCES airmigrate.runs (run_id) ON DELETE CASCADE
) ENGINE = InnoDB""",
    f"""CREATE TABLE IF NOT EXISTS airmigrate.pacing_log (
    id            BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    run_id        BIGINT NOT NULL,
    at            DATETIME(6) NOT NULL DEFAULT ({NOW}),
    budget        FLOAT NOT NULL,
    target_ratio  FLOAT,
    latency_ratio FLOAT,
    latency_ms    DOUBLE,
    baseline_ms   DOUBLE,
    blocked       INT NOT NULL DEFAULT 0,
    runnable      FLOAT,
    cpu_pressure  FLOAT,
    external      DOUBLE,
    rows_per_s    FLOAT,
    decision      TEXT NOT NULL,
    KEY pacing_log_run (run_id, at),
    FOREIGN KEY (run_id) REFERENCES airmigrate.runs (run_id) ON DELETE CASCADE
) ENGINE = InnoDB""",
    f"""CREATE TABLE IF NOT EXISTS airmigrate.controls (
    run_id     BIGINT NOT NULL PRIMARY KEY,
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    cancelled  BOOLEAN NOT NULL DEFAULT FALSE,
    batch_size INT CHECK (batch_size > 0),
    updated_at DATETIME(6) NOT NULL DEFAULT ({NOW}),
    FOREIGN KEY (run_id) REFERENCES airmigrate.runs (run_id) ON DELETE CASCADE
) ENGINE = InnoDB""",
    f"""CREATE TABLE IF NOT EXISTS airmigrate.actions (
    id           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    migration_id VARCHAR(255) NOT NULL,
    run_id       BIGINT,
    action       VARCHAR(64) NOT NULL,
    detail       TEXT,
    actor        TEXT NOT NULL,
    at           DATETIME(6) NOT NULL DEFAULT ({NOW}),
    KEY actions_run (run_id, at)
) ENGINE = InnoDB""",
    f"""CREATE TABLE IF NOT EXISTS airmigrate.batch_attempts (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    run_id      BIGINT NOT NULL,
    batch_no    INT NOT NULL,
    lo          TEXT,
    hi          TEXT,
    outcome     VARCHAR(10) NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'split')),
    error       TEXT,
    worker      TEXT,
    started_at  DATETIME(6),
    finished_at DATETIME(6) NOT NULL DEFAULT ({NOW}),
    KEY batch_attempts_run (run_id, batch_no),
    FOREIGN KEY (run_id) REFERENCES airmigrate.runs (run_id) ON DELETE CASCADE
) ENGINE = InnoDB""",
    # the pacer's canary commits a write here (pacing_sql.CANARY): one counter row per CONNECTION_ID() % 64
    """CREATE TABLE IF NOT EXISTS airmigrate.canary (
    slot  INT NOT NULL PRIMARY KEY,
    trips BIGINT NOT NULL DEFAULT 0
) ENGINE = InnoDB""",
    # begin_run's transaction-scoped lock: a row per key, locked until the transaction ends
    """CREATE TABLE IF NOT EXISTS airmigrate.xact_locks (
    k1 BIGINT NOT NULL,
    k2 BIGINT NOT NULL,
    PRIMARY KEY (k1, k2)
) ENGINE = InnoDB""",
)
TABLES = ("history", "runs", "batches", "cursors", "pacing", "pacing_log", "controls", "actions", "batch_attempts",
          "xact_locks", "canary")

SCHEMA_LOCK = "SELECT GET_LOCK('airmigrate.schema', 60)"
# k1 = k1: the duplicate row is locked all the same (no VALUES(): deprecated from MySQL 8.0.20, see START_HISTORY)
XACT_LOCK = "INSERT INTO airmigrate.xact_locks (k1, k2) VALUES (%s, %s) ON DUPLICATE KEY UPDATE k1 = k1"


def state_table_exists(conn, table: str) -> bool:
    return relation_exists(conn, "airmigrate", table)


def relation_exists(conn, schema: str, table: str) -> bool:
    """Does `schema`.`table` exist (schema ``airmigrate``: the target's state database)?"""
    return conn.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                        (schema_of(conn, schema), table)).fetchone()[0] > 0


# -- runs -------------------------------------------------------------------------------------------------------
# PyMySQL writes a list parameter as ('a', 'b'): `IN %s` is PostgreSQL's `= ANY(%s)` with the same parameters
ACTIVE_RUN_FOR_UPDATE = ("SELECT run_id, owner, holder, status FROM airmigrate.runs WHERE migration_id = %s "
                         "AND direction = %s AND status IN %s FOR UPDATE")
TAKE_OVER_RUN = ("UPDATE airmigrate.runs SET status = 'running', dag_run_id = %(owner)s, error = NULL, "
                 f"owner = %(owner)s, holder = %(holder)s, owner_kind = %(kind)s, heartbeat_at = {NOW}, "
                 f"lease_until = {NOW} + INTERVAL ROUND(%(lease)s * 1000000) MICROSECOND WHERE run_id = %(run_id)s")
INSERT_RUN = ("INSERT INTO airmigrate.runs (migration_id, direction, dag_run_id, status, owner, holder, owner_kind, "
              "heartbeat_at, lease_until) VALUES (%(migration_id)s, %(direction)s, %(owner)s, 'running', %(owner)s, "
              f"%(holder)s, %(kind)s, {NOW}, {NOW} + INTERVAL ROUND(%(lease)s * 1000000) MICROSECOND)")


def insert_run(conn, values: dict) -> int:
    """INSERT_RUN's new run_id (MySQL has no INSERT ... RETURNING; the session's last insert id is the row's)."""
    return conn.execute(INSERT_RUN, values).lastrowid


OWNED_RUN = ("SELECT run_id, owner, holder FROM airmigrate.runs WHERE migration_id = %s AND direction = %s "
             "AND status IN %s")
ACTIVE_RUN = "SELECT run_id FROM airmigrate.runs WHERE migration_id = %s AND direction = %s AND status IN %s"
LATEST_RUN = ("SELECT run_id, direction, dag_run_id, status, completed_stages, facts, started_at, finished_at, error "
              "FROM airmigrate.runs WHERE migration_id = %s AND (%s IS NULL OR direction = %s) "
              "ORDER BY run_id DESC LIMIT 1")
STAGE_DONE = "SELECT JSON_CONTAINS(completed_stages, JSON_QUOTE(%s)) FROM airmigrate.runs WHERE run_id = %s"
FINISH_RUN = f"UPDATE airmigrate.runs SET status = %s, finished_at = {NOW}, error = %s WHERE run_id = %s"
# the rollback's finish: the migration's up runs are rolled back with it
UP_RUNS_ROLLED_BACK = (f"UPDATE airmigrate.runs SET status = 'rolled_back', finished_at = COALESCE(finished_at, {NOW}) "
                       "WHERE migration_id = %s AND direction = 'up' AND status <> 'rolled_back'")
RUNS_OF = (
    "SELECT r.run_id, r.direction, r.dag_run_id, r.status, r.started_at, r.finished_at, r.error, "
    "COALESCE((SELECT JSON_ARRAYAGG(JSON_OBJECT('action', a.action, 'actor', a.actor, 'at', a.at) "
    "ORDER BY a.at) FROM airmigrate.actions a WHERE a.run_id = r.run_id AND (a.action LIKE 'approve%%' "
    "OR a.action LIKE 'reject%%')), JSON_ARRAY()) AS approvals "
    "FROM airmigrate.runs r WHERE r.migration_id = %s ORDER BY r.run_id DESC LIMIT %s")


def _set_facts(facts: dict) -> tuple[str, list]:
    """``facts = JSON_SET(facts, '$."k"', JSON_EXTRACT(<patch>, '$."k"'), ...)``: each top-level key replaced
    whole (a null kept), as ``jsonb || jsonb``; the patch travels once per key as a parameter."""
    if not facts:
        return "facts = facts", []
    patch = json.dumps(facts)
    paths = [f"'$.{_json_key(key)}'" for key in facts]
    return ("facts = JSON_SET(facts, " + ", ".join(f"{p}, JSON_EXTRACT(%s, {p})" for p in paths) + ")",
            [patch] * len(paths))


def _json_key(key: str) -> str:
    """A JSON path member, double-quoted (a fact's name is a Python keyword argument: no quote inside)."""
    if '"' in key or "\\" in key or "'" in key:
        raise ValueError(f"a fact's name cannot hold quotes or backslashes: {key!r}")
    return f'"{key}"'


def mark_stage_done(conn, run_id: int, stage: str, facts: dict) -> None:
    """completed_stages + [stage] and facts merged, once per stage."""
    set_facts, params = _set_facts(facts)
    conn.execute(f"UPDATE airmigrate.runs SET {set_facts}, completed_stages = JSON_ARRAY_APPEND(completed_stages, "
                 "'$', %s) WHERE run_id = %s AND NOT JSON_CONTAINS(completed_stages, JSON_QUOTE(%s))",
                 (*params, stage, run_id, stage))


def add_facts(conn, run_id: int, facts: dict) -> None:
    set_facts, params = _set_facts(facts)
    conn.execute(f"UPDATE airmigrate.runs SET {set_facts} WHERE run_id = %s", (*params, run_id))


# -- history ----------------------------------------------------------------------------------------------------
# The new row's values by name from a derived table (INSERT ... SELECT may name the SELECT's columns in ON DUPLICATE
# KEY UPDATE; MySQL's WL#6312), not VALUES(col): deprecated from MySQL 8.0.20, and MariaDB has no row alias
# (INSERT ... VALUES (...) AS new): this one form runs on both, and on MySQL 8.0 before 8.0.19 too.
START_HISTORY = (
    "INSERT INTO airmigrate.history (migration_id, checksum, status, files) SELECT * FROM (SELECT %s AS new_id, "
    "%s AS new_checksum, 'running' AS new_status, %s AS new_files) AS v "
    "ON DUPLICATE KEY UPDATE checksum = v.new_checksum, status = 'running', files = v.new_files, "
    f"started_at = {NOW}, applied_at = NULL, rolled_back_at = NULL, rolled_back_by = NULL, error = NULL")
ALL_HISTORY = (
    "SELECT h.migration_id, h.checksum, h.status, h.files, h.error, h.started_at, h.applied_at, h.applied_by, "
    "h.duration_s, h.rolled_back_at, h.rolled_back_by, "
    "(SELECT CAST(COALESCE(SUM(b.`rows`), 0) AS SIGNED) FROM airmigrate.batches b WHERE b.status = 'succeeded' "
    "AND b.run_id = (SELECT MAX(r.run_id) FROM airmigrate.runs r WHERE r.migration_id = h.migration_id "
    "AND r.direction = 'up')) AS rows_backfilled FROM airmigrate.history h ORDER BY h.migration_id")
MARK_APPLIED = (f"UPDATE airmigrate.history SET status = 'applied', applied_at = {NOW}, applied_by = %s, "
                f"duration_s = TIMESTAMPDIFF(MICROSECOND, started_at, {NOW}) / 1e6 WHERE migration_id = %s")
MARK_ROLLED_BACK = (f"UPDATE airmigrate.history SET status = 'rolled_back', rolled_back_at = {NOW}, "
                    "rolled_back_by = %s WHERE migration_id = %s")

# -- batches ----------------------------------------------------------------------------------------------------
BATCH_SUMMARY = (
    "SELECT COUNT(*), COUNT(CASE WHEN status = 'succeeded' THEN 1 END), COUNT(CASE WHEN status = 'failed' THEN 1 END), "
    "COUNT(CASE WHEN status = 'pending' THEN 1 END), "
    "CAST(COALESCE(SUM(CASE WHEN status = 'succeeded' THEN `rows` END), 0) AS SIGNED), "
    "TIMESTAMPDIFF(MICROSECOND, MIN(started_at), MAX(finished_at)) / 1e6 FROM airmigrate.batches WHERE run_id = %s "
    "AND status <> 'split'")
PROGRESS_NOW = (
    "SELECT c.estimated_rows, c.exhausted, CAST(COALESCE(SUM(CASE WHEN b.status = 'succeeded' THEN b.size END), 0) "
    "AS SIGNED), COUNT(CASE WHEN b.status IN ('pending', 'running', 'failed') THEN 1 END) FROM airmigrate.cursors c "
    "LEFT JOIN airmigrate.batches b ON b.run_id = c.run_id WHERE c.run_id = %s GROUP BY c.run_id, c.estimated_rows, "
    "c.exhausted")
PROGRESS_REFRESH = (
    "SELECT CAST(COALESCE(SUM(CASE WHEN b.status = 'succeeded' THEN b.size END), 0) AS SIGNED), "
    f"MAX(c.estimated_rows), TIMESTAMPDIFF(MICROSECOND, MAX(c.started_at), {NOW}) / 1e6 FROM airmigrate.batches b "
    "JOIN airmigrate.cursors c ON c.run_id = b.run_id WHERE b.run_id = %s")
FAILED_SHARE = ("SELECT COUNT(*), COUNT(CASE WHEN status = 'failed' THEN 1 END) FROM airmigrate.batches "
                "WHERE run_id = %s AND status <> 'split'")
OPEN_CONTROLS = "INSERT INTO airmigrate.controls (run_id) VALUES (%s) ON DUPLICATE KEY UPDATE run_id = run_id"
OPEN_CURSOR = ("INSERT INTO airmigrate.cursors (run_id, batch_size, estimated_rows) VALUES (%s, %s, %s) "
               "ON DUPLICATE KEY UPDATE run_id = run_id")
CLAIM_BATCH = ("SELECT batch_no, lo, hi, size, attempts FROM airmigrate.batches WHERE run_id = %s "
               "AND status = 'pending' ORDER BY batch_no LIMIT 1 FOR UPDATE SKIP LOCKED")
BATCH_SUCCEEDED = (
    # no transaction-start clock in MySQL: the claim's time comes from the worker
    "UPDATE airmigrate.batches SET status = 'succeeded', `rows` = %s, attempts = attempts + 1, worker = %s, "
    f"last_error = NULL, started_at = %s, finished_at = {NOW} WHERE run_id = %s AND batch_no = %s")
ATTEMPT_SUCCEEDED = ("INSERT INTO airmigrate.batch_attempts (run_id, batch_no, lo, hi, outcome, error, worker, "
                     "started_at) SELECT run_id, batch_no, lo, hi, 'succeeded', NULL, worker, started_at "
                     "FROM airmigrate.batches WHERE run_id = %s AND batch_no = %s")
ADD_BATCH = "INSERT INTO airmigrate.batches (run_id, batch_no, lo, hi, size) VALUES (%s, %s, %s, %s, %s)"
MOVE_CURSOR = "UPDATE airmigrate.cursors SET position = %s, next_batch_no = next_batch_no + 1 WHERE run_id = %s"


def claim_batch(conn, run_id: int, lock_timeout_ms: int, statement_timeout_ms: int) -> tuple | None:
    """The claim, then the batch's limits in a statement of their own (MySQL has no SET LOCAL and no function
    that sets them: they last for the shard's session, which every claim sets again)."""
    row = conn.execute(CLAIM_BATCH, (run_id,)).fetchone()
    if row is None:
        return None
    ddl.set_timeouts(conn, lock_timeout_ms, statement_timeout_ms, local=True)
    return tuple(row)


def batch_succeeded(conn, run_id: int, batch_no: int, rows: int, worker: str, claimed_at) -> None:
    claimed = claimed_at.astimezone(timezone.utc).replace(tzinfo=None) if claimed_at is not None else None
    conn.execute(BATCH_SUCCEEDED, (rows, worker, claimed, run_id, batch_no))
    conn.execute(ATTEMPT_SUCCEEDED, (run_id, batch_no))


def add_batch(conn, run_id: int, batch_no: int, lo: str, hi: str, size: int) -> None:
    conn.execute(ADD_BATCH, (run_id, batch_no, lo, hi, size))
    conn.execute(MOVE_CURSOR, (hi, run_id))


def take_batch_numbers(conn, run_id: int, count: int) -> int:
    """Reserve `count` batch numbers (no UPDATE ... RETURNING: the cursor row is locked, read, then moved)."""
    first = conn.execute("SELECT next_batch_no FROM airmigrate.cursors WHERE run_id = %s FOR UPDATE",
                         (run_id,)).fetchone()[0]
    conn.execute("UPDATE airmigrate.cursors SET next_batch_no = next_batch_no + %s WHERE run_id = %s", (count, run_id))
    return first


# -- the key walk (stages.backfill.keys) ------------------------------------------------------------------------
KEY_AS_TEXT = "CAST({} AS CHAR) AS {}"
FIRST_KEY = "SELECT {sel} FROM {t} {where} ORDER BY {order} LIMIT 1 OFFSET %s"
ROW_BETWEEN = "{row} >= {v} AND {row} <= {v}"  # MariaDB refuses a row constructor in BETWEEN

# -- the lease (airmigrate.lease; the named locks and their registry: .leases) -------------------------------------------------------------------------------
EXTEND_LEASE = (
    f"UPDATE airmigrate.runs SET heartbeat_at = {NOW}, lease_until = GREATEST(COALESCE(lease_until, {NOW}), "
    f"{NOW} + INTERVAL ROUND(%s * 1000000) MICROSECOND) WHERE migration_id = %s AND owner <=> %s "
    "AND status = 'running'")
EXTEND_LEASE_UNTIL = (
    f"UPDATE airmigrate.runs SET heartbeat_at = {NOW}, lease_until = GREATEST(COALESCE(lease_until, {NOW}), "
    "%s + INTERVAL ROUND(%s * 1000000) MICROSECOND), facts = JSON_SET(facts, '$.waiting', %s) "
    "WHERE migration_id = %s AND owner <=> %s AND status = 'running'")
OPEN_RUN = (
    "SELECT run_id, direction, status, owner, holder, owner_kind, JSON_VALUE(facts, '$.waiting') AS waiting, "
    f"TIMESTAMPDIFF(MICROSECOND, heartbeat_at, {NOW}) / 1e6 AS heartbeat_age, "
    f"TIMESTAMPDIFF(MICROSECOND, {NOW}, lease_until) / 1e6 AS lease_left FROM airmigrate.runs "
    "WHERE migration_id = %s AND status IN ('pending', 'running', 'paused', 'failed') "
    "ORDER BY (status = 'running') DESC, run_id DESC LIMIT 1")

# -- health checks between batches (stages.backfill.tuning): a hard stop each; None = not measured here ---------
HEALTH_QUERIES = {
    "replication lag": None,  # SHOW REPLICA STATUS is not a SELECT; issue 22's pacer work reads it
    # the oldest InnoDB transaction of another session (one left open holds back purge, as on PostgreSQL vacuum)
    "oldest transaction": (
        "SELECT COALESCE(MAX(TIMESTAMPDIFF(SECOND, trx_started, NOW())), 0) FROM information_schema.INNODB_TRX "
        "WHERE trx_mysql_thread_id <> CONNECTION_ID()"),
    # sessions waiting on a row lock, or on a metadata lock (an ALTER queued behind a long transaction)
    "lock waiters": (
        "SELECT (SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT') + "
        "(SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE 'Waiting for%%lock' "
        "AND ID <> CONNECTION_ID())"),
    "autovacuum": None,  # InnoDB purges in the background; nothing to wait for
    "WAL backlog": None,
}


# -- what Engine's state methods run ----------------------------------------------------------------------------

def create_state_tables(conn) -> None:
    """Each CREATE on its own (MySQL's DDL commits by itself: no transaction to put them in), under a named lock
    so shards starting together do not race; nothing at all when every table is there already. The lock is
    server-wide: the first target database creating its state takes in the state of earlier versions, once."""
    if count_tables(conn, TABLES) == len(TABLES):
        conn.commit()
        return
    if not conn.execute(SCHEMA_LOCK).fetchone()[0]:
        raise TimeoutError("waited 60 s for another session creating airmigrate's state tables")
    try:
        adopt_legacy_state(conn)
        conn.execute(CREATE_DATABASE.format(quote_identifier(conn.state_database)))
        for statement in SCHEMA_DDL:
            conn.execute(statement)
    finally:
        conn.execute("SELECT RELEASE_LOCK('airmigrate.schema')")
        conn.commit()


def count_tables(conn, names: tuple[str, ...]) -> int:
    """How many of `names` the target's state database has."""
    return conn.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                        "AND TABLE_NAME IN %s", (conn.state_database, list(names))).fetchone()[0]


def xact_lock(conn, key: tuple[int, int]) -> None:
    conn.execute(XACT_LOCK, key)


# -- facts read by the stages (cleanup, the backfill's sweep, generated steps); JSON comes back as text
APPLIED_RECORDED = ("SELECT JSON_CONTAINS_PATH(facts, 'one', '$.applied_recorded') FROM airmigrate.runs "
                    "WHERE run_id = %s")
SWEEPS_DONE = "SELECT CAST(JSON_VALUE(facts, '$.sweeps') AS SIGNED) FROM airmigrate.runs WHERE run_id = %s"


def _decoded(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def live_columns(conn, run_id: int):
    """The run's recorded live_columns fact (a list), None when not recorded."""
    row = conn.execute("SELECT JSON_EXTRACT(facts, '$.live_columns') FROM airmigrate.runs WHERE run_id = %s",
                       (run_id,)).fetchone()
    return _decoded(row[0]) if row else None


def recorded_fact(conn, migration_id: str, name: str, active: bool):
    """The fact `name` of the migration's newest up run that has it (`active`: not rolled back); None if none."""
    path = '$."' + name.replace('"', '') + '"'
    row = conn.execute("SELECT JSON_EXTRACT(facts, %s) FROM airmigrate.runs WHERE migration_id = %s "
                       "AND direction = 'up' AND JSON_CONTAINS_PATH(facts, 'one', %s) "
                       "AND (NOT %s OR status <> 'rolled_back') ORDER BY run_id DESC LIMIT 1",
                       (path, migration_id, path, active)).fetchone()
    return _decoded(row[0]) if row else None


def add_fact_once(conn, run_id: int, name: str, value) -> None:
    """Record the fact `name` unless the run has it already (a resumed run keeps the first)."""
    path = '$."' + name.replace('"', '') + '"'
    conn.execute("UPDATE airmigrate.runs SET facts = JSON_SET(facts, %s, JSON_EXTRACT(%s, '$')) "
                 "WHERE run_id = %s AND NOT JSON_CONTAINS_PATH(facts, 'one', %s)",
                 (path, json.dumps(value, default=str), run_id, path))


def set_stage_time(conn, run_id: int, task_id: str, entry: dict) -> None:
    """facts.stage_times[task_id] = entry (the other stages' entries kept)."""
    key = '$.stage_times."' + task_id.replace('"', '') + '"'
    conn.execute("UPDATE airmigrate.runs SET facts = JSON_SET(IF(JSON_CONTAINS_PATH(facts, 'one', '$.stage_times'), "
                 "facts, JSON_SET(facts, '$.stage_times', JSON_OBJECT())), %s, JSON_EXTRACT(%s, '$')) "
                 "WHERE run_id = %s", (key, json.dumps(entry, default=str), run_id))
