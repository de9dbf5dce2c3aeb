"""MySQL's and MariaDB's text for the pacer (airmigrate.pacing through ``Engine.pacing_sql()``): the same names
as every engine's ``pacing_sql`` module, each doing what PostgreSQL's does.

What differs, and why:
- Our own sessions. The processlist shows no program name (performance_schema's connect attributes do, but it is
  off by default on MariaDB), so each connection of the pacer and of a shard takes a named lock of its own,
  ``airmigrate.session.<its CONNECTION_ID()>`` (:func:`mark_own_session`), and a session is ours when
  ``IS_USED_LOCK`` of that name is that very session. No table to keep: the server drops the lock with the
  session (a kill -9 included), and a reused id does not hold it.
- The application's transactions' ages. ``INNODB_TRX.trx_started`` has a resolution of one second, so an age
  is the newest lower bound seen: the time in the session's current command (MariaDB's ``PROCESSLIST.TIME_MS``;
  MySQL: ``TIME``, seconds), the coarse start less one second, and the first sighting of that transaction id
  by an earlier sample. The last two only for a transaction that wrote or locked rows: MariaDB lists an
  autocommit session's reads as one transaction whose start never moves and whose id (made from its memory
  address) the next one reuses, even while the session sleeps between statements (seen on the bench: "ages"
  of seconds for 2 ms statements); such a session counts by its time in the command alone, as PostgreSQL's
  'active' backends do.
- The application waiting on our locks: ``information_schema.INNODB_LOCK_WAITS`` (MariaDB, MySQL 5.7),
  ``performance_schema.data_lock_waits`` (MySQL 8).
- How often. InnoDB's information_schema tables (INNODB_TRX, INNODB_LOCK_WAITS) are a cache it refills only when
  nobody read it for 0.1 s (``can_cache_be_updated`` in trx0i_s.cc; every read sets ``last_read``): polled more
  often they never change. So a sample is one statement (the sessions and the lock waits together: the cache is
  read once, and both halves see the same version of it), SAMPLE_S is 0.2 s, and a probe samples every 0.12 s
  (PostgreSQL's pacer: 0.1 s, 0.025 s in a probe). Other readers of that cache on the same server (a shard's
  health checks, another run's pacer) refill it too, or keep it from being refilled when they read it more often
  than every 0.1 s among them.
- The application's statements: performance_schema when it is on (per-thread sums, our sessions left out;
  a thread that disconnects between two samples drops out of both), else none: the transactions' ages, the
  lock waits and the canary pace.
- Times are UTC in DATETIME(6) columns (see state_sql).
"""

from __future__ import annotations

import time

from airmigrate.engines.mysql.state_sql import NOW

SESSION_LOCK = "CONCAT('airmigrate.session.', {id})"


def ours(id_column: str) -> str:
    """SQL true when the session `id_column` is one of airmigrate's (it holds its own named lock)."""
    return f"(IS_USED_LOCK({SESSION_LOCK.format(id=id_column)}) <=> {id_column})"


# -- the run's shared budget (airmigrate.pacing) and the decisions' inputs ---------------------------------------
# the new row's values by name from a derived table, not VALUES(col) (deprecated from MySQL 8.0.20; see
# state_sql.START_HISTORY)
START_RUN = ("INSERT INTO airmigrate.pacing (run_id, budget, target_ratio) SELECT * FROM (SELECT %s AS new_run_id, "
             "%s AS new_budget, %s AS new_ratio) AS v "
             "ON DUPLICATE KEY UPDATE target_ratio = IF(EXISTS (SELECT 1 FROM airmigrate.actions a "
             "WHERE a.run_id = airmigrate.pacing.run_id AND a.action = 'app_latency_ratio'), target_ratio, "
             "v.new_ratio)")
# (run_id): a named lock is server-wide and run ids are per target database (each has its own state database), so
# the name carries the database too (hashed: a lock name is at most 64 characters)
TRY_LEAD = "SELECT GET_LOCK(CONCAT('airmigrate.pacer.', LEFT(MD5(DATABASE()), 12), '.', %s), 0)"
SHARED_BUDGET = ("SELECT budget, TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', probe_until) / 1e6 "
                 "FROM airmigrate.pacing WHERE run_id = %s")
START_PROBE = f"UPDATE airmigrate.pacing SET probe_until = {NOW} + INTERVAL ROUND(%s * 1000000) MICROSECOND " \
              "WHERE run_id = %s"
SET_BUDGET = f"UPDATE airmigrate.pacing SET budget = %s, reason = %s, updated_at = {NOW} WHERE run_id = %s"
# the newest decision of any run's leader on this database, and its age in seconds
LAST_DECISION = (f"SELECT reason, TIMESTAMPDIFF(MICROSECOND, updated_at, {NOW}) / 1e6 FROM airmigrate.pacing "
                 "WHERE reason IS NOT NULL ORDER BY updated_at DESC LIMIT 1")
ROWS_LAST_SECOND = (
    f"SELECT MAX(batch_no), COALESCE(SUM(CASE WHEN finished_at > {NOW} - INTERVAL 1 SECOND THEN `rows` END), 0) "
    "FROM airmigrate.batches WHERE run_id = %s AND batch_no >= %s AND status = 'succeeded'")
OUR_ACTIVE_SESSIONS = (
    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID() "
    f"AND COMMAND IN ('Query', 'Execute') AND {ours('ID')}")

# -- the canary (signals.Canary): a round trip that commits, as the application's transactions do ------------------
# a write of our own (a counter row of airmigrate.canary; at most 64 rows, one per CONNECTION_ID() % 64) so the
# commit waits for the redo log's flush (innodb_flush_log_at_trx_commit) as the application's commits do, behind
# our batches' redo; a SELECT 1 feels only the CPU (see PostgreSQL's module). No VALUES(): MySQL 8 deprecates it.
CANARY = ("INSERT INTO airmigrate.canary (slot, trips) VALUES (CONNECTION_ID() % 64, 1) "
          "ON DUPLICATE KEY UPDATE trips = trips + 1")

# -- the sessions, sampled every SAMPLE_S (signals.Sampler) -----------------------------------------------------
# over 0.1 s apart (InnoDB refills its information_schema cache only after 0.1 s unread, see above): 0.2 s while
# working (two samples in a row span signals.BLOCKED_S, as three do on PostgreSQL); 0.12 s in a probe, as often as
# the cache allows with a margin (the probe's ages of short statements need samples: PROCESSLIST is live)
SAMPLE_S = 0.2
PROBE_SAMPLE_S = 0.12

# One statement a sample (the InnoDB cache read once): ('s', session rows) UNION ALL ('w', lock-wait rows).
# 's': every session of this database running a statement or holding an InnoDB transaction that wrote or locked,
# but this one: (id, command, ms in the command, the transaction's id and its coarse age less one second when it
# wrote or locked, its state, ours?)
WROTE = "(t.trx_rows_modified > 0 OR t.trx_lock_structs > 0)"
SESSIONS = (
    f"SELECT 's', p.ID, p.COMMAND, {{elapsed_ms}}, IF({WROTE}, t.trx_id, NULL), t.trx_state, "
    f"IF({WROTE}, TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) / 1000 - 1000, NULL), {ours('p.ID')} "
    "FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX t "
    "ON t.trx_mysql_thread_id = p.ID WHERE p.DB = DATABASE() AND p.ID <> CONNECTION_ID() "
    f"AND (p.COMMAND IN ('Query', 'Execute') OR {WROTE})")
# 'w': the application's sessions (connected to any database) waiting on a lock that a session of ours on this
# database holds, the rest NULL. The blocker's database matters: another run on another database of the same server
# (its own application waiting on it) is not this run's harm (PostgreSQL's locks are per database already).
BLOCKER_HERE = "JOIN information_schema.PROCESSLIST bp ON bp.ID = b.trx_mysql_thread_id AND bp.DB = DATABASE()"
LOCK_WAITS = {
    "information_schema": (
        "SELECT DISTINCT 'w', r.trx_mysql_thread_id, NULL, NULL, NULL, NULL, NULL, NULL "
        "FROM information_schema.INNODB_LOCK_WAITS w "
        "JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id "
        "JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id "
        f"{BLOCKER_HERE} WHERE {ours('b.trx_mysql_thread_id')} AND NOT {ours('r.trx_mysql_thread_id')}"),
    "performance_schema": (
        "SELECT DISTINCT 'w', r.trx_mysql_thread_id, NULL, NULL, NULL, NULL, NULL, NULL "
        "FROM performance_schema.data_lock_waits w "
        "JOIN information_schema.INNODB_TRX r ON r.trx_id = w.REQUESTING_ENGINE_TRANSACTION_ID "
        "JOIN information_schema.INNODB_TRX b ON b.trx_id = w.BLOCKING_ENGINE_TRANSACTION_ID "
        f"{BLOCKER_HERE} WHERE {ours('b.trx_mysql_thread_id')} AND NOT {ours('r.trx_mysql_thread_id')}"),
}
# the application's statements per session: time (ms) and calls since each connected (performance_schema)
STATEMENTS = (
    "SELECT t.PROCESSLIST_ID, SUM(s.SUM_TIMER_WAIT) / 1e9, SUM(s.COUNT_STAR) "
    "FROM performance_schema.events_statements_summary_by_thread_by_event_name s "
    "JOIN performance_schema.threads t ON t.THREAD_ID = s.THREAD_ID "
    "WHERE t.PROCESSLIST_DB = DATABASE() AND t.PROCESSLIST_ID <> CONNECTION_ID() AND s.COUNT_STAR > 0 "
    f"AND NOT {ours('t.PROCESSLIST_ID')} GROUP BY t.PROCESSLIST_ID")
STATEMENTS_NAME = "performance_schema"  # what the pacer's log calls the statement figure's source

MAX_TRACKED = 10_000  # transaction ids remembered between samples (an application of thousands of sessions)


def mark_own_session(conn, label: str) -> None:
    """Take this session's own named lock: from now on the pacer's signals see it as airmigrate's. Held until the
    session ends; never waits (nobody else takes a name with our session's id in it)."""
    conn.execute(f"SELECT GET_LOCK({SESSION_LOCK.format(id='CONNECTION_ID()')}, 0)").fetchone()


def _has(conn, schema: str, table: str, column: str | None = None) -> bool:
    if column is None:
        return bool(conn.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND "
                                 "TABLE_NAME = %s", (schema, table)).fetchone()[0])
    return bool(conn.execute("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
                             "TABLE_NAME = %s AND COLUMN_NAME = %s", (schema, table, column)).fetchone()[0])


class Activity:
    """The sessions of this database, read every SAMPLE_S: (running and not waiting, the application's sessions
    waiting on a lock of ours, the ages in ms of the application's transactions and statements in flight). Keeps,
    per InnoDB transaction id, the earliest start an earlier sample proved."""

    def __init__(self, conn):
        self.conn = conn
        elapsed = "p.TIME_MS" if _has(conn, "information_schema", "PROCESSLIST", "TIME_MS") else "p.TIME * 1000"
        waits = LOCK_WAITS["information_schema" if _has(conn, "information_schema", "INNODB_LOCK_WAITS")
                           else "performance_schema"]
        self.statement = f"{SESSIONS.format(elapsed_ms=elapsed)} UNION ALL {waits}"
        self.started: dict[int, float] = {}  # transaction id -> the earliest start proved (time.monotonic())

    def read(self) -> tuple[int, list, list[float]]:
        now = time.monotonic()
        rows = self.conn.execute(self.statement).fetchall()
        waiting = [row[1] for row in rows if row[0] == "w"]
        sessions = [row[1:] for row in rows if row[0] == "s"]
        runnable, ages, seen = 0, [], {}
        for _id, command, elapsed_ms, trx_id, trx_state, coarse_ms, is_ours in sessions:
            if command in ("Query", "Execute") and trx_state != "LOCK WAIT":
                runnable += 1
            if is_ours:
                continue
            lower_ms = max(float(elapsed_ms or 0), float(coarse_ms or 0))
            if trx_id is None:
                ages.append(lower_ms)
                continue
            seen[trx_id] = min(self.started.get(trx_id, now), now - lower_ms / 1000)
            ages.append((now - seen[trx_id]) * 1000)
        self.started = seen if len(seen) <= MAX_TRACKED else {}
        return runnable, waiting, ages


def activity(conn) -> Activity:
    return Activity(conn)


class Statements:
    """The application's statements' total ms and calls, from performance_schema's per-session sums: what each
    session still connected added since the previous read, added up (a session that disconnected took its sums
    with it, so running totals over the sessions would go backwards)."""

    def __init__(self, conn):
        self.conn = conn
        self.last: dict[int, tuple[float, int]] = {}
        self.total_ms, self.calls = 0.0, 0

    def __call__(self) -> tuple[float, int]:
        now = {row[0]: (float(row[1] or 0), int(row[2] or 0)) for row in self.conn.execute(STATEMENTS).fetchall()}
        for session, (ms, calls) in now.items():
            before = self.last.get(session)
            if before is not None and calls >= before[1]:
                self.total_ms += ms - before[0]
                self.calls += calls - before[1]
        self.last = now
        return self.total_ms, self.calls


def statements(conn):
    """(the reader of the application's statements, None) when performance_schema is on and readable, else (None,
    why not)."""
    if str(conn.execute("SELECT @@performance_schema").fetchone()[0]) not in ("1", "ON"):
        return None, ("performance_schema is off on this server (set performance_schema = ON in its configuration "
                      "and restart to add the application's statement latency)")
    reader = Statements(conn)
    try:
        reader()
    except Exception as exc:
        return None, f"performance_schema cannot be read ({str(exc).splitlines()[0]})"
    return reader, None


def server_cpus(conn) -> int:
    """A remote server's cores, as far as SQL tells: MariaDB's thread_pool_size (its default is the number of
    CPUs); MySQL has no such figure: 1 (the run queue is logged only, never held against the target)."""
    try:
        return max(1, int(conn.execute("SELECT @@thread_pool_size").fetchone()[0]))
    except Exception:
        return 1
