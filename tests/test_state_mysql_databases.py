"""Two target databases on one MySQL / MariaDB server keep separate state (issue 22): each target database has its
own state database ``airmigrate__<name>`` (engines/mysql/state_names.py), so ``shop`` and ``shop_staging`` running
the same migration id, one after the other or at once, have independent histories, runs, batches and leases; the
server-wide state of earlier versions moves into the first target database that creates its own, and any later
one says where it went. Against the real server (AIRMIGRATE_TEST_MYSQL_URL, else 127.0.0.1:3306 as root)."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import pytest
import yaml
from mysql_support import URL, begin_backfill, drop_database, fresh_database, skip_without_server

from airmigrate import db, lease, state
from airmigrate.engines import sql
from airmigrate.engines.mysql import connection, leases as mysql_leases, state_names, state_sql
from airmigrate.engines.target import Target
from airmigrate.spec import load_migration
from airmigrate.stages import backfill

pytestmark = pytest.mark.server

skip_without_server()  # one line in the summary when no server answers (a user's machine)

MIGRATION = "0001_touch_items"  # the same id in both databases: what used to collide


@pytest.fixture
def two(monkeypatch):
    """Two fresh target databases on the same server (think shop and shop_staging), dropped afterwards with their
    state databases. The server's old shared state database is left alone unless a test names one of its own."""
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", URL)
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
    monkeypatch.setenv("AIRMIGRATE_MYSQL_LEGACY_STATE", "")
    made = [fresh_database("am_shop"), fresh_database("am_shop_staging")]
    yield made
    for target in made:
        drop_database(target)   # and its state database


def make_items(target: Target, rows: int) -> None:
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id INT PRIMARY KEY, touched INT NOT NULL DEFAULT 0) ENGINE = InnoDB")
        conn.execute("INSERT INTO items (id) VALUES " + ", ".join(f"({i})" for i in range(1, rows + 1)))


def write_migration(folder: Path, target: Target):
    folder = folder / MIGRATION
    folder.mkdir(parents=True)
    (folder / "backfill.sql").write_text("UPDATE items SET touched = touched + 1 WHERE id BETWEEN %(lo)s AND %(hi)s")
    (folder / "up.sql").write_text("SELECT 1;\n")
    (folder / "down.sql").write_text("SELECT 1;\n")
    spec = {"description": "touch every item once", "table": f"{target.dbname}.items", "key": "id",
            "batch_size": 500, "backfill": {"sql": "backfill.sql", "columns": ["touched"], "min_batch_size": 100,
                                            "max_batch_size": 1000}}
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    return load_migration(folder)


def batches(target: Target, run_id: int) -> tuple[dict, int]:
    with db.connect(target) as conn:
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM airmigrate.batches WHERE run_id = %s "
                                     "GROUP BY status", (run_id,)).fetchall())
        done = conn.execute("SELECT CAST(SUM(`rows`) AS SIGNED) FROM airmigrate.batches WHERE run_id = %s",
                            (run_id,)).fetchone()[0]
    return statuses, int(done or 0)


def test_the_same_migration_id_backfills_in_two_databases_at_once_with_separate_runs_and_batches(two, tmp_path):
    """Both databases run 0001_touch_items at the same time, each with its own row count: each run sees only its
    own batches, every row of each database is touched exactly once, and each database's state has one run."""
    rows = {two[0].dbname: 3000, two[1].dbname: 5000}
    migrations, run_ids = {}, {}
    for i, target in enumerate(two):
        make_items(target, rows[target.dbname])
        migrations[target.dbname] = write_migration(tmp_path / str(i), target)
        run_ids[target.dbname] = begin_backfill(target, migrations[target.dbname])
    assert migrations[two[0].dbname].id == migrations[two[1].dbname].id == MIGRATION
    errors, results = [], {}

    def work(target: Target) -> None:
        try:
            results[target.dbname] = backfill.run_shard(target, migrations[target.dbname], run_ids[target.dbname],
                                                        shard=0, shards=1)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in two]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == [] and len(results) == 2, errors
    for target in two:
        statuses, done = batches(target, run_ids[target.dbname])
        assert set(statuses) == {"succeeded"}, (target.dbname, statuses)
        assert done == rows[target.dbname], (target.dbname, done)
        with db.connect(target) as conn:
            assert dict(conn.execute("SELECT touched, COUNT(*) FROM items GROUP BY touched").fetchall()) == \
                {1: rows[target.dbname]}
            assert conn.execute("SELECT COUNT(*) FROM airmigrate.runs WHERE migration_id = %s",
                                (MIGRATION,)).fetchone()[0] == 1


def test_histories_are_independent_one_after_the_other(two):
    """Applied in shop first: shop_staging still has no record of it, then records its own failure; neither
    status leaks into the other database's history."""
    shop, staging = two
    with db.connect(shop) as conn:
        state.ensure_schema(conn)
        state.start_history(conn, MIGRATION, "sum-shop")
        state.mark_applied(conn, MIGRATION)
    with db.connect(staging) as conn:
        state.ensure_schema(conn)
        assert state.history(conn, MIGRATION) is None
        state.start_history(conn, MIGRATION, "sum-staging")
        state.mark_history_failed(conn, MIGRATION, "boom")
    with db.connect(shop) as conn:
        mine = state.history(conn, MIGRATION)
        assert (mine["status"], mine["checksum"]) == ("applied", "sum-shop")
        assert [h["migration_id"] for h in state.all_history(conn)] == [MIGRATION]
    with db.connect(staging) as conn:
        theirs = state.history(conn, MIGRATION)
        assert (theirs["status"], theirs["checksum"]) == ("failed", "sum-staging")


def test_the_lease_of_a_migration_in_one_database_does_not_hold_back_the_other(two):
    """The same migration id: shop's exclusive lease refuses a second runner on shop and lets one on
    shop_staging take its own (named locks are server-wide: the name carries the state database)."""
    shop, staging = two
    key = lease.lock_key(MIGRATION)
    with db.connect(shop, autocommit=True) as first, db.connect(shop, autocommit=True) as second, \
            db.connect(staging, autocommit=True) as other:
        assert mysql_leases.lock_name(first, key) != mysql_leases.lock_name(other, key)
        assert mysql_leases.lease_try(first, key, exclusive=True, label="shop runner")
        assert not mysql_leases.lease_try(second, key, exclusive=True, label="second shop runner")
        assert mysql_leases.lease_try(other, key, exclusive=True, label="staging runner")
        assert [s[0] for s in mysql_leases.lease_sessions(other, key, exclude=set())] == ["staging runner"]
        assert [s[0] for s in mysql_leases.lease_sessions(second, key, exclude=set())] == ["shop runner"]
        mysql_leases.lease_release(first, key)
        assert mysql_leases.lease_try(second, key, exclusive=True, label="second shop runner")
        mysql_leases.lease_release(second, key)
        mysql_leases.lease_release(other, key)


def test_a_servers_old_shared_state_moves_to_the_first_database_and_the_next_is_told_where(two, monkeypatch, caplog):
    """An old server-wide state database with a history row and a run: the first target database creating its
    state takes both (moved, same run ids, nothing left behind but the note); the second target database starts
    empty and logs where the old history went."""
    legacy = f"am_legacy_{uuid.uuid4().hex[:8]}"
    shop, staging = two
    with db.connect(shop, autocommit=True) as conn:  # the old layout: the same tables in one shared database
        conn.state_database = legacy
        state.ensure_schema(conn)
        state.start_history(conn, MIGRATION, "old-sum")
        state.mark_applied(conn, MIGRATION)
        old_run, _ = state.begin_run(conn, MIGRATION, "up", None)
        conn.execute(sql.SQL("CREATE TABLE {} (id INT PRIMARY KEY)").format(sql.Identifier(legacy, "snap_0001")))
    try:
        monkeypatch.setenv("AIRMIGRATE_MYSQL_LEGACY_STATE", legacy)
        caplog.set_level(logging.WARNING, logger="airmigrate.engines.mysql.legacy_state")
        with db.connect(shop) as conn:
            state.ensure_schema(conn)
            assert state.history(conn, MIGRATION)["status"] == "applied"
            assert state.latest_run(conn, MIGRATION)["run_id"] == old_run
            assert state_sql.relation_exists(conn, "airmigrate", "snap_0001")
        with db.connect(shop.with_dbname("mysql")) as conn:
            left = {r[0] for r in conn.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE "
                                               "TABLE_SCHEMA = %s", (legacy,)).fetchall()}
            assert left == {"moved_to"}
            assert conn.execute(f"SELECT target_db, state_db FROM `{legacy}`.moved_to").fetchall() == \
                ((shop.dbname, state_names.state_database(shop.dbname)),)
        assert any("moved to" in r.getMessage() for r in caplog.records)
        caplog.clear()
        with db.connect(staging) as conn:
            state.ensure_schema(conn)
            assert state.all_history(conn) == []
        told = [r.getMessage() for r in caplog.records]
        assert any(state_names.state_database(shop.dbname) in m and staging.dbname in m for m in told), told
    finally:
        drop_database(shop.with_dbname(legacy))


def test_state_database_names_fit_and_never_collide():
    """64 characters at most; a name that is not plain letters, digits and underscores gets a hash, so two
    target names that read alike after the cleaning stay apart."""
    assert state_names.state_database("shop") == "airmigrate__shop"
    names = {state_names.state_database(n) for n in ("shop-1", "shop_1", "shop.1", "x" * 64, "x" * 63 + "y")}
    assert len(names) == 5
    assert all(len(n) <= 64 and n.replace("_", "").isalnum() for n in names)


def test_a_value_that_mentions_airmigrate_dot_is_stored_as_written(two):
    """Only the SQL's qualifier names the state database: a string literal, a parameter and a comment that say
    ``airmigrate.runs`` reach the server unchanged."""
    shop = two[0]
    text = "see airmigrate.runs and `airmigrate`.history"
    with db.connect(shop, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes VALUES (1, 'see airmigrate.runs and `airmigrate`.history') "
                     "-- airmigrate.history")
        conn.execute("INSERT INTO notes VALUES (2, %s)", (text,))
        conn.execute(sql.SQL("INSERT INTO notes VALUES (3, {})").format(sql.Literal(text)))
        assert [r[0] for r in conn.execute("SELECT body FROM notes ORDER BY id").fetchall()] == [text] * 3
    assert connection.render(sql.Identifier("airmigrate", "runs")) == "`airmigrate`.`runs`"
