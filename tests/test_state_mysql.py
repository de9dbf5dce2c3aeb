"""airmigrate's state tables and the one-runner lease on a real MySQL / MariaDB (issue 22): AIRMIGRATE_TEST_MYSQL_URL,
else MariaDB at 127.0.0.1:3306 as root; without one this module skips with one line.

The state lives in the target database's own state database (``airmigrate__test`` for the shared test database,
shared by every test using it): each test works on migration ids of its own (``am_state_<random>``) and deletes
its rows at the end. Waits are on conditions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from mysql_support import URL, WORKER, skip_without_server  # noqa: F401

from airmigrate import db, lease, state
from airmigrate.engines.mysql import leases as mysql_leases
from airmigrate.engines.target import Target

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.server


skip_without_server()  # one line in the summary when no server answers (a user's machine)


@pytest.fixture
def target(monkeypatch) -> Target:
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", URL)
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
    return Target.from_url(URL)


@pytest.fixture
def migration_id(target):
    """A migration id of this test's own; its runs and history deleted afterwards."""
    name = f"am_state_{uuid.uuid4().hex[:10]}"
    yield name
    with db.connect(target, autocommit=True) as conn:
        if state.tables_exist(conn):
            conn.execute("DELETE FROM airmigrate.runs WHERE migration_id = %s", (name,))
            conn.execute("DELETE FROM airmigrate.history WHERE migration_id = %s", (name,))


# -- 1. the state tables ------------------------------------------------------------------------------------------

def test_the_state_tables_are_created_once_even_when_sessions_race(target):
    """Four sessions at once: each returns, every table is there, and the second call changes nothing."""
    errors = []

    def make():
        try:
            with db.connect(target) as conn:
                state.ensure_schema(conn)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.connect(target) as conn:
        assert state.tables_exist(conn)
        names = {r[0] for r in conn.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE "
                                            "TABLE_SCHEMA = %s", (conn.state_database,)).fetchall()}
        assert {"history", "runs", "batches", "cursors", "pacing", "pacing_log", "controls", "actions",
                "batch_attempts"} <= names
        kinds = dict(conn.execute("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE "
                                  "TABLE_SCHEMA = %s AND TABLE_NAME = 'runs'", (conn.state_database,)).fetchall())
        assert kinds["facts"] in ("json", "longtext") and kinds["completed_stages"] in ("json", "longtext")


def test_the_database_allows_one_active_run_per_migration_and_direction(target, migration_id):
    """Not the code: a second active run of the same migration and direction is a duplicate key in the server,
    a finished run frees the slot, and the other direction has its own."""
    with db.connect(target) as conn:
        state.ensure_schema(conn)
        run_id, resumed = state.begin_run(conn, migration_id, "up", None)
        conn.commit()
        assert not resumed and state.active_run(conn, migration_id) == run_id
        with pytest.raises(Exception) as refused:
            conn.execute("INSERT INTO airmigrate.runs (migration_id, direction, status) VALUES (%s, 'up', 'paused')",
                         (migration_id,))
        assert refused.value.args[0] == 1062 and "runs_one_active_per_migration" in str(refused.value)
        conn.rollback()
        conn.execute("INSERT INTO airmigrate.runs (migration_id, direction, status) VALUES (%s, 'down', 'pending')",
                     (migration_id,))
        conn.execute("INSERT INTO airmigrate.runs (migration_id, direction, status) VALUES (%s, 'up', 'succeeded')",
                     (migration_id,))
        state.finish_run(conn, run_id, "succeeded")
        conn.commit()
        assert state.active_run(conn, migration_id) is None
        again, resumed = state.begin_run(conn, migration_id, "up", None)
        conn.commit()
        assert again > run_id and not resumed


def test_a_run_whose_owner_is_gone_is_resumed_with_its_stages_and_facts(target, migration_id):
    with db.connect(target) as conn:
        state.ensure_schema(conn)
        run_id, _ = state.begin_run(conn, migration_id, "up", "dag-run-1")
        state.mark_stage_done(conn, run_id, "preflight", shape={"columns": 3}, note=None)
        state.mark_stage_done(conn, run_id, "preflight", shape="twice")  # a stage is recorded once
        state.add_facts(conn, run_id, shape={"rows": 9}, backup="/tmp/x")  # a top-level key replaced whole
        conn.commit()
        assert state.stage_done(conn, run_id, "preflight") and not state.stage_done(conn, run_id, "backup")
        conn.execute("UPDATE airmigrate.runs SET lease_until = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND WHERE run_id = %s",
                     (run_id,))  # dag-run-1 is gone: its lease ran out
        again, resumed = state.begin_run(conn, migration_id, "up", "dag-run-2")
        conn.commit()
        assert (again, resumed) == (run_id, True)
        latest = state.latest_run(conn, migration_id, None)
        assert latest["completed_stages"] == ["preflight"]
        assert latest["facts"] == {"shape": {"rows": 9}, "note": None, "backup": "/tmp/x"}
        assert latest["dag_run_id"] == "dag-run-2" and latest["status"] == "running"
        assert state.owned_run(conn, migration_id, "up", "dag-run-2") == run_id
        with pytest.raises(lease.LeaseLost):
            state.owned_run(conn, migration_id, "up", "dag-run-1")


def test_history_rows_upsert_and_keep_their_files(target, migration_id):
    with db.connect(target) as conn:
        state.ensure_schema(conn)
        state.start_history(conn, migration_id, "sum1", {"up.sql": "a"})
        state.mark_history_failed(conn, migration_id, "boom")
        state.start_history(conn, migration_id, "sum2", {"up.sql": "b"})
        state.resume_history(conn, migration_id, "sum3", None)
        state.mark_applied(conn, migration_id)
        conn.commit()
        row = state.history(conn, migration_id)
        assert (row["checksum"], row["status"], row["files"], row["error"]) == ("sum3", "applied", {"up.sql": "b"},
                                                                                None)
        assert row["duration_s"] is not None and row["duration_s"] >= 0
        listed = [h for h in state.all_history(conn) if h["migration_id"] == migration_id]
        assert listed and listed[0]["rows_backfilled"] == 0


# -- 2. the lease ----------------------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from airmigrate import lease
    from airmigrate.engines.target import Target
    target, migration, mode = Target.from_url(sys.argv[1]), sys.argv[2], sys.argv[3]
    hold = (lease.hold_for_cli(target, migration, "run " + migration) if mode == "cli"
            else lease.hold_for_task(target, migration, "dag-run-x"))
    with hold:
        print("held", flush=True)
        time.sleep(600)
""")


def hold_in_another_process(migration_id: str, mode: str) -> subprocess.Popen:
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": URL}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, URL, migration_id, mode], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


def test_a_cli_runner_holds_the_migration_and_a_second_one_refuses_naming_it(target, migration_id, monkeypatch):
    monkeypatch.setattr(lease, "GRACE_S", 0.5)
    first = hold_in_another_process(migration_id, "cli")
    try:
        with pytest.raises(lease.LeaseHeld) as refused:
            with lease.hold_for_cli(target, migration_id, "run second"):
                pass
        assert f"pid {first.pid}" in str(refused.value) and "Nothing was run" in str(refused.value)
        with pytest.raises(lease.LeaseHeld):  # a task does not slip in beside a CLI runner either
            with lease.hold_for_task(target, migration_id, "dag-run-y"):
                pass
    finally:
        kill(first)  # kill -9: the server lets go of the lock with the session
    with lease.hold_for_cli(target, migration_id, "run third", wait_s=30) as holder:
        assert "CLI" in holder and lease.held_here(target, migration_id) == holder


def test_tasks_share_the_lease_and_keep_a_cli_runner_out_until_the_last_one_ends(target, migration_id, monkeypatch):
    monkeypatch.setattr(lease, "GRACE_S", 0.5)
    first = hold_in_another_process(migration_id, "task")
    second = hold_in_another_process(migration_id, "task")  # shared: both hold it
    try:
        with pytest.raises(lease.LeaseHeld) as refused:
            with lease.hold_for_cli(target, migration_id, "run cli"):
                pass
        assert f"pid {first.pid}" in str(refused.value) or f"pid {second.pid}" in str(refused.value)
        kill(first)
        with pytest.raises(lease.LeaseHeld) as refused:
            with lease.hold_for_cli(target, migration_id, "run cli"):
                pass
        assert f"pid {second.pid}" in str(refused.value)
    finally:
        kill(first)
        kill(second)
    with lease.hold_for_cli(target, migration_id, "run cli", wait_s=30):
        with db.connect(target) as conn:
            holders = conn.execute("SELECT mode, label FROM airmigrate.leases WHERE lease_key = %s AND "
                                   "IS_USED_LOCK(lock_name) = connection_id",
                                   (mysql_leases.lock_name(conn, lease.lock_key(migration_id)),)
                                   ).fetchall()
        assert [mode for mode, _ in holders] == ["exclusive"]


def test_a_task_heartbeat_extends_its_runs_lease_and_a_live_dag_run_is_not_taken_over(target, migration_id,
                                                                                       monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_LEASE_SECONDS", "60")
    with db.connect(target) as conn:
        state.ensure_schema(conn)
        run_id, _ = state.begin_run(conn, migration_id, "up", "dag-run-a")
        conn.commit()
        lease.extend(conn, migration_id, "dag-run-a", 120)
        conn.commit()
        left = conn.execute("SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(6), lease_until) FROM airmigrate.runs "
                            "WHERE run_id = %s", (run_id,)).fetchone()[0]
        assert 100 <= left <= 121
        busy = lease.live_foreign_run(conn, migration_id, "dag-run-b")
        assert busy and "Airflow DAG run dag-run-a" in busy and "lease for" in busy
        with pytest.raises(lease.LeaseHeld):
            state.begin_run(conn, migration_id, "up", "dag-run-b")
        conn.rollback()
        conn.execute("UPDATE airmigrate.runs SET lease_until = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND WHERE run_id = %s",
                     (run_id,))
        conn.commit()
        assert state.begin_run(conn, migration_id, "up", "dag-run-b") == (run_id, True)
        conn.commit()
