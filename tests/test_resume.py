"""Resumable backfill: a worker killed with SIGKILL mid-backfill loses nothing and a re-run redoes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from airmigrate import devdb, state
from airmigrate.db import connect
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, preflight, schema_change
from conftest import table_checksum

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SLOW = FIXTURES / "migrations" / "0103_slow_backfill"
# At full speed (app_latency_ratio=None) throughout: the subject is resuming, not pacing; paced, batches that only
# sleep stretched the test to 29.8 s (9.4 s unpaced)

WORKER = textwrap.dedent("""
    import sys
    from airmigrate.db import Target
    from airmigrate.spec import load_migration
    from airmigrate.stages.backfill import run_shard
    run_shard(Target.from_url(sys.argv[1]), load_migration(sys.argv[2]), int(sys.argv[3]), app_latency_ratio=None)
""")


def succeeded_batches(target, run_id):
    with connect(target) as conn:
        return dict(conn.execute("SELECT batch_no, finished_at FROM airmigrate.batches WHERE run_id = %s "
                                 "AND status = 'succeeded'", (run_id,)).fetchall())


def test_killed_backfill_resumes_without_redoing_committed_batches(fresh_db, pg_server, template_db):
    migration = load_migration(SLOW)
    run_id = preflight.preflight(fresh_db, migration)["run_id"]
    schema_change.schema_change(fresh_db, migration, run_id)
    assert backfill.start_backfill(fresh_db, migration, run_id) == 15  # ~30,000 rows / 2,000

    worker = subprocess.Popen([sys.executable, "-c", WORKER, fresh_db.url(), str(SLOW), str(run_id)])
    deadline = time.monotonic() + 60
    while len(succeeded_batches(fresh_db, run_id)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    before = succeeded_batches(fresh_db, run_id)
    assert 4 <= len(before) < 15, "the kill must land in the middle of the backfill"

    with connect(fresh_db) as conn:  # nothing half-done: rows of unfinished batches are untouched
        statuses = dict(conn.execute("SELECT status, count(*) FROM airmigrate.batches WHERE run_id = %s "
                                     "GROUP BY status", (run_id,)).fetchall())
        # the batch in hand rolled back to pending, or (a kill between two batches) none was created yet
        assert set(statuses) <= {"succeeded", "pending"} and statuses.get("pending", 0) <= 1

    result = backfill.run_shard(fresh_db, migration, run_id, app_latency_ratio=None)
    assert result["batches"] == 15 - len(before)
    after = succeeded_batches(fresh_db, run_id)
    assert len(after) == 15
    assert {b: after[b] for b in before} == before, "committed batches were not redone"
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT max(attempts) FROM airmigrate.batches WHERE run_id = %s",
                            (run_id,)).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM users WHERE email_verified IS DISTINCT FROM "
                            "(email_confirmed_at IS NOT NULL)").fetchone()[0] == 0
        assert state.batch_summary(conn, run_id)["rows"] == conn.execute(
            "SELECT count(*) FROM users WHERE email_confirmed_at IS NOT NULL").fetchone()[0]

    uninterrupted = devdb.recreate_database(pg_server, f"{fresh_db.dbname}_ref", template=template_db)
    try:
        ref_run = preflight.preflight(uninterrupted, migration)["run_id"]
        schema_change.schema_change(uninterrupted, migration, ref_run)
        backfill.start_backfill(uninterrupted, migration, ref_run)
        backfill.run_shard(uninterrupted, migration, ref_run, app_latency_ratio=None)
        assert table_checksum(fresh_db) == table_checksum(uninterrupted)
    finally:
        devdb.drop_database(pg_server, uninterrupted.dbname)


def test_failed_batch_is_recorded_and_retried_alone(fresh_db, tmp_path):
    """A batch that fails every attempt is marked failed with its range; the others complete; retry_failed
    runs only that batch again once the cause is fixed."""
    folder = tmp_path / "0104_fragile_backfill"
    folder.mkdir()
    for name in ("up.sql", "down.sql"):
        (folder / name).write_text((SLOW / name).read_text())
    (folder / "migration.yaml").write_text(
        "description: fails on one id\ntable: users\nbatch_size: 5000\nshards: 1\n"
        "backfill: {sql: backfill.sql, columns: [email_verified], max_attempts: 2, adaptive: false}\n")
    (folder / "backfill.sql").write_text(
        "UPDATE users SET email_verified = CASE WHEN id = 12345 AND NOT EXISTS (SELECT 1 FROM pg_class WHERE "
        "relname = 'cure') THEN (1 / (id - 12345))::int = 1 ELSE email_confirmed_at IS NOT NULL END "
        "WHERE id BETWEEN %(lo)s AND %(hi)s")
    migration = load_migration(folder)
    run_id = preflight.preflight(fresh_db, migration)["run_id"]
    schema_change.schema_change(fresh_db, migration, run_id)
    backfill.start_backfill(fresh_db, migration, run_id)

    import pytest
    from airmigrate.errors import BackfillError

    with pytest.raises(BackfillError, match=r"1 batch\(es\) failed: batch 2 \[10001\.\.15000\] after 2 attempts"):
        backfill.run_shard(fresh_db, migration, run_id)
    with connect(fresh_db) as conn:
        summary = state.batch_summary(conn, run_id)
        assert (summary["succeeded"], summary["failed"]) == (5, 1)
        assert "division by zero" in state.failed_batches(conn, run_id)[0][4]
        conn.execute("CREATE TABLE cure ()")
        conn.commit()
    result = backfill.run_shard(fresh_db, migration, run_id, retry_failed=True)
    assert result["batches"] == 1
    with connect(fresh_db) as conn:
        assert state.batch_summary(conn, run_id)["succeeded"] == 6
