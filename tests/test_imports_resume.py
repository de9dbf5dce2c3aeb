"""Issue 23: a run killed mid-way (kill -9 in the middle of a batched UPDATE) and resumed leaves Flyway's
history consistent with the database: no row while the script is unfinished, one successful row after the
resume, and no batch done twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airmigrate.db import connect
from airmigrate.sources import lifecycle, load_sources

FIXTURE = Path(__file__).parent / "fixtures" / "flyway_project"
ROWS = 200_000

CHILD = """
import sys
from airmigrate.db import Target
from airmigrate.sources import lifecycle, load_sources
(source,) = load_sources(sys.argv[1])
lifecycle.apply(Target.from_url(sys.argv[2]), source, source.migrations()[2])
"""


@pytest.mark.server
def test_kill_and_resume_keeps_flyways_history_consistent(tmp_path, empty_db, monkeypatch):
    shutil.copytree(FIXTURE, tmp_path / "flyway")
    migrations = tmp_path / "migrations"
    (migrations / "_sources").mkdir(parents=True)
    (migrations / "_sources" / "flyway.yaml").write_text("kind: flyway\nlocation: ../../flyway\n")
    monkeypatch.setenv("FLYWAY_PLACEHOLDERS_ROWS", str(ROWS))
    (source,) = load_sources(migrations)
    v1, v11, v2, _ = source.migrations()
    lifecycle.apply(empty_db, source, v1)
    lifecycle.apply(empty_db, source, v11)

    child = subprocess.Popen([sys.executable, "-c", CHILD, str(migrations), empty_db.url()],
                             env={**os.environ, "FLYWAY_PLACEHOLDERS_ROWS": str(ROWS)})
    blocker = connect(empty_db)
    try:
        deadline = time.monotonic() + 60
        with connect(empty_db, autocommit=True) as watch:
            while time.monotonic() < deadline and not watch.execute(
                    "SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND "
                    "column_name = 'tier'").fetchone()[0]:
                time.sleep(0.01)
            # once the column is there (its ALTER needed the whole table), the last row holds the batched UPDATE:
            # the child is stuck in its last batch
            blocker.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (ROWS,))
            while time.monotonic() < deadline:
                waiting = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND query LIKE 'UPDATE accounts SET tier%%'").fetchone()[0]
                if waiting:
                    break
                time.sleep(0.1)
            assert waiting, "the batched UPDATE never reached the locked row"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        child.kill()
        blocker.rollback()
        blocker.close()

    with connect(empty_db) as conn:
        done = conn.execute("SELECT count(*) FROM accounts WHERE tier = 'basic'").fetchone()[0]
        assert 0 < done < ROWS  # killed mid-way: some batches committed, the rest not
        assert conn.execute("SELECT count(*) FROM flyway_schema_history WHERE version = '2'").fetchone()[0] == 0
    with connect(empty_db) as conn:
        assert source.statuses(conn)[v2.id].state == "pending"

    lifecycle.apply(empty_db, source, v2)  # resumes from the recorded steps and the batch cursor
    with connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM accounts WHERE tier = 'basic'").fetchone()[0] == ROWS
        rows = conn.execute("SELECT version, success FROM flyway_schema_history ORDER BY installed_rank").fetchall()
        assert rows == [("1", True), ("1.1", True), ("2", True)]
        twice = conn.execute("SELECT count(*) FROM (SELECT batch_no FROM airmigrate.batch_attempts a JOIN "
                             "airmigrate.runs r USING (run_id) WHERE r.migration_id = %s AND outcome = 'succeeded' "
                             "GROUP BY batch_no HAVING count(*) > 1) s", (f"{v2.id}#1",)).fetchone()[0]
        assert twice == 0
        assert conn.execute("SELECT sum(rows) FROM airmigrate.batches b JOIN airmigrate.runs r USING (run_id) WHERE "
                            "r.migration_id = %s", (f"{v2.id}#1",)).fetchone()[0] == ROWS
