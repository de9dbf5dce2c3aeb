"""Rollbacks on a million rows while an application reads and writes: as safe as the way up.

Each case applies a migration whose rollback must put data back (split_table, change_column_type
after its contract, drop_column, a backfill that overwrote an existing column), then rolls it back
through the stage functions the rollback DAG's tasks call, with two copy-back shards, while an
application thread reads and writes the table. Checks: zero application errors, no application
statement waited longer than lock_timeout plus a second, and the table identical (checksum over the
original columns, and their types) to before the migration.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import psycopg
import pytest
import yaml
from psycopg import sql

from airmigrate import devdb
from airmigrate.db import connect
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, backup, cleanup, preflight, rollback, schema_change
from conftest import seeded_template

ROWS = 1_000_000
LOCK_TIMEOUT_MS = 500
MILLION_DB = "airmigrate_test_million"
MILLION_VERSION = "v1"

pytestmark = pytest.mark.xdist_group("million")  # one template build, and the cases share a worker


@pytest.fixture(scope="module")
def million_template(pg_server):
    """A template database with 1,000,000 users, built once per server."""
    return seeded_template(pg_server, MILLION_DB, ROWS, MILLION_VERSION)


@pytest.fixture
def million_db(pg_server, million_template, monkeypatch):
    name = f"amtest_m_{random.getrandbits(40):010x}"
    target = devdb.recreate_database(pg_server, name, template=million_template)
    monkeypatch.setenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", target.airflow_uri())
    yield target
    devdb.drop_database(pg_server, name)


@dataclass
class Application:
    """Reads a row by key and rewrites it unchanged (row locks, new row versions, triggers fire), as fast as
    it can; records errors and the longest time any one statement took. It reads columns no phase changes:
    a server-side prepared statement whose result columns change (`SELECT *` when a column is added, or a
    column whose type is swapped) fails once with "cached plan must not change result type", which is
    PostgreSQL's rule on the way up as on the way down (README: "Applications and prepared statements")."""

    target: object
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list = field(default_factory=list)
    max_wait: float = 0.0
    statements: int = 0
    slow: list = field(default_factory=list)  # (when, seconds, statement) over half a second, for the message

    def run(self):
        rng = random.Random(11)
        with connect(self.target, autocommit=True) as conn:
            while not self.stop.is_set():
                row_id = rng.randint(1, ROWS)
                for statement in ("SELECT id, email, full_name FROM users WHERE id = %s",
                                  "UPDATE users SET full_name = full_name WHERE id = %s"):
                    started = time.monotonic()
                    try:
                        conn.execute(statement, (row_id,))
                    except psycopg.Error as exc:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                    took = time.monotonic() - started
                    self.max_wait = max(self.max_wait, took)
                    if took > 0.5:
                        self.slow.append((time.strftime("%H:%M:%S"), round(took, 2), statement[:30]))
                    self.statements += 1
                time.sleep(0.001)

    def __enter__(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


def make_migration(tmp_path, name: str, **spec):
    folder = tmp_path / name
    folder.mkdir()
    files = spec.pop("files", {})
    for filename, text in files.items():
        (folder / filename).write_text(text)
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": f"rollback test {name}", "table": "users", "batch_size": 5_000, "shards": 2,
        "lock_timeout_ms": LOCK_TIMEOUT_MS, "approval": False, **spec}))
    return load_migration(folder)


def shape(target) -> dict:
    """Column -> type of users (the order may change: a column re-added by a rollback comes last)."""
    with connect(target) as conn:
        return dict(conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                                 "WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped").fetchall())


def checksum(target, columns) -> str:
    """md5 over every row's listed columns in key order."""
    query = sql.SQL("SELECT md5(string_agg(row({})::text, '|' ORDER BY id)) FROM users").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)))
    with connect(target) as conn:
        return conn.execute(query).fetchone()[0]


def apply_migration(target, migration):
    """The way up, the setup these tests roll back: its backfill at full speed (the run's override
    app_latency_ratio=None, no application to protect yet). Paced, its ~900 lock_hold_s-sized batches were a third
    of each test's time; the rollback under load below keeps the spec's pacing."""
    run_id = preflight.preflight(target, migration)["run_id"]
    backup.backup(target, migration, run_id)
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id)
    backfill.run_shard(target, migration, run_id, app_latency_ratio=None)
    cleanup.cleanup(target, migration, run_id)


def roll_back_under_load(target, migration, interrupt_after: int | None = None) -> Application:
    """The rollback DAG's tasks in order, two copy-back shards, an application running throughout. With
    `interrupt_after`, the first shard stops after that many batches (a killed worker) and a new one resumes."""
    with Application(target) as app:
        time.sleep(0.3)
        run_id = rollback.preflight_rollback(target, migration)["run_id"]
        rollback.down(target, migration, run_id)
        rollback.start_restore(target, migration, run_id)
        if interrupt_after is not None:
            seen = {"n": 0}

            def stop_soon() -> bool:
                seen["n"] += 1
                return seen["n"] > interrupt_after

            rollback.restore_shard(target, migration, run_id, 0, should_stop=stop_soon)
            with connect(target) as conn:
                done = conn.execute("SELECT count(*) FROM airmigrate.batches WHERE run_id = %s AND status = "
                                    "'succeeded'", (run_id,)).fetchone()[0]
            assert 0 < done <= interrupt_after
        shards = [threading.Thread(target=rollback.restore_shard, args=(target, migration, run_id, i))
                  for i in range(2)]
        for shard in shards:
            shard.start()
        for shard in shards:
            shard.join()
        result = rollback.finish(target, migration, run_id)
        time.sleep(0.3)
    assert result["status"] == "rolled_back"
    return app


def assert_safe_and_identical(app, target, before_shape, before_sum):
    assert app.errors == []
    assert app.statements > 100, "the application must have been running during the rollback"
    assert app.max_wait < LOCK_TIMEOUT_MS / 1000 + 1.0, f"application statements waited: {app.slow}"
    assert shape(target) == before_shape
    assert checksum(target, list(before_shape)) == before_sum


def test_split_table_rollback_after_contract_copies_back_in_batches(million_db, tmp_path):
    migration = make_migration(tmp_path, "0060_split", operations=[
        {"op": "split_table", "new_table": "user_logins", "columns": ["last_login_at", "phone"]}])
    before_shape, before_sum = shape(million_db), checksum(million_db, list(shape(million_db)))
    apply_migration(million_db, migration)
    assert "phone" not in shape(million_db)

    app = roll_back_under_load(million_db, migration, interrupt_after=3)
    assert_safe_and_identical(app, million_db, before_shape, before_sum)
    with connect(million_db) as conn:
        assert conn.execute("SELECT to_regclass('user_logins')").fetchone()[0] is None
        batches = conn.execute("SELECT count(*) FROM airmigrate.batches b JOIN airmigrate.runs r USING (run_id) "
                               "WHERE r.direction = 'down' AND b.status = 'succeeded'").fetchone()[0]
    assert batches >= 10, "the copy-back ran in batches"


def test_change_column_type_rollback_after_contract_never_rewrites(million_db, tmp_path):
    migration = make_migration(tmp_path, "0061_retype", operations=[
        {"op": "change_column_type", "column": "country", "type": "varchar(8)", "using": "lower(country)"}])
    before_shape, before_sum = shape(million_db), checksum(million_db, list(shape(million_db)))
    apply_migration(million_db, migration)
    assert shape(million_db)["country"] == "character varying(8)"
    with connect(million_db) as conn:
        filenode = conn.execute("SELECT relfilenode FROM pg_class WHERE relname = 'users'").fetchone()[0]

    app = roll_back_under_load(million_db, migration)
    assert_safe_and_identical(app, million_db, before_shape, before_sum)  # the original upper-case values
    with connect(million_db) as conn:
        assert conn.execute("SELECT relfilenode FROM pg_class WHERE relname = 'users'").fetchone()[0] == filenode


def test_drop_column_rollback_restores_values_in_batches(million_db, tmp_path):
    migration = make_migration(tmp_path, "0062_drop", operations=[{"op": "drop_column", "column": "phone"}])
    before_shape, before_sum = shape(million_db), checksum(million_db, list(shape(million_db)))
    apply_migration(million_db, migration)
    assert "phone" not in shape(million_db)

    app = roll_back_under_load(million_db, migration)
    assert_safe_and_identical(app, million_db, before_shape, before_sum)


def test_overwritten_values_restored_from_snapshot_in_batches(million_db, tmp_path):
    migration = make_migration(tmp_path, "0063_overwrite", backfill={"sql": "backfill.sql", "columns": ["full_name"]},
                               files={"up.sql": "SELECT 1;", "down.sql": "SELECT 1;", "backfill.sql":
                                      "UPDATE users SET full_name = upper(full_name) WHERE id BETWEEN %(lo)s AND "
                                      "%(hi)s AND full_name IS DISTINCT FROM upper(full_name)"})
    before_shape, before_sum = shape(million_db), checksum(million_db, list(shape(million_db)))
    apply_migration(million_db, migration)
    assert checksum(million_db, list(before_shape)) != before_sum

    app = roll_back_under_load(million_db, migration, interrupt_after=2)
    assert_safe_and_identical(app, million_db, before_shape, before_sum)
