"""`executor: pt-osc` against a real MariaDB / MySQL and pt-online-schema-change (Debian's percona-toolkit): an int
-> bigint change on 300,000 rows, which the server can only do by copying with writes blocked, is refused without
an executor before anything changes (quoting the server), and with `executor: pt-osc` completes while a writer
process keeps changing rows: no writer error, every row identical to a reference table the writer changed in the
same transactions. A pt-osc killed half-way leaves no trigger and no shadow table behind."""

from __future__ import annotations

import logging
import shutil
import threading
import time

import psutil
import pytest
from mysql_support import URL, Writer, drop_database, fill, fresh_database, rows_of, skip_without_server
from polling import wait_for

from airmigrate import db, engines
from airmigrate.engines.base import Executor
from airmigrate.engines.mysql import ptosc
from airmigrate.errors import AirmigrateError, PreflightError
from airmigrate.spec import load_migration
from airmigrate.stages.preflight import check_online

pytestmark = pytest.mark.server
skip_without_server()
if not shutil.which("pt-online-schema-change"):
    pytest.skip("no pt-online-schema-change on this machine (apt-get install -y percona-toolkit): the pt-osc "
                "executor's tests are skipped", allow_module_level=True)
MYSQL = engines.named("mysql")
ROWS = 300_000
ALTER = "ALTER TABLE big MODIFY a BIGINT NOT NULL"


@pytest.fixture
def target(monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", URL)
    made = fresh_database("am_myptosc")
    yield made
    drop_database(made)


def column_type(target, table: str = "big", column: str = "a") -> str:
    with db.connect(target) as conn:
        return conn.execute("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                            "AND TABLE_NAME = %s AND COLUMN_NAME = %s", (table, column)).fetchone()[0]


def leftovers(target) -> tuple[list[str], list[str]]:
    with db.connect(target) as conn:
        return ptosc.leftovers(conn, target.dbname, "big")


def application():
    """The application (a mysql_support.Writer's work, as fast as it can): updates, inserts and deletes on `big`,
    each mirrored into `ref` in the same transaction."""
    next_id = [ROWS]

    def work(conn, rng, done):
        k = rng.randint(1, ROWS)
        with conn.transaction():
            for table in ("big", "ref"):
                conn.execute(f"UPDATE {table} SET a = a + 1, s = %s WHERE id = %s", (f"w{done}", k))
            if done % 5 == 0:
                for table in ("big", "ref"):
                    conn.execute(f"INSERT INTO {table} VALUES (%s, %s, 'inserted')", (next_id[0] + 1, next_id[0] + 1))
            if done % 7 == 0:
                gone = rng.randint(1, ROWS)
                for table in ("big", "ref"):
                    conn.execute(f"DELETE FROM {table} WHERE id = %s", (gone,))
        next_id[0] += done % 5 == 0
    return work


def test_int_to_bigint_refused_without_executor_and_online_with_pt_osc(target, tmp_path, caplog):
    fill(target, "big", ROWS)
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE ref LIKE big")
        conn.execute("INSERT INTO ref SELECT * FROM big")
    folder = tmp_path / "0001_widen_big_a"
    folder.mkdir()
    (folder / "up.sql").write_text(ALTER + ";\n")
    (folder / "down.sql").write_text("SELECT 1;\n")
    (folder / "migration.yaml").write_text(f"description: int to bigint\ntable: {target.dbname}.big\n")

    # without an executor: refused before anything changes, in the server's words, by the preflight and the run
    with db.connect(target, autocommit=True) as conn, pytest.raises(PreflightError) as refused:
        check_online(conn, load_migration(folder))
    assert "Cannot change column type" in str(refused.value) and "executor: pt-osc" in str(refused.value)
    with pytest.raises(Exception) as at_run:
        MYSQL.run_ddl(target, ALTER)
    assert type(at_run.value).__name__ == "CopyRefused" and "Cannot change column type" in str(at_run.value)
    assert column_type(target) == "int(11)" and leftovers(target) == ([], [])

    (folder / "migration.yaml").write_text(f"description: int to bigint\ntable: {target.dbname}.big\n"
                                           "executor: pt-osc\nchunk_time: 0.2\n")
    migration = load_migration(folder)
    with db.connect(target, autocommit=True) as conn:
        check_online(conn, migration)   # pt-osc takes it
    caplog.set_level(logging.INFO, logger="airmigrate.engines.mysql")
    writer = Writer(target, application(), pause_s=0).start()
    wait_for(lambda: writer.calls >= 20, what="the writer running")
    started = time.monotonic()
    try:
        MYSQL.run_ddl(target, migration.up_sql, executor=migration.spec.executor_settings(),
                      lock_timeout_ms=migration.spec.lock_timeout_ms)
        finished = time.monotonic()
        wait_for(lambda: writer.calls >= 20 + 20, what="the writer going on after the swap")
    finally:
        writer.finish()
    during = sum(1 for t in writer.times if started <= t <= finished)
    log = [r.getMessage() for r in caplog.records]
    print(f"pt-osc: {finished - started:.1f} s for {ROWS:,} rows; writer: {writer.calls} transactions, {during} "
          f"during the change, slowest {writer.slowest:.3f} s, errors {len(writer.errors)}")
    assert writer.errors == []
    assert during > 10                                  # the application wrote all along
    assert column_type(target) == "bigint(20)" and leftovers(target) == ([], [])
    assert any("Successfully altered" in m for m in log)
    if finished - started >= 2.5:  # pt-osc reports its progress once a second of copying (a quick copy: none)
        assert any(m.startswith("pt-osc progress: ") and "% of `" in m for m in log)   # its progress, parsed
    assert not any(target.password and target.password in m for m in log)
    assert rows_of(target, "big") == rows_of(target, "ref")   # every row, the writer's changes included


def test_a_killed_pt_osc_leaves_no_trigger_and_no_shadow_table(target, caplog):
    fill(target, "big", 20_000)
    caplog.set_level(logging.INFO, logger="airmigrate.engines.mysql")
    busy = db.connect(target, autocommit=True)   # one more running thread: above the max load, pt-osc pauses
    busy_id = busy.thread_id()

    def sleep():
        try:
            busy.execute("SELECT SLEEP(120)")
        except Exception:  # KILL QUERY ends it (MariaDB: error 1317; MySQL: SLEEP returns 1)
            pass

    sleeper = threading.Thread(target=sleep, daemon=True)
    sleeper.start()
    failures: list[BaseException] = []

    def run():
        try:
            ptosc.run(target, ALTER, Executor("pt-osc", 0.1, "Threads_running=1", "Threads_running=1000"))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_for(lambda: leftovers(target)[0] and leftovers(target)[1], what="pt-osc's triggers and shadow table")
        wait_for(lambda: any("Pausing because" in r.getMessage() for r in caplog.records), what="pt-osc pausing")
        (child,) = [p for p in psutil.Process().children(recursive=True)
                    if any("pt-online-schema-change" in part for part in p.cmdline())]
        child.kill()   # kill -9: pt-osc cannot clean up after itself
        worker.join(timeout=60)
    finally:
        with db.connect(target, autocommit=True) as conn:
            conn.execute(f"KILL QUERY {int(busy_id)}")
        sleeper.join(timeout=10)
        busy.close()
    assert not worker.is_alive() and len(failures) == 1 and isinstance(failures[0], AirmigrateError)
    assert "pt-online-schema-change on" in str(failures[0]) and "failed" in str(failures[0])
    assert leftovers(target) == ([], [])
    assert any("removed trigger pt_osc_" in r.getMessage() and "table _big_new" in r.getMessage()
               for r in caplog.records)
    assert column_type(target) == "int(11)" and len(rows_of(target, "big")) == 20_000
