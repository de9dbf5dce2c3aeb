"""A DDL step cut short between the server's commit and ours: kill -9 of the process right after the server
committed the step and before airmigrate recorded it. The next attempt finds the step recorded as under way and
the server saying its change is in place: recorded as done, not run twice, not left half-applied; a change
found in place without such a record (made by hand, say) is still an error. On PostgreSQL and on MariaDB."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest

import mysql_support
from airmigrate import db, state
from airmigrate.spec import load_migration
from airmigrate.stages import preflight, schema_change
from airmigrate.stages.schema_change import IN_FLIGHT

# the DAG's schema_change task, killed (SIGKILL) at the moment it would record its first group done
KILLED_AT_RECORD = textwrap.dedent("""
    import os, signal, sys
    from airmigrate import state
    from airmigrate.db import Target
    from airmigrate.spec import load_migration
    from airmigrate.stages import schema_change
    record = state.mark_stage_done
    def record_or_die(conn, run_id, stage, **facts):
        if stage == "schema_change:0":
            os.kill(os.getpid(), signal.SIGKILL)
        record(conn, run_id, stage, **facts)
    state.mark_stage_done = record_or_die
    schema_change.schema_change(Target.from_url(sys.argv[1]), load_migration(sys.argv[2]), int(sys.argv[3]))
""")


def migration_folder(tmp_path):
    # an id of its own: on MySQL the state database is shared by the server's databases
    folder = tmp_path / f"0001_add_note_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "migration.yaml").write_text("description: add a note column\ntable: items\nkey: id\n")
    (folder / "up.sql").write_text("ALTER TABLE items ADD COLUMN note varchar(20);\n")  # not idempotent on purpose
    (folder / "down.sql").write_text("ALTER TABLE items DROP COLUMN note;\n")
    return folder


@pytest.fixture(params=["postgresql", "mysql"])
def target(request, tmp_path, monkeypatch):
    if request.param == "mysql":
        mysql_support.skip_without_server()
        made = mysql_support.fresh_database("ddlcut")
        monkeypatch.setenv("AIRMIGRATE_TARGET_URL", made.url())
        monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
        yield made
        mysql_support.drop_database(made)
    else:
        yield request.getfixturevalue("fresh_db")


def columns(target) -> list[str]:
    with db.connect(target) as conn:
        return [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = "
                                           "'items' AND table_schema = %s ORDER BY 1",
                                           (target.dbname if target.engine == "mysql" else "public",)).fetchall()]


def prepared_run(target, tmp_path):
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, a int)")
        conn.execute("INSERT INTO items VALUES (1, 1), (2, 2)")
    migration = load_migration(migration_folder(tmp_path))
    return migration, preflight.preflight(target, migration)["run_id"]


def test_a_step_killed_after_the_servers_commit_is_recorded_done_not_run_twice(target, tmp_path, caplog):
    migration, run_id = prepared_run(target, tmp_path)
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": target.url()}
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_RECORD, target.url(), str(migration.folder),
                             str(run_id)], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert columns(target) == ["a", "id", "note"]  # the server committed the step...
    with db.connect(target) as conn:  # ...and airmigrate had recorded it as under way, not done
        assert state.run_facts(conn, run_id)[IN_FLIGHT] == "schema_change:0"
        assert not state.stage_done(conn, run_id, "schema_change:0")

    with caplog.at_level(logging.WARNING):
        schema_change.schema_change(target, migration, run_id)  # the retry
    assert "schema_change group 0 was started by an earlier attempt" in caplog.text
    assert columns(target) == ["a", "id", "note"]
    with db.connect(target) as conn:
        assert state.stage_done(conn, run_id, "schema_change:0") and state.stage_done(conn, run_id, "schema_change")
        assert state.run_facts(conn, run_id)[IN_FLIGHT] is None


def test_the_change_in_place_without_an_interrupted_step_is_still_an_error(target, tmp_path):
    """Someone added the column by hand: nothing says an attempt of ours was cut short, so the server's error
    stands (and the step is not recorded as under way afterwards)."""
    migration, run_id = prepared_run(target, tmp_path)
    with db.connect(target, autocommit=True) as conn:
        conn.execute("ALTER TABLE items ADD COLUMN note varchar(20)")
    with pytest.raises(Exception, match="(?i)duplicate column|already exists"):
        schema_change.schema_change(target, migration, run_id)
    with db.connect(target) as conn:
        assert state.run_facts(conn, run_id)[IN_FLIGHT] is None
        assert not state.stage_done(conn, run_id, "schema_change:0")
