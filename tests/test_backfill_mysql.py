"""The backfill on a real MySQL / MariaDB (issue 22): keyset batches from the key walk, claims with SELECT ... FOR
UPDATE SKIP LOCKED, each batch's UPDATE and its state row in one transaction, shards, failed-batch retry, kill -9
of a shard and a resume. AIRMIGRATE_TEST_MYSQL_URL, else MariaDB at 127.0.0.1:3306 as root; without one this
module skips with one line.

"Nothing redone" is proved by a counter: the backfill adds 1 to a row's ``touched``, so a row done twice says 2."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import yaml
from mysql_support import URL, Writer, begin_backfill, dialect_asked, scratch_database, skip_without_server
from polling import wait_for

from airmigrate import control, db, state
from airmigrate.engines.target import Target
from airmigrate.errors import BackfillError
from airmigrate.spec import Throttle, load_migration
from airmigrate.stages import backfill
from airmigrate.stages.backfill import tuning

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.server


skip_without_server()  # one line in the summary when no server answers (a user's machine)


@pytest.fixture
def target(monkeypatch):
    """A database of its own with items(id, v, touched) of `rows` rows (10,000 unless the test says), dropped
    afterwards with the state rows of its migration."""
    with scratch_database("am_bf", monkeypatch) as made:  # and its state database
        yield made


def make_items(target: Target, rows: int) -> None:
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id INT PRIMARY KEY, v INT NOT NULL DEFAULT 0, "
                     "touched INT NOT NULL DEFAULT 0) ENGINE = InnoDB")
        for start in range(1, rows + 1, 10_000):
            values = ", ".join(f"({i})" for i in range(start, min(rows, start + 9_999) + 1))
            conn.execute(f"INSERT INTO items (id) VALUES {values}")


def write_migration(tmp_path: Path, target: Target, **backfill_extra):
    """A migration whose backfill adds 1 to touched (its id carries the database's name, for the cleanup)."""
    folder = tmp_path / f"0001_{target.dbname}"
    folder.mkdir()
    (folder / "backfill.sql").write_text("UPDATE items SET touched = touched + 1 WHERE id BETWEEN %(lo)s AND %(hi)s")
    (folder / "up.sql").write_text("SELECT 1;\n")
    (folder / "down.sql").write_text("SELECT 1;\n")
    spec = {"description": "mysql backfill", "table": f"{target.dbname}.items", "key": "id", "batch_size": 1000,
            "shards": 2, "backfill": {"sql": "backfill.sql", "columns": ["touched"], "min_batch_size": 200,
                                      "max_batch_size": 5000, **backfill_extra}}
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    return load_migration(folder)


def succeeded(target: Target, run_id: int) -> int:
    return scalar(target, "SELECT COUNT(*) FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded'",
                  (run_id,))


def scalar(target: Target, query: str, params=()):
    with db.connect(target) as conn:
        return conn.execute(query, params).fetchone()[0]


SHARD = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.WARNING)
    from airmigrate.engines.target import Target
    from airmigrate.spec import load_migration
    from airmigrate.stages import backfill
    target, folder, run_id, shard = Target.from_url(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(backfill.run_shard(target, load_migration(folder), run_id, shard=shard, shards=2), flush=True)
""")


def start_shard(target: Target, migration, run_id: int, shard: int) -> subprocess.Popen:
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": URL}
    env.pop("AIRFLOW_CONN_AIRMIGRATE_TARGET", None)
    return subprocess.Popen([sys.executable, "-c", SHARD, target.url(), str(migration.folder), str(run_id),
                             str(shard)], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def application(rows: int):
    """The application meanwhile (a mysql_support.Writer's work): updates random rows' v and inserts new rows past
    the end, one statement each."""
    inserted = [rows]

    def work(conn, rng, i) -> None:
        if rng.random() < 0.1:
            conn.execute("INSERT INTO items (id, v) VALUES (%s, 1)", (inserted[0] + 1,))
            inserted[0] += 1
        else:
            conn.execute("UPDATE items SET v = v + 1 WHERE id = %s", (rng.randint(1, rows),))
    return work


def test_kill_9_of_a_shard_under_a_concurrent_writer_then_a_resume_does_every_row_exactly_once(target, tmp_path):
    rows = 100_000
    make_items(target, rows)
    migration = write_migration(tmp_path, target, max_batch_size=2000)  # 50 batches at least: room for two kills
    run_id = begin_backfill(target, migration)
    writer = Writer(target, application(rows)).start()
    try:
        shards = [start_shard(target, migration, run_id, shard) for shard in (0, 1)]
        random.shuffle(shards)
        killed = []
        for shard in shards:  # each at a random moment: after that many more batches succeeded, run-wide
            at = succeeded(target, run_id) + random.randint(2, 25)
            wait_for(lambda: succeeded(target, run_id) >= at or shard.poll() is not None, 300,
                     "the shards' batches")
            if shard.poll() is None:
                shard.send_signal(signal.SIGKILL)
                shard.wait(timeout=30)
                killed.append(succeeded(target, run_id))
        assert killed, "both shards finished before a kill: nothing was tested"
        # the resume: a killed shard's batch rolled back with its session and is pending again
        resumed = backfill.run_shard(target, migration, run_id, shard=2, shards=2)
    finally:
        writer.finish()
    logging.getLogger(__name__).info("shards killed after %s batches; the resume did %s; the writer ran %d statements "
                                     "(slowest %.3fs)", killed, resumed, writer.calls, writer.slowest)
    assert writer.errors == [] and writer.calls > 100
    assert writer.slowest < 5.0, f"an application statement took {writer.slowest:.1f}s"
    with db.connect(target) as conn:
        touched = dict(conn.execute("SELECT touched, COUNT(*) FROM items WHERE id <= %s GROUP BY touched",
                                    (rows,)).fetchall())
        assert touched == {1: rows}, f"rows by times done: {touched}"
        assert conn.execute("SELECT MAX(touched) FROM items").fetchone()[0] == 1  # new rows: at most once
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM airmigrate.batches WHERE run_id = %s "
                                     "GROUP BY status", (run_id,)).fetchall())
        assert set(statuses) == {"succeeded"}, statuses
        done = conn.execute("SELECT SUM(`rows`) FROM airmigrate.batches WHERE run_id = %s", (run_id,)).fetchone()[0]
        assert int(done) == conn.execute("SELECT SUM(touched) FROM items").fetchone()[0]
        workers = {w.rsplit(":", 1)[-1] for (w,) in conn.execute(
            "SELECT DISTINCT worker FROM airmigrate.batches WHERE run_id = %s", (run_id,)).fetchall()}
        assert workers <= {"shard0", "shard1", "shard2"} and len(workers) >= 2, workers
    summary = state.batch_summary(db.connect(target), run_id)
    assert summary["failed"] == 0 and summary["pending"] == 0 and summary["succeeded"] == statuses["succeeded"]


def test_a_failed_batch_is_recorded_and_only_it_runs_again_on_retry(target, tmp_path, monkeypatch):
    """Run in MariaDB's forms only: the backfill's batches never ask which forms to send (dialect_asked stays
    empty), so MySQL 8's switch would send the same statements; the forms themselves: tests/test_mysql8_forms.py."""
    make_items(target, 5000)
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE fail_switch (on_ BOOLEAN NOT NULL)")
        conn.execute("INSERT INTO fail_switch VALUES (TRUE)")
        conn.execute("CREATE TRIGGER items_fail BEFORE UPDATE ON items FOR EACH ROW "
                     "IF NEW.id = 2345 AND (SELECT on_ FROM fail_switch) THEN "
                     "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'row 2345 refused'; END IF")
    with dialect_asked(monkeypatch) as asked:
        migration = write_migration(tmp_path, target, max_attempts=2, adaptive=False)
        run_id = begin_backfill(target, migration)
        with pytest.raises(BackfillError) as failed:
            backfill.run_shard(target, migration, run_id)
        assert "row 2345 refused" in str(failed.value) and "1 batch(es) failed" in str(failed.value)
        assert scalar(target, "SELECT COUNT(*) FROM items WHERE touched = 0") == 1000  # the failed batch rolled back
        with db.connect(target, autocommit=True) as conn:
            conn.execute("UPDATE fail_switch SET on_ = FALSE")
        again = backfill.run_shard(target, migration, run_id, retry_failed=True)
        assert again["batches"] == 1 and again["rows"] == 1000
        assert scalar(target, "SELECT COUNT(*) FROM items WHERE touched <> 1") == 0
    assert asked == [], "the backfill asked which SQL forms to send: run it in both (sql_forms)"
    with db.connect(target) as conn:
        outcomes = conn.execute("SELECT outcome, COUNT(*) FROM airmigrate.batch_attempts WHERE run_id = %s "
                                "GROUP BY outcome ORDER BY outcome", (run_id,)).fetchall()
    assert [tuple(o) for o in outcomes] == [("failed", 2), ("succeeded", 5)]


def test_a_throttled_run_is_paced_by_the_applications_latency_with_its_hard_stops(target, tmp_path, caplog):
    """Issue 22: the pacer reads MySQL's signals (tests/test_pacing_mysql.py); the run keeps its hard stops and is
    never said to go at full speed."""
    make_items(target, 3000)
    migration = write_migration(tmp_path, target, throttle={"app_latency_ratio": 1.5, "max_lock_waiters": 50})
    run_id = begin_backfill(target, migration)
    backfill._UNPACED.clear()
    caplog.set_level(logging.INFO)
    for shard in (0, 1):
        backfill.run_shard(target, migration, run_id, shard=shard)
    assert not [r.getMessage() for r in caplog.records if "does not measure" in r.getMessage()]
    assert "pacing: protecting the application at 1.50x" in caplog.text
    assert scalar(target, "SELECT COUNT(*) FROM airmigrate.pacing WHERE run_id = %s", (run_id,)) == 1
    assert scalar(target, "SELECT COUNT(*) FROM items WHERE touched = 1") == 3000


def test_a_hard_stop_sees_a_session_waiting_on_a_row_lock(target):
    """The lock-waiters check counts an application session stuck behind a lock (the pause itself is the
    neutral code's, tested on PostgreSQL)."""
    make_items(target, 10)
    holder, waiter = db.connect(target), db.connect(target)
    try:
        holder.execute("UPDATE items SET v = 1 WHERE id = 1")
        blocked = threading.Thread(target=lambda: _swallow(waiter, "UPDATE items SET v = 2 WHERE id = 1"),
                                   daemon=True)
        blocked.start()
        with db.connect(target) as conn:
            problem = wait_for(lambda: tuning.health_problem(conn, Throttle(max_lock_waiters=0,
                                                                            max_replication_lag_s=None,
                                                                            max_transaction_age_s=None,
                                                                            pause_during_autovacuum=False), "t"),
                               30, "the waiter to show")
        assert problem.startswith("lock waiters") and "> limit 0" in problem
    finally:
        holder.rollback()
        holder.close()
        blocked.join(timeout=30)
        waiter.close()


def _swallow(conn, statement: str) -> None:
    try:
        conn.execute(statement)
        conn.rollback()
    except Exception:
        pass


def test_composite_and_text_keys_walk_every_row_once(target, tmp_path):
    """A composite key (a row compared as a whole: MariaDB has no row BETWEEN, so >= and <=) and a text key."""
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE pairs (tenant INT, seq INT, touched INT NOT NULL DEFAULT 0, PRIMARY KEY (tenant, seq))")
        conn.execute("INSERT INTO pairs (tenant, seq) VALUES " + ", ".join(f"({i % 13}, {i})" for i in range(1, 3001)))
        conn.execute("CREATE TABLE codes (code VARCHAR(40) PRIMARY KEY, touched INT NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO codes (code) VALUES " + ", ".join(f"('k-{i * 7919 % 3001:05d}')" for i in range(3000)))
    cases = {"pairs": (["tenant", "seq"], "UPDATE pairs SET touched = touched + 1 WHERE (tenant, seq) >= "
                                          "(%(lo_0)s, %(lo_1)s) AND (tenant, seq) <= (%(hi_0)s, %(hi_1)s)"),
             "codes": ("code", "UPDATE codes SET touched = touched + 1 WHERE code BETWEEN %(lo)s AND %(hi)s")}
    for table, (key, update) in cases.items():
        folder = tmp_path / f"0002_{table}_{target.dbname}"
        folder.mkdir()
        (folder / "backfill.sql").write_text(update)
        (folder / "up.sql").write_text("SELECT 1;\n")
        (folder / "down.sql").write_text("SELECT 1;\n")
        (folder / "migration.yaml").write_text(yaml.safe_dump({
            "description": "keys", "table": f"{target.dbname}.{table}", "key": key, "batch_size": 400,
            "backfill": {"sql": "backfill.sql", "columns": ["touched"], "adaptive": False, "min_batch_size": 400}}))
        migration = load_migration(folder)
        run_id = begin_backfill(target, migration)
        done = backfill.run_shard(target, migration, run_id)
        assert done["rows"] == 3000 and done["batches"] == 8, (table, done)
        assert scalar(target, f"SELECT COUNT(*) FROM {table} WHERE touched <> 1") == 0, table


def test_a_batch_over_the_statement_time_limit_is_split_in_half(target, tmp_path):
    """MariaDB's max_statement_time stops the 1,000-row batch (1.5 s of SLEEP); its halves fit in the limit."""
    make_items(target, 2000)
    folder = tmp_path / f"0003_{target.dbname}"
    folder.mkdir()
    (folder / "backfill.sql").write_text("UPDATE items SET touched = touched + 1 + 0 * SLEEP(0.0015) "
                                         "WHERE id BETWEEN %(lo)s AND %(hi)s")
    (folder / "up.sql").write_text("SELECT 1;\n")
    (folder / "down.sql").write_text("SELECT 1;\n")
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": "split", "table": f"{target.dbname}.items", "key": "id", "batch_size": 1000,
        "statement_timeout_ms": 1000,
        "backfill": {"sql": "backfill.sql", "columns": ["touched"], "adaptive": False, "min_batch_size": 1000}}))
    migration = load_migration(folder)
    run_id = begin_backfill(target, migration)
    backfill.run_shard(target, migration, run_id, app_latency_ratio=None)  # the split's test, not pacing's
    assert scalar(target, "SELECT COUNT(*) FROM items WHERE touched <> 1") == 0
    with db.connect(target) as conn:
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM airmigrate.batches WHERE run_id = %s "
                                     "GROUP BY status", (run_id,)).fetchall())
    assert statuses.get("split", 0) >= 1 and statuses["succeeded"] >= 3, statuses


def test_pause_from_the_console_stops_the_shards_and_a_new_start_goes_on(target, tmp_path, monkeypatch):
    """airmigrate.control on MySQL: pause recorded with who, the shard stops claiming, starting again resumes."""
    make_items(target, 20_000)
    migration = write_migration(tmp_path, target, adaptive=False, min_batch_size=500, sleep_between_batches_ms=50)
    run_id = begin_backfill(target, migration)
    monkeypatch.setattr(control, "CHECK_EVERY_S", 0.1)
    shard = threading.Thread(target=lambda: results.append(backfill.run_shard(target, migration, run_id)), daemon=True)
    results: list[dict] = []
    shard.start()
    wait_for(lambda: succeeded(target, run_id) >= 2, 300, "the first batches")
    with db.connect(target) as conn:
        said = control.act(conn, migration.id, "pause", "tester")
    shard.join(timeout=120)
    assert "paused" in said and results and results[0]["stopped"] == "paused"
    left = scalar(target, "SELECT COUNT(*) FROM items WHERE touched = 0")
    assert 0 < left < 20_000
    with db.connect(target) as conn:
        assert conn.execute("SELECT actor FROM airmigrate.actions WHERE run_id = %s AND action = 'pause'",
                            (run_id,)).fetchone()[0] == "tester"
    backfill.start_backfill(target, migration, run_id)  # a new trigger: go on
    backfill.run_shard(target, migration, run_id)
    assert scalar(target, "SELECT COUNT(*) FROM items WHERE touched <> 1") == 0
