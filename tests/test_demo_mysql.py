"""`make demo` on MySQL / MariaDB (issue 22): what the demo's run needs beyond the state tables and the backfill,
each against the real server (AIRMIGRATE_TEST_MYSQL_URL, else MariaDB at 127.0.0.1:3306 as root); without one
this module skips with one line. The demo itself, run as a user runs it, is in the notes (mydemo.md)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from mysql_support import URL, drop_database, fresh_database, skip_without_server

from airmigrate import db, devdb, engines, state, structure
from airmigrate.engines.target import Target, configured_default_schema
from airmigrate.report.collect import run_row
from airmigrate.spec import load_migration

pytestmark = pytest.mark.server
skip_without_server()

ROWS = 120_000


@pytest.fixture(scope="module")
def seeded():
    """A database seeded by devdb.seed_users, as the demo seeds it (fewer rows)."""
    target = devdb.recreate_database(Target.from_url(URL), f"h22d_seed_{uuid.uuid4().hex[:8]}")
    devdb.seed_users(target, ROWS, forget=())  # a demo may be running on this server: its state stays
    yield target
    drop_database(target)


def test_seed_users_is_realistic_and_server_side(seeded):
    """Every row there once, ids 1..n, the demo's mix: 1/6 phones NULL, 1/6 junk, 60% confirmed emails, unique
    emails; the table analyzed (an estimate the preflight reads) and its key a usable batching key."""
    with db.connect(seeded) as conn:
        count, low, high, no_phone, junk, confirmed, emails = conn.execute(
            "SELECT count(*), min(id), max(id), sum(phone IS NULL), sum(phone = 'n/a'), "
            "sum(email_confirmed_at IS NOT NULL), count(DISTINCT email) FROM users").fetchone()
        assert (count, low, high, emails) == (ROWS, 1, ROWS, ROWS)
        assert no_phone == ROWS // 6 and junk == ROWS // 6
        assert confirmed == ROWS * 3 // 5
        formats = {row[0] for row in conn.execute(
            "SELECT phone FROM users WHERE id BETWEEN 1 AND 5 ORDER BY id").fetchall()}
        assert formats == {"(201) 555-0001", "+44 20 7946 0002", "1-203-555-0003", "0049 30 00000004", "n/a"}
        found = engines.of(conn).key_check(conn, seeded.dbname, "users", ("id",))
        assert found["unique"] and found["estimate"] > 0 and found["columns"][0] == "id"
        assert engines.of(conn).key_check(conn, seeded.dbname, "users", ("country",))["candidates"] == [
            ["id"], ["email"]]
        assert engines.of(conn).key_check(conn, seeded.dbname, "nothing", ("id",)) is None


def test_reseeding_forgets_only_the_demo_migrations_state(seeded):
    """A target database's state may hold other migrations too: a fresh demo forgets its own migrations' runs
    and history, never another migration's."""
    mine, other = f"am_demo_mine_{uuid.uuid4().hex[:6]}", f"am_demo_other_{uuid.uuid4().hex[:6]}"
    with db.connect(seeded, autocommit=True) as conn:
        state.ensure_schema(conn)
        for migration_id in (mine, other):
            conn.execute("INSERT INTO airmigrate.history (migration_id, checksum, status) VALUES (%s, 'x', 'applied')",
                         (migration_id,))
        engines.of(conn).forget_state(conn, (mine,))
        assert state.history(conn, other) is not None and state.history(conn, mine) is None
        conn.execute("DELETE FROM airmigrate.history WHERE migration_id = %s", (other,))


def test_facts_the_stages_and_the_report_write_and_read(seeded):
    """add_fact_once keeps the first value, set_stage_time keeps the other stages', recorded_fact and
    live_columns decode JSON, APPLIED_RECORDED / SWEEPS_DONE answer, run rows come back decoded."""
    migration_id = f"am_demo_facts_{uuid.uuid4().hex[:6]}"
    with db.connect(seeded, autocommit=True) as conn:
        statements = engines.of(conn).state_sql()
        state.ensure_schema(conn)
        run_id, _ = state.begin_run(conn, migration_id, "up", "dag-run-1")
        try:
            statements.add_fact_once(conn, run_id, "schema_before", {"tables": {"a.b": [1, None]}})
            statements.add_fact_once(conn, run_id, "schema_before", {"tables": {}})
            statements.set_stage_time(conn, run_id, "preflight", {"start": "s1", "end": None, "state": "success"})
            statements.set_stage_time(conn, run_id, "backup", {"start": "s2", "end": "e2", "state": "success"})
            state.add_facts(conn, run_id, live_columns=["id", "x"], sweeps=2)
            assert conn.execute(statements.APPLIED_RECORDED, (run_id,)).fetchone()[0] in (0, False)
            state.add_facts(conn, run_id, applied_recorded=True)
            assert conn.execute(statements.APPLIED_RECORDED, (run_id,)).fetchone()[0] in (1, True)
            assert conn.execute(statements.SWEEPS_DONE, (run_id,)).fetchone()[0] == 2
            assert statements.live_columns(conn, run_id) == ["id", "x"]
            before = statements.recorded_fact(conn, migration_id, "schema_before", False)
            assert before == {"tables": {"a.b": [1, None]}}
            assert statements.recorded_fact(conn, migration_id, "missing", False) is None
            run = run_row(conn, run_id)
            assert run["facts"]["stage_times"] == {"preflight": {"start": "s1", "end": None, "state": "success"},
                                                   "backup": {"start": "s2", "end": "e2", "state": "success"}}
            assert statements.state_table_exists(conn, "runs") and not statements.state_table_exists(conn, "nope")
        finally:
            conn.execute("DELETE FROM airmigrate.runs WHERE migration_id = %s", (migration_id,))
            conn.execute("DELETE FROM airmigrate.history WHERE migration_id = %s", (migration_id,))


def test_batch_write_changes_only_differing_rows_in_the_batch_range():
    """The pandas path's write-back (Engine.batch_write): NULLs written, unchanged rows not counted, nothing
    outside [lo, hi] touched, all inside the caller's transaction (a rollback undoes it); a column may come as a
    numpy array or a list."""
    target = fresh_database("h22d_write")
    try:
        with db.connect(target, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20), b INT)")
            conn.execute("INSERT INTO t VALUES (1, 'x', 1), (2, NULL, 2), (3, 'z', NULL), (4, 'w', 4)")
        write = engines.named("mysql").batch_write((target.dbname, "t"), ["id", "a", "b"])
        rows = [(1, "x", 1), (2, "y", None), (3, None, 30), (4, "OUT", 0)] + [(i, "n", i) for i in range(5, 2500)]
        ids, a, b = (list(c) for c in zip(*rows))
        columns = [np.array(ids), a, b]
        with db.connect(target) as conn:
            assert write.run(conn, columns, {"lo": 1, "hi": 3}) == 2
            conn.rollback()
            assert conn.execute("SELECT a, b FROM t WHERE id = 2").fetchone() == (None, 2)
            assert write.run(conn, columns, {"lo": 1, "hi": 3}) == 2
            conn.commit()
            assert conn.execute("SELECT id, a, b FROM t ORDER BY id").fetchall() == (
                (1, "x", 1), (2, "y", None), (3, None, 30), (4, "w", 4))
    finally:
        drop_database(target)


def test_structure_comments_and_bare_table_names(seeded, monkeypatch):
    """The report's and the cleanup's view of the table: structure with its keys, a column comment set by the
    engine's statement (kept on a second one, quotes escaped), and a bare `table: users` resolving to the
    target's database."""
    with db.connect(seeded, autocommit=True) as conn:
        info = structure.read_table(conn, seeded.dbname, "users")
        assert info["constraints"]["PRIMARY"]["columns"] == ["id"] and info["columns"]["email"]["not_null"]
        engine = engines.of(conn)
        conn.execute(engine.comment_column_sql(conn, seeded.dbname, "users", "phone", "free-form, it's messy"))
        assert engine.column_comments(conn, seeded.dbname, "users")["phone"] == "free-form, it's messy"
        assert structure.read_table(conn, seeded.dbname, "users")["columns"]["phone"]["type"] == "varchar(64)"
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", seeded.url())
    assert configured_default_schema() == seeded.dbname
    assert load_migration("migrations/0001_add_user_email_verified").spec.schema_name == seeded.dbname
