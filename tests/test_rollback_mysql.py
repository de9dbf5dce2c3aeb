"""Rollback on MariaDB as on PostgreSQL (issue 22): the backup stage keeps the values a backfill overwrites (a
snapshot table in the target's state database, beside its mysqldump backup), and the rollback puts them back in
key-range batches, then drops the snapshot. Under an application writing meanwhile: zero application errors, no
statement slower than the lock wait limit + 1 s, and the table's md5 identical to before (the application's
own changes, counted, accounted for: it adds 1 to `a`, and rewrites `s` unchanged, as tests/test_rollback.py's
application does). Against the real server (AIRMIGRATE_TEST_MYSQL_URL, else 127.0.0.1:3306 as root)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from mysql_support import Writer, drop_database, fill, fresh_database, rows_md5, skip_without_server

from airmigrate import db, state
from airmigrate.engines.mysql import dialect, online, parsing, state_names
from airmigrate.engines.target import Target
from airmigrate.spec import load_migration
from airmigrate.stages.backfill import sync_trigger_sql

pytestmark = pytest.mark.server
skip_without_server()

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "airmigrate.cli"]
ROWS = 20_000
LOCK_TIMEOUT_MS = 1000
PASSWORD = 'rb "p@ss\\ ;w#rd'
MIGRATION = "0001_upper_s"


@pytest.fixture
def target():
    """A fresh database with t(id, a, s) of ROWS rows, reached as a user with a password (so the test can look
    for it in every file the run leaves); dropped afterwards with its state database and the user."""
    made = fresh_database("am_rollback")
    fill(made, "t", ROWS)
    user = f"am_rb_{uuid.uuid4().hex[:8]}"
    with db.connect(made, autocommit=True) as conn:
        conn.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (PASSWORD,))
        conn.execute(f"GRANT ALL ON `{made.dbname}`.* TO '{user}'@'%'")
        conn.execute(f"GRANT ALL ON `{state_names.state_database(made.dbname)}`.* TO '{user}'@'%'")
        conn.execute(f"GRANT PROCESS ON *.* TO '{user}'@'%'")
    yield Target(host=made.host, port=made.port, user=user, password=PASSWORD, dbname=made.dbname, engine="mysql")
    with db.connect(made, autocommit=True) as conn:
        conn.execute(f"DROP USER IF EXISTS '{user}'@'%'")
    drop_database(made)   # and its state database


def write_project(home: Path, target: Target) -> Path:
    """A project with one migration: the backfill upper-cases `s`, an existing column (so the backup stage
    snapshots it and takes a mysqldump of the table)."""
    folder = home / "migrations" / MIGRATION
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text("SELECT 1;\n")
    (folder / "down.sql").write_text("SELECT 1;\n")
    (folder / "backfill.sql").write_text(
        "UPDATE t SET s = UPPER(s) WHERE id BETWEEN %(lo)s AND %(hi)s AND BINARY s <> BINARY UPPER(s)")
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": "upper-case s", "table": f"{target.dbname}.t", "key": "id", "batch_size": 1000,
        "lock_timeout_ms": LOCK_TIMEOUT_MS, "approval": False, "backup": "table",
        "backfill": {"sql": "backfill.sql", "columns": ["s"]}}))
    return home


def airmigrate(target: Target, home: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": target.url(), "AIRMIGRATE_HOME": str(home),
           "AIRMIGRATE_MIGRATIONS_DIR": str(home / "migrations"), "AIRMIGRATE_VAR_DIR": str(home / "var"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags")}
    env.pop("AIRFLOW_CONN_AIRMIGRATE_TARGET", None)
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def table_md5(target: Target) -> tuple[str, int]:
    """md5 over every row's (id, s) in key order, and the sum of `a` (what the application changes)."""
    with db.connect(target) as conn:
        total = conn.execute("SELECT CAST(SUM(a) AS SIGNED) FROM t").fetchone()[0]
    return rows_md5(target, "SELECT id, s FROM t"), total


def application(conn, rng, i) -> None:
    """Adds 1 to `a` of a random row, and rewrites a row's `s` unchanged (row locks, new row versions)."""
    row = rng.randint(1, ROWS)
    conn.execute("UPDATE t SET a = a + 1 WHERE id = %s", (row,))
    conn.execute("UPDATE t SET s = s WHERE id = %s", (row,))


def test_a_backfill_and_its_rollback_dag_under_a_writer_put_the_table_back(target, tmp_path):
    """In MariaDB's forms only: MySQL 8's would send the same statements (the test below says why)."""
    home = write_project(tmp_path / "project", target)
    before, before_a = table_md5(target)
    writer = Writer(target, application)
    writer.start()
    try:
        up = airmigrate(target, home, "run", MIGRATION)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        assert table_md5(target)[0] != before, "the backfill changed nothing: there is nothing to roll back"
        with db.connect(target) as conn:
            history = state.history(conn, MIGRATION)
            snapshot, backup_path = history["snapshot_table"], Path(history["backup_path"])
            assert snapshot and conn.execute(f"SELECT COUNT(*) FROM airmigrate.`{snapshot}`").fetchone()[0] == ROWS
        back = airmigrate(target, home, "run", MIGRATION, "--rollback")
        assert back.returncode == 0, back.stdout[-4000:] + back.stderr[-4000:]
    finally:
        writer.finish()
    assert writer.errors == [] and writer.calls > 100, (writer.errors[:3], writer.calls)
    assert writer.slowest < LOCK_TIMEOUT_MS / 1000 + 1.0, f"an application statement took {writer.slowest:.2f}s"
    after, after_a = table_md5(target)
    assert after == before
    assert after_a == before_a + writer.calls   # the application's own changes, kept
    with db.connect(target) as conn:
        assert state.history(conn, MIGRATION)["status"] == "rolled_back"
        assert conn.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND "
                            "TABLE_NAME = %s", (conn.state_database, snapshot)).fetchone()[0] == 0
        restored = conn.execute("SELECT CAST(SUM(b.`rows`) AS SIGNED) FROM airmigrate.batches b JOIN airmigrate.runs r "
                                "ON r.run_id = b.run_id WHERE r.migration_id = %s AND r.direction = 'down' AND "
                                "b.status = 'succeeded'", (MIGRATION,)).fetchone()[0]
    assert restored == ROWS   # every row's s put back, in batches
    assert backup_path.is_file() and stat.S_IMODE(backup_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup_path.parent.stat().st_mode) == 0o700
    leaked = [str(p) for p in home.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert leaked == [] and PASSWORD not in up.stdout + up.stderr + back.stdout + back.stderr


def test_its_statements_are_the_same_in_mysql8s_forms(tmp_path, monkeypatch):
    """Why the test above needs no second run with AIRMIGRATE_MYSQL_DIALECT=mysql8 (conftest's sql_forms, a whole
    run and rollback under a writer): of what its migration sends, only the DDL executor's statements (up.sql,
    down.sql; no operations, no sync trigger) have MySQL 8 forms, and there each is sent as written, none an ALTER
    whose online algorithm MySQL 8 picks differently. Its backfill and restore batches never ask which forms to send
    (tests/test_backfill_mysql.py's failed-batch test sees that); the session limits its report shows differ, and are
    tests/test_mysql8_forms.py's."""
    shop = Target(host="127.0.0.1", port=3306, user="u", password="p", dbname="shop", engine="mysql")
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", shop.url())  # MySQL's parser reads the files
    monkeypatch.setenv(dialect.SWITCH, dialect.MYSQL8)
    migration = load_migration(write_project(tmp_path, shop) / "migrations" / MIGRATION)
    assert migration.spec.operations == [] and sync_trigger_sql(migration) == ([], [])
    statements = [s for text in (migration.up_sql, migration.down_sql) for s in parsing.split_statements(text)]
    assert statements
    for statement in statements:
        assert dialect.flavor() == dialect.MYSQL8
        assert dialect.to_run(None, statement) == [(statement, False)] and dialect.shown(statement) == [statement]
        assert online.table_span(statement) is None, f"{statement}: MySQL 8 may get another ALGORITHM"
