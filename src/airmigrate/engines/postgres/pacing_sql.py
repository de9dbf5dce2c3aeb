"""PostgreSQL's text for the pacer (airmigrate.pacing through ``Engine.pacing_sql()``): the statements on its
tables (airmigrate.pacing, the batches' rows per second) and the readers of the application's signals. Every
engine's ``pacing_sql`` module answers to the same names (a test checks), so the pacer never asks which engine
it has.

Our own sessions are recognised by their application_name ('airmigrate...'), which every connection airmigrate
opens carries: :func:`mark_own_session` has nothing to do here.
"""

from __future__ import annotations

from airmigrate.engines import sql

# -- the run's shared budget (airmigrate.pacing) and the decisions' inputs ---------------------------------------
# a shard starting again (resumed after a pause, retried) brings the trigger's ratio; a target set from the
# console since (airmigrate.actions) holds until it is changed there (issue 18 §7)
START_RUN = ("INSERT INTO airmigrate.pacing (run_id, budget, target_ratio) VALUES (%s, %s, %s) "
             "ON CONFLICT (run_id) DO UPDATE SET target_ratio = CASE WHEN EXISTS (SELECT FROM "
             "airmigrate.actions a WHERE a.run_id = EXCLUDED.run_id AND a.action = 'app_latency_ratio') "
             "THEN airmigrate.pacing.target_ratio ELSE EXCLUDED.target_ratio END")
TRY_LEAD = "SELECT pg_try_advisory_lock(hashtext('airmigrate.pacer'), %s::int)"    # (run_id): one leader a run
SHARED_BUDGET = "SELECT budget, extract(epoch FROM probe_until) FROM airmigrate.pacing WHERE run_id = %s"
START_PROBE = ("UPDATE airmigrate.pacing SET probe_until = clock_timestamp() + make_interval("
               "secs => %s) WHERE run_id = %s")
SET_BUDGET = ("UPDATE airmigrate.pacing SET budget = %s, reason = %s, updated_at = clock_timestamp() "
              "WHERE run_id = %s")
# the newest decision of any run's leader on this database, and its age in seconds
LAST_DECISION = ("SELECT reason, extract(epoch FROM clock_timestamp() - updated_at) FROM airmigrate.pacing "
                 "WHERE reason IS NOT NULL ORDER BY updated_at DESC LIMIT 1")
ROWS_LAST_SECOND = (
    "SELECT max(batch_no), coalesce(sum(rows) FILTER (WHERE finished_at > clock_timestamp() - interval "
    "'1 second'), 0) FROM airmigrate.batches WHERE run_id = %s AND batch_no >= %s AND status = 'succeeded'")
OUR_ACTIVE_SESSIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND application_name LIKE 'airmigrate%%' AND state = 'active'")

# -- the canary (signals.Canary): a round trip that commits, as the application's transactions do ------------------
# txid_current() gives the trip a transaction id, so its commit writes a commit record and waits for the WAL flush:
# what every committing client waits for behind our batches' WAL. bench/signal_check.py: under two flat-out batch
# loops a SELECT 1 read 1.0-1.5x while the application's p99 read 3-16x; a committing trip rose with it. One id a
# trip (100 a second, 8.6 million a day against the 2 billion before wraparound; the application uses far more).
CANARY = "SELECT txid_current()"

# -- the application's activity, sampled every SAMPLE_S (signals.Sampler) ---------------------------------------
SAMPLE_S = 0.1                  # ten times a second (pg_stat_activity is read live)
PROBE_SAMPLE_S = SAMPLE_S / 4   # four times as often while every shard pauses: the pause stays short
ACTIVITY = """
SELECT count(*) FILTER (WHERE a.state = 'active' AND a.wait_event IS NULL AND a.pid <> pg_backend_pid()),
       coalesce(array_agg(a.pid) FILTER (
           WHERE a.application_name NOT LIKE 'airmigrate%%' AND a.wait_event_type = 'Lock'
             AND EXISTS (SELECT 1 FROM pg_stat_activity o WHERE o.pid = ANY (pg_blocking_pids(a.pid))
                         AND o.application_name LIKE 'airmigrate%%' AND o.pid <> pg_backend_pid())), '{}'),
       coalesce(array_agg(1000 * extract(epoch FROM clock_timestamp() - a.xact_start)) FILTER (
           WHERE a.application_name NOT LIKE 'airmigrate%%' AND a.pid <> pg_backend_pid()
             AND a.xact_start IS NOT NULL AND a.state IN ('active', 'idle in transaction')), '{}')
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.backend_type = 'client backend'
"""


def mark_own_session(conn, label: str) -> None:
    """Nothing to do: the connection's application_name ('airmigrate...') already says it is ours."""


class Activity:
    """One look at pg_stat_activity: (backends running and waiting on nothing, the application's backends
    waiting on a lock one of ours holds, the ages in ms of its transactions in flight)."""

    def __init__(self, conn):
        self.conn = conn

    def read(self) -> tuple[int, list, list[float]]:
        runnable, waiting, ages = self.conn.execute(ACTIVITY).fetchone()
        return runnable, list(waiting), [float(age) for age in ages]


def activity(conn) -> Activity:
    return Activity(conn)


def statements(conn):
    """(a function returning (total ms, calls) summed over pg_stat_statements for every role but ours in this
    database, None) or (None, why it cannot be read). Read through the function with showtext false: the view
    loads the whole query-text file on every call, and the pacer reads it once a second on a server whose
    statements may fill megabytes of it."""
    row = conn.execute("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                       "WHERE e.extname = 'pg_stat_statements'").fetchone()
    if row is None:
        preloaded = "pg_stat_statements" in conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        return None, ("pg_stat_statements is not installed in this database (" +
                      ("run CREATE EXTENSION pg_stat_statements" if preloaded else
                       "add it to shared_preload_libraries, restart, then CREATE EXTENSION pg_stat_statements") + ")")
    query = sql.SQL("SELECT coalesce(sum(total_exec_time), 0), coalesce(sum(calls), 0) FROM {}(false) "
                    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)").format(
        sql.Identifier(row[0], "pg_stat_statements"))
    try:
        conn.execute(query).fetchone()
    except Exception as exc:
        return None, f"pg_stat_statements cannot be read ({str(exc).splitlines()[0]})"
    return (lambda: tuple(conn.execute(query).fetchone())), None


STATEMENTS_NAME = "pg_stat_statements"  # what the pacer's log calls the statement figure's source


def server_cpus(conn) -> int:
    """A remote server's cores, as far as SQL tells: max_parallel_workers."""
    return max(1, int(conn.execute("SHOW max_parallel_workers").fetchone()[0]))

