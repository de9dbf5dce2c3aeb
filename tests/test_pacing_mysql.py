"""Pacing on a real MySQL / MariaDB (issue 22): the signals the pacer reads there (engines/mysql/pacing_sql.py) and
the closed loop. On MariaDB 10.11 performance_schema is off by default: the signals are the application's
transactions' and statements' ages (information_schema), its waits on our row locks, and the round-trip canary.

The application here is the PostgreSQL test's: one statement, slow exactly while a batch of ours runs (and, here,
while a switch says the harm is on), so the pacer must slow down while it hurts and speed up once it no longer
does. The assertions read the pacer's own record (airmigrate.pacing_log), never a timing."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml
from mysql_support import URL, Writer, drop_database, fill, fresh_database, skip_without_server
from polling import wait_for

from airmigrate import db, engines, state
from airmigrate.engines.target import Target
from airmigrate.errors import AirmigrateError
from airmigrate.pacing import controller, leader, pacer, signals
from airmigrate.pacing.leader import own_connection
from airmigrate.pacing.signals import Sampler
from airmigrate.spec import Throttle, load_migration
from airmigrate.stages import backfill
from airmigrate.stages.backfill import tuning

pytestmark = pytest.mark.server

skip_without_server()  # one line in the summary when no server answers (a user's machine)

QUERIES = engines.named("mysql").pacing_sql()


@pytest.fixture
def target(monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", URL)  # the spec's SQL is read by the MySQL engine's parser
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
    target = fresh_database(f"am_pace_{uuid.uuid4().hex[:4]}")
    fill(target, "t", 20_000)
    with db.connect(target, autocommit=True) as conn:
        conn.execute("ALTER TABLE t ADD COLUMN b INT NULL")
        conn.execute("CREATE TABLE harm (on_ BOOLEAN NOT NULL)")
        conn.execute("INSERT INTO harm VALUES (TRUE)")
    yield target
    drop_database(target)
    with db.connect(target.with_dbname("mysql"), autocommit=True) as conn:
        if state.tables_exist(conn):
            conn.execute("DELETE FROM airmigrate.runs WHERE migration_id LIKE %s", (f"%{target.dbname}%",))


def _in_background(conn, statement: str) -> threading.Thread:
    """`statement` on `conn` in a thread (it waits on a lock, or sleeps); errors swallowed (the test ends it)."""
    def run():
        try:
            conn.execute(statement).fetchall()
        except Exception:
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# InnoDB refreshes its information_schema tables (INNODB_TRX, INNODB_LOCK_WAITS) only after 0.1 s without a read:
# polled faster, they never change; the pacer's own period on MySQL
SAMPLE_S = QUERIES.SAMPLE_S


def test_the_signals_see_the_applications_transactions_and_waits_on_our_locks_and_never_our_own_sessions(target):
    reader = own_connection(target)
    activity = QUERIES.activity(reader)
    ours, app, app_waiting, ours_sleeping, app_sleeping = (db.connect(target) for _ in range(5))
    try:
        QUERIES.mark_own_session(ours, "airmigrate test")
        QUERIES.mark_own_session(ours_sleeping, "airmigrate test")
        ours.execute("UPDATE t SET b = 1 WHERE id = 1")                  # our batch, holding row 1
        app.execute("UPDATE t SET b = 2 WHERE id = 500")                 # the application's open transaction
        app_id = app.info.backend_pid
        # an application transaction held open shows its age (one-second trx_started, refined by each sample)
        ages = wait_for(lambda: (read := activity.read()[2]) and max(read) >= 1500 and read, timeout_s=30,
                        what="the application's transaction to show an age of 1.5 s", interval_s=SAMPLE_S)
        assert len(ages) == 1, f"only the application's transaction, not ours (older, still open): {ages}"
        # a statement outside a transaction block counts by its time in the command; ours never
        _in_background(ours_sleeping, "SELECT SLEEP(30)")
        _in_background(app_sleeping, "SELECT SLEEP(30)")
        wait_for(lambda: len(activity.read()[2]) == 2, what="the application's SELECT SLEEP among the ages",
                 interval_s=SAMPLE_S)
        # the application waiting on a row we hold: seen, by its session id; waiting on its own rows: not ours
        # (the waiting session may be connected to any database; the blocker is a session of ours on this one)
        mine = {c.info.backend_pid for c in (ours, app, app_waiting, ours_sleeping, app_sleeping)}
        waiter = _in_background(app_waiting, "UPDATE t SET b = 3 WHERE id = 1")
        waiting = wait_for(lambda: set(activity.read()[1]) & mine, what="the application's lock wait on our row",
                           interval_s=SAMPLE_S)
        assert waiting == {app_waiting.info.backend_pid}
        sampler = Sampler(reader, cpus=2)
        assert sampler.statements is None and "performance_schema is off" in sampler.missing_statements or \
            sampler.statements is not None, "performance_schema: used when on, said when off"
        assert [sampler.sample() for _ in range(sampler.in_a_row)][-1] >= 1, "samples in a row see it waiting: blocked"
        ours.rollback()
        waiter.join(timeout=30)
        # information_schema's InnoDB tables are a snapshot refreshed at most ten times a second
        wait_for(lambda: not set(activity.read()[1]) & mine, what="nobody waiting on us once our lock is gone",
                 interval_s=SAMPLE_S)
        app_waiting.rollback()
        _in_background(app_waiting, "UPDATE t SET b = 4 WHERE id = 500")     # now on the application's own row
        wait_for(lambda: app_id in {row[0] for row in reader.execute(
            "SELECT r.trx_mysql_thread_id FROM information_schema.INNODB_LOCK_WAITS w JOIN information_schema."
            "INNODB_TRX r ON r.trx_id = w.blocking_trx_id").fetchall()}, what="a wait on the application's row",
            interval_s=SAMPLE_S)
        assert not set(activity.read()[1]) & mine, "the application waiting on itself is not our doing"
    finally:
        for sleeping in (ours_sleeping, app_sleeping):
            reader.execute(f"KILL QUERY {int(sleeping.info.backend_pid)}")
        for conn in (ours, app, app_waiting, ours_sleeping, app_sleeping, reader):
            conn.close()


def test_a_wait_on_a_session_of_ours_on_another_database_is_that_databases_harm_not_this_ones(target):
    """A named lock and a row lock are the server's, so the lock waits are too: a run on another database (its shard
    holding a row its own application waits on) must not slow this run down, which cannot help it. Seen by a pacer
    on that database, not by one on this (a test's failure in CI: another test's writer waiting on its own shard
    halved this test's leader)."""
    other = fresh_database(f"am_pace_{uuid.uuid4().hex[:4]}")
    try:
        fill(other, "t", 10)
        here, there = QUERIES.activity(own_connection(target)), QUERIES.activity(own_connection(other))
        shard, app = db.connect(other), db.connect(other)
        try:
            QUERIES.mark_own_session(shard, "airmigrate shard")
            shard.execute("UPDATE t SET a = a WHERE id = 1")                 # the other run's batch, holding row 1
            _in_background(app, "UPDATE t SET a = a WHERE id = 1")          # its application, waiting on it
            app_id = app.info.backend_pid
            wait_for(lambda: app_id in there.read()[1], what="the other database's pacer seeing its application wait",
                     interval_s=SAMPLE_S)
            assert app_id not in here.read()[1], "a wait on another database's run is not this run's harm"
        finally:
            shard.rollback()
            for conn in (shard, app, here.conn, there.conn):
                conn.close()
    finally:
        drop_database(other)


def _sample_every_period(sampler: Sampler, count: int, session: int) -> list[int]:
    """`count` samples the way the pacer takes them: one, then SAMPLE_S of nothing, and again; 1 where `session`
    was counted blocked."""
    blocked = []
    for _ in range(count):
        sampler.sample()
        blocked.append(int(session in sampler.blocked_now))
        time.sleep(SAMPLE_S)
    return blocked


def test_the_canary_commits_a_write_of_its_own_each_trip_and_is_never_the_application(target):
    """Its trip waits for the redo log's flush as the application's commits do (a SELECT 1 did not): a counter
    row of airmigrate.canary goes up by one a trip, and the canary's session is one of ours."""
    with db.connect(target, autocommit=True) as conn:
        state.ensure_schema(conn)
    canary = signals.Canary(lambda: own_connection(target, "airmigrate-canary"), 0.01).start()
    try:
        trips: list[float] = []
        wait_for(lambda: len(trips.__iadd__(canary.take())) >= 30, timeout_s=120, what="30 canary trips")
        with db.connect(target, autocommit=True) as conn:
            written = conn.execute("SELECT COALESCE(SUM(trips), 0) FROM airmigrate.canary").fetchone()[0]
            ours = conn.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND "
                                f"ID <> CONNECTION_ID() AND NOT {QUERIES.ours('ID')}").fetchone()[0]
        assert written >= 30 and all(0 < trip < 60_000 for trip in trips), (written, trips[:5])
        assert ours == 0, "the canary's session is airmigrate's, never the application's"
    finally:
        canary.stop()
    assert not canary.thread.is_alive()


def test_an_application_session_waiting_on_a_shards_lock_is_blocked_after_samples_in_a_row_at_the_pacers_period(
        target):
    """What the pacer's loop sees, at its period: a wait that lasts counts as blocked once the samples in a row
    that saw it span signals.BLOCKED_S (0.2 s: two samples 0.2 s apart here, three 0.1 s apart on PostgreSQL), and
    a wait that ended is gone once a sample reads its end, and stays gone. A sample is one statement: InnoDB
    refills its information_schema cache only after 0.1 s unread, and the pacer read it twice a sample, ten times
    a second (forty in a probe)."""
    reader, shard, app = own_connection(target), db.connect(target), db.connect(target)
    try:
        QUERIES.mark_own_session(shard, "airmigrate shard")
        app_id = app.execute("SELECT CONNECTION_ID()").fetchone()[0]
        sampler = Sampler(reader, cpus=2)
        assert sampler.in_a_row == 2 and (sampler.in_a_row - 1) * SAMPLE_S >= signals.BLOCKED_S
        shard.execute("UPDATE t SET b = 1 WHERE id = 1")                   # a batch holding row 1
        assert _sample_every_period(sampler, 2, app_id) == [0, 0], "our own lock alone blocks nobody"
        waiter = _in_background(app, "UPDATE t SET b = 3 WHERE id = 1")
        time.sleep(0.3)  # it reaches the lock (a loaded machine: the sample that first sees it may be the second)
        blocked = _sample_every_period(sampler, 4, app_id)
        assert blocked[0] == 0 and blocked.index(1) <= 2 and blocked[-2:] == [1, 1], \
            f"blocked from the second sample that sees it waiting on, never at the first: {blocked}"
        shard.rollback()
        waiter.join(timeout=30)
        # The cache is the server's: other readers (another test's pacer) reading it within 0.1 s of each other
        # keep it frozen for everyone, so the sample that first reads the end may come later than the next one.
        wait_for(lambda: _sample_every_period(sampler, 1, app_id) == [0], timeout_s=60, what="the ended wait gone")
        assert _sample_every_period(sampler, 2, app_id) == [0, 0], "the wait ended: it stays gone"
    finally:
        app.rollback()
        for conn in (shard, app, reader):
            conn.close()


def test_a_probe_sees_an_application_transaction_that_began_during_it(target):
    """The probe's baseline is what the application's transactions look like while every shard pauses. Sampled
    every 25 ms as on PostgreSQL, InnoDB's information_schema cache (refilled only after 0.1 s unread) froze at the
    probe's first sample: a transaction begun since never showed (and one ended since kept growing older).
    That cache is the server's: another client reading it more often than every 0.1 s freezes it for everyone (in
    the suite, another test's; a reader every 50 ms beside this test failed it every time). So up to three probes
    of 2 s each: the probe that froze the cache itself fails all three."""
    reader, app = own_connection(target), db.connect(target)
    controller = leader.Controller(target, 0, Throttle(), 1.5, 1)
    controller.queries, controller.sampler = QUERIES, Sampler(reader, cpus=2)
    tries = []
    try:
        for _ in range(3):
            opened = threading.Timer(0.5, lambda: app.execute("UPDATE t SET b = 2 WHERE id = 500"))
            opened.start()
            tries.append(controller._sample_alone(2.0))
            opened.join()
            app.rollback()
            if tries[-1] and max(tries[-1]) >= 1000:
                break
        assert tries[-1] and max(tries[-1]) >= 1000, f"the application's transaction, open for 1.5 s: {tries}"
    finally:
        app.rollback()
        for conn in (app, reader):
            conn.close()


def test_a_new_leader_goes_on_at_full_speed_where_the_last_saw_nobody(target, tmp_path):
    """The engine's LAST_DECISION (the last leader's reason and its age): a shard leading after one that saw no
    application to protect goes on at the ceiling (test_pacing has the whole rule on PostgreSQL)."""
    migration = _migration(tmp_path, target, "UPDATE t SET b = a WHERE id BETWEEN %(lo)s AND %(hi)s", batch_size=20)
    run_id = _begin(target, migration)
    with db.connect(target) as conn:
        conn.execute("UPDATE airmigrate.pacing SET budget = 1, reason = %s, updated_at = UTC_TIMESTAMP(6) "
                     "WHERE run_id = %s", (controller.NOBODY, run_id))  # the plan wrote the row
        conn.commit()
    with pacer.Pacer(target, run_id, migration.spec.backfill.throttle, shards=1) as pace:
        assert pace.leader is not None
        first = wait_for(lambda: _first_decision(target, run_id), 30, "the new leader's first decision")
    assert first == (1.0, controller.NOBODY), "at the ceiling from its first decision, before a probe of its own"


def _first_decision(target, run_id: int) -> tuple | None:
    with db.connect(target) as conn:
        row = conn.execute("SELECT budget, decision FROM airmigrate.pacing_log WHERE run_id = %s ORDER BY id LIMIT 1",
                           (run_id,)).fetchone()
        conn.rollback()
    return None if row is None else (float(row[0]), row[1])


# -- the closed loop ------------------------------------------------------------------------------------------

FAST_S, SLOW_S = 0.002, 0.02  # the application's statement alone / beside a batch of ours while the harm is on
# slow exactly while the harm is on and one of our batches (an UPDATE of t) runs
APP_STATEMENT = ("SELECT SLEEP(IF((SELECT on_ FROM harm) AND EXISTS (SELECT 1 FROM information_schema.PROCESSLIST "
                 "WHERE INFO LIKE 'UPDATE t %%'), %s, %s))")


def _migration(tmp_path, target, batch_sql: str, batch_size: int, **throttle):
    folder = tmp_path / f"0090_{target.dbname}"
    folder.mkdir()
    (folder / "up.sql").write_text("SELECT 1;\n")
    (folder / "down.sql").write_text("SELECT 1;\n")
    (folder / "backfill.sql").write_text(batch_sql)
    spec = {"description": "paced backfill on MySQL", "table": f"{target.dbname}.t", "key": "id",
            "batch_size": batch_size, "shards": 1,
            "backfill": {"sql": "backfill.sql", "columns": ["b"], "adaptive": False,
                         "throttle": {"app_latency_ratio": 1.5, "probe_every_s": 5, "max_lock_waiters": None,
                                      **throttle}}}
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    return load_migration(folder)


def _begin(target, migration) -> int:
    with db.connect(target) as conn:
        state.ensure_schema(conn)
        run_id, _ = state.begin_run(conn, migration.id, "up", None)
    backfill.start_backfill(target, migration, run_id)
    return run_id


def _decisions(target, run_id) -> list[tuple]:
    """(seconds since the first decision, budget, the figure held, decision), the pacer's own record."""
    with db.connect(target) as conn:
        return [(float(r[0]), float(r[1]), r[2], r[3]) for r in conn.execute(
            "SELECT TIMESTAMPDIFF(MICROSECOND, (SELECT MIN(at) FROM airmigrate.pacing_log WHERE run_id = %s), at) "
            "/ 1e6, budget, latency_ratio, decision FROM airmigrate.pacing_log WHERE run_id = %s ORDER BY id",
            (run_id, run_id)).fetchall()]


def _server_now(target) -> float:
    """Seconds since the first decision on the pacing log's clock (UTC_TIMESTAMP)."""
    with db.connect(target) as conn:
        return float(conn.execute("SELECT TIMESTAMPDIFF(MICROSECOND, MIN(at), UTC_TIMESTAMP(6)) / 1e6 "
                                  "FROM airmigrate.pacing_log").fetchone()[0] or 0)


def test_a_paced_backfill_slows_down_while_the_application_is_hurt_and_speeds_up_when_it_is_not(target, tmp_path,
                                                                                                monkeypatch):
    # MySQL's own signal only: the round-trip canary (engine-neutral, tested on PostgreSQL) reads the machine's load
    # as much as the application's harm, and this machine is shared (at load 10 it read 5-10x with no harm at all)
    monkeypatch.setattr(leader, "MIN_TRIPS", 10**9)
    # 50 ms a batch (one SLEEP per batch, not per row): the application's statement is 10x slower meanwhile
    migration = _migration(tmp_path, target, "UPDATE t JOIN (SELECT SLEEP(0.05) AS z) s SET t.b = t.a * 2 + s.z "
                                             "WHERE t.id BETWEEN %(lo)s AND %(hi)s", batch_size=20)
    run_id = _begin(target, migration)
    # four clients: enough transactions in flight for the tail figure between probes (no performance_schema here)
    apps = [Writer(target, lambda conn, rng, i: conn.execute(APP_STATEMENT, (SLOW_S, FAST_S)).fetchall(), seed=n)
            for n in range(4)]
    for app in apps:
        app.start()
    done, phases = threading.Event(), {}

    def switch_harm_off():
        wait_for(lambda: any("over target" in d[3] for d in _decisions(target, run_id)), timeout_s=120,
                 what="the pacer to cut while the application is hurt")
        wait_for(lambda: len(_decisions(target, run_id)) >= 20, timeout_s=120, what="twenty decisions")
        with db.connect(target, autocommit=True) as conn:
            conn.execute("UPDATE harm SET on_ = FALSE")
        phases["off_at"], phases["off_mono"] = _server_now(target), time.monotonic()

    def sped_up(decisions) -> bool:
        low = [d for d in decisions if d[0] < phases["off_at"]][-1][1]
        return max((d[1] for d in decisions if d[0] >= phases["off_at"] + 3), default=0) > max(2 * low, 0.5)

    def healed_long_enough() -> bool:
        """Twenty seconds unharmed at least, then until it sped up or two minutes passed: on a busy machine its
        steps come further apart (CI: +0.10 a second, with probes between, did not double in twenty seconds)."""
        if "off_mono" not in phases or time.monotonic() < phases["off_mono"] + 20:
            return False
        return time.monotonic() > phases["off_mono"] + 120 or sped_up(_decisions(target, run_id))

    switcher = threading.Thread(target=lambda: (switch_harm_off(), None), daemon=True)
    switcher.start()
    try:
        backfill.run_shard(target, migration, run_id, should_stop=lambda: done.is_set() or healed_long_enough())
    finally:
        done.set()
        errors = [error for app in apps for error in app.finish().errors]
        switcher.join(timeout=5)
    decisions = _decisions(target, run_id)
    assert not errors, errors[:3]
    assert "off_at" in phases, f"the pacer never cut while the application was hurt: {decisions}"
    hurt = [d for d in decisions if d[0] < phases["off_at"]]
    healed = [d for d in decisions if d[0] >= phases["off_at"] + 3]   # its window holds a few seconds of before
    cuts = [d for d in hurt if "over target" in d[3]]
    assert all("app transactions" in d[3] for d in cuts), "the application's transactions' age, read on MySQL"
    # it starts at a twentieth of the ceiling and doubles: hurt, it cut, and held at most half the ceiling at the end
    assert cuts and hurt[-1][1] <= 0.5, f"hurt, the pacer held its budget down: {hurt}"
    assert any(d[2] is not None and d[2] > 1.5 for d in cuts), f"on a figure over the target: {cuts}"
    assert sped_up(decisions), f"unharmed, it sped up again from {hurt[-1][1]}: {healed}"
    assert not [d for d in healed[len(healed) // 2:] if "over target" in d[3]], healed


def test_the_application_waiting_on_our_row_locks_halves_the_budget_at_once(target, tmp_path):
    """3 ms a row: a batch's first row stays locked for the whole batch (~0.6 s); the application keeps writing
    the first row of whatever batch runs."""
    migration = _migration(tmp_path, target, "UPDATE t SET b = a + SLEEP(0.003) WHERE id BETWEEN %(lo)s AND %(hi)s",
                           batch_size=200)
    run_id = _begin(target, migration)

    def write_first_row(conn, rng, i):
        lo = conn.execute("SELECT COALESCE(MAX(CAST(lo AS SIGNED)), 0) FROM airmigrate.batches WHERE run_id = %s",
                          (run_id,)).fetchone()[0]
        conn.execute("UPDATE t SET s = s WHERE id = %s", (lo,))

    app = Writer(target, write_first_row, pause_s=0.05)
    app.start()
    try:
        backfill.run_shard(target, migration, run_id, should_stop=lambda: len(
            [d for d in _decisions(target, run_id) if "waiting on our locks: halved" in d[3]]) >= 2 or
            len(_decisions(target, run_id)) > 60)
    finally:
        app.finish()
    halved = [d for d in _decisions(target, run_id) if "waiting on our locks: halved" in d[3]]
    assert halved and min(d[1] for d in halved) < 0.2, _decisions(target, run_id)


# -- the replicas' lag (throttle.replicas: a MySQL primary does not know it) --------------------------------------

MARIADBD, INSTALL_DB = shutil.which("mariadbd") or "/usr/sbin/mariadbd", shutil.which("mariadb-install-db")
PRIMARY_PORT, REPLICA_PORT, STATS_PORT = 18471, 18472, 18473  # scratch servers of these tests' own


def _start_server(folder: Path, port: int, server_id: int, performance_schema: bool = False) -> subprocess.Popen:
    data, tmp = folder / f"data{port}", folder / f"tmp{port}"
    tmp.mkdir(parents=True, exist_ok=True)  # its own, for the bootstrap too: one sharing /tmp removes the shared server's temp files
    subprocess.run([INSTALL_DB, "--no-defaults", f"--datadir={data}", "--user=root", "--skip-test-db",
                    "--auth-root-authentication-method=normal", f"--tmpdir={tmp}"], check=True, capture_output=True,
                   timeout=300)
    server = subprocess.Popen([MARIADBD, "--no-defaults", f"--datadir={data}", "--user=root", f"--port={port}",
                               "--bind-address=127.0.0.1", f"--socket={data}/mysqld.sock", f"--server-id={server_id}",
                               f"--tmpdir={tmp}",
                               "--log-bin=binlog", "--innodb-buffer-pool-size=16M",
                               f"--performance-schema={'ON' if performance_schema else 'OFF'}",
                               "--skip-name-resolve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = Target.from_url(f"mysql://root@127.0.0.1:{port}/mysql")

    def answers():
        try:
            db.connect(target).close()
            return True
        except Exception:
            return server.poll() is not None  # died: the assertion below says so
    wait_for(answers, timeout_s=300, what=f"the scratch MariaDB on port {port}")
    assert server.poll() is None, f"the scratch MariaDB on port {port} did not start"
    return server


def _need_binaries() -> None:
    if not (INSTALL_DB and Path(MARIADBD).exists()):
        pytest.skip("no mariadbd / mariadb-install-db on this machine: a scratch server cannot be started")


@pytest.fixture
def primary_and_replica(tmp_path):
    _need_binaries()
    servers = []
    try:
        servers.append(_start_server(tmp_path, PRIMARY_PORT, 1))
        servers.append(_start_server(tmp_path, REPLICA_PORT, 2))
        primary = Target.from_url(f"mysql://root@127.0.0.1:{PRIMARY_PORT}/mysql")
        replica = Target.from_url(f"mysql://root@127.0.0.1:{REPLICA_PORT}/mysql")
        with db.connect(replica, autocommit=True) as conn:
            conn.execute(f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {PRIMARY_PORT}, "
                         "MASTER_USER = 'root', MASTER_PASSWORD = '', MASTER_USE_GTID = no")
            conn.execute("START SLAVE")
        with db.connect(primary, autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
            conn.execute("CREATE TABLE shop.orders (id INT PRIMARY KEY) ENGINE = InnoDB")
        wait_for(lambda: _scalar(replica, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                                          "'shop'"), timeout_s=120, what="the replica to apply the primary's table")
        yield primary, replica
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=120)


def _scalar(target, query):
    with db.connect(target, autocommit=True) as conn:
        return conn.execute(query).fetchone()[0]


def test_the_replicas_lag_is_read_on_each_replica_and_pauses_the_shard_over_the_limit(primary_and_replica):
    primary, replica = primary_and_replica
    throttle = Throttle(replicas=(f"127.0.0.1:{REPLICA_PORT}",), max_replication_lag_s=1.5,
                        max_transaction_age_s=None, max_lock_waiters=None, pause_during_autovacuum=False,
                        max_wal_backlog_mb=None)
    with db.connect(primary, autocommit=True) as conn:
        assert tuning.health_problem(conn, throttle, "shop.orders") is None, "caught up: healthy"
        holder = db.connect(replica, autocommit=True)
        try:
            holder.execute("LOCK TABLES shop.orders WRITE")      # the replica's SQL thread waits behind it
            conn.execute("INSERT INTO shop.orders VALUES (1)")
            problem = wait_for(lambda: tuning.health_problem(conn, throttle, "shop.orders"), timeout_s=120,
                               what="the replica's lag over 1.5 s")
            assert problem.startswith("replication lag ") and problem.endswith("> limit 1.5s"), problem
        finally:
            holder.execute("UNLOCK TABLES")
            holder.close()
        wait_for(lambda: tuning.health_problem(conn, throttle, "shop.orders") is None, timeout_s=120,
                 what="the replica to catch up")
        with db.connect(replica, autocommit=True) as stopper:
            stopper.execute("STOP SLAVE")
        problem = wait_for(lambda: tuning.health_problem(conn, throttle, "shop.orders"), timeout_s=30,
                           what="a stopped replica to pause the shard")
        assert "unknown (a replica's replication is stopped)" in problem
        not_a_replica = Throttle(replicas=(f"127.0.0.1:{PRIMARY_PORT}",))
        with pytest.raises(AirmigrateError, match="is not a replica"):
            tuning.health_problem(conn, not_a_replica, "shop.orders")


def test_a_replica_is_host_and_port_never_a_url_with_a_password():
    assert Throttle(replicas=("db2.internal:3307", "db3")).replicas == ("db2.internal:3307", "db3")
    with pytest.raises(ValueError, match=r"replicas: entry 2 \(a URL with a user\) is not host:port") as refused:
        Throttle(replicas=("db2", "mysql://app:secret@db2:3306"))
    assert "secret" not in refused.value.errors()[0]["msg"], "the password is never echoed (the spec loader's text)"
    with pytest.raises(ValueError, match=r"entry 1 \('db2:x'\) is not host:port"):
        Throttle(replicas=("db2:x",))


def settled(read, tries: int = 50):
    """The reader's figures once two reads in a row agree: the server adds a statement's sums to
    performance_schema after it sent the result (a make test once counted the baseline's SELECT 1: 21 for 20)."""
    last = read()
    for _ in range(tries):
        now = read()
        if now == last:
            return now
        last = now
    raise AssertionError(f"performance_schema's sums did not settle: {last}")


def test_with_performance_schema_on_the_applications_statements_are_read_and_ours_are_left_out(tmp_path):
    """A scratch MariaDB with performance_schema on (the shared one has it off, MariaDB's default)."""
    _need_binaries()
    server = _start_server(tmp_path, STATS_PORT, 3, performance_schema=True)
    try:
        with db.connect(Target.from_url(f"mysql://root@127.0.0.1:{STATS_PORT}/mysql"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
        target = Target.from_url(f"mysql://root@127.0.0.1:{STATS_PORT}/shop")
        reader_conn, app, ours = own_connection(target), db.connect(target, autocommit=True), own_connection(target)
        read, why = QUERIES.statements(reader_conn)
        assert why is None and read is not None, why
        for conn in (app, ours):
            conn.execute("SELECT 1").fetchall()       # each session's first sums: the baseline, not counted
        before = settled(read)  # a statement's sums reach performance_schema just after its result reaches us
        for _ in range(20):
            app.execute("SELECT SLEEP(0.01)").fetchall()
            ours.execute("SELECT SLEEP(0.05)").fetchall()
        total_ms, calls = read()
        assert calls - before[1] == 20, "the application's 20 statements, none of ours"
        assert total_ms - before[0] >= 20 * 10, "each slept 10 ms at least, as the server timed it"
        ours.close()  # a session gone between two reads drops out of both (no negative delta)
        app.execute("SELECT 1").fetchall()
        assert settled(read)[1] - calls == 1
        for conn in (app, reader_conn):
            conn.close()
    finally:
        server.terminate()
        server.wait(timeout=120)
