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
                                        "AND query LIKE 'UPDATE %%accounts SET tier%%'").fetchone()[0]
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
        # airmigrate's own row agrees: running (not applied), the run open to be resumed
        assert conn.execute("SELECT status FROM airmigrate.history WHERE migration_id = %s", (v2.id,)).fetchone() \
            == ("running",)
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
        assert conn.execute("SELECT status, checksum FROM airmigrate.history WHERE migration_id = %s",
                            (v2.id,)).fetchone() == ("applied", v2.checksum)
        assert conn.execute("SELECT count(*), min(status) FROM airmigrate.runs WHERE migration_id = %s",
                            (v2.id,)).fetchone() == (1, "succeeded")  # one run, resumed, not a second one


ALEMBIC_CHILD = """
import sys
from airmigrate.db import Target
from airmigrate.sources import lifecycle, load_sources
(source,) = load_sources(sys.argv[1])
(b2000,) = [m for m in source.migrations() if m.ref.revision == "b2000"]
lifecycle.apply(Target.from_url(sys.argv[2]), source, b2000)
"""


@pytest.mark.server
def test_kill_and_resume_keeps_alembic_version_consistent(tmp_path, empty_db):
    """b2000 (a new branch head beside c2100) killed in its batched UPDATE: alembic_version unchanged; resumed:
    Alembic's INSERT of the second head, every row once."""
    shutil.copytree(FIXTURE.parent / "alembic_project", tmp_path / "alembic_project")
    migrations = tmp_path / "migrations"
    (migrations / "_sources").mkdir(parents=True)
    (migrations / "_sources" / "alembic.yaml").write_text("kind: alembic\nlocation: ../../alembic_project\n")
    (source,) = load_sources(migrations)
    by_rev = {m.ref.revision: m for m in source.migrations()}
    lifecycle.apply(empty_db, source, by_rev["a1000"])
    lifecycle.apply(empty_db, source, by_rev["c2100"])
    _kill_when_blocked(ALEMBIC_CHILD, migrations, empty_db, "orders", "status", 5000, "UPDATE %%orders SET status%%")
    with connect(empty_db) as conn:
        done = conn.execute("SELECT count(*) FROM orders WHERE status = 'new'").fetchone()[0]
        assert 0 < done < 5000
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("c2100",)]
        assert conn.execute("SELECT status FROM airmigrate.history WHERE migration_id = %s",
                            (by_rev["b2000"].id,)).fetchone() == ("running",)
    lifecycle.apply(empty_db, source, by_rev["b2000"])
    with connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM orders WHERE status = 'new'").fetchone()[0] == 5000
        assert sorted(conn.execute("SELECT version_num FROM alembic_version").fetchall()) == [("b2000",), ("c2100",)]
        twice = conn.execute("SELECT count(*) FROM (SELECT batch_no FROM airmigrate.batch_attempts a JOIN "
                             "airmigrate.runs r USING (run_id) WHERE r.migration_id LIKE %s AND outcome = 'succeeded' "
                             "GROUP BY batch_no HAVING count(*) > 1) s", (f"{by_rev['b2000'].id}#%",)).fetchone()[0]
        assert twice == 0
        assert conn.execute("SELECT status, checksum FROM airmigrate.history WHERE migration_id = %s",
                            (by_rev["b2000"].id,)).fetchone() == ("applied", by_rev["b2000"].checksum)


def _kill_when_blocked(child_code, migrations, target, table, column, last_id, query_like):
    """Start the child, hold the table's last row once `column` exists, kill -9 the child once its batch waits."""
    child = subprocess.Popen([sys.executable, "-c", child_code, str(migrations), target.url()])
    blocker = connect(target)
    try:
        deadline = time.monotonic() + 60
        with connect(target, autocommit=True) as watch:
            while time.monotonic() < deadline and not watch.execute(
                    "SELECT count(*) FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                    (table, column)).fetchone()[0]:
                time.sleep(0.01)
            blocker.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", (last_id,))
            waiting = 0
            while time.monotonic() < deadline and not waiting:
                waiting = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                                        "query LIKE %s", (query_like,)).fetchone()[0]
                time.sleep(0.05)
            assert waiting, "the batched UPDATE never reached the locked row"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        child.kill()
        blocker.rollback()
        blocker.close()
