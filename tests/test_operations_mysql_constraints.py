"""add_index, add_unique, add_check, add_foreign_key, drop_table, rename_table, rename_index and create_table on a
real MariaDB (issue 22), each through the real DAGs (Airflow's dag.test()) under a concurrent writer: no application
error, no application statement slower than the lock wait limit + 1 s, the result enforced, and the rollback DAG
leaving the table as it was (the md5 of the rows there before, and SHOW CREATE TABLE). rename_constraint is refused
at load. AIRMIGRATE_TEST_MYSQL_ROWS sets the table's size (mysql_support.OPERATION_ROWS: 30,000 by default).

The application writes only rows of its own (ids past the table's end) and reads the others, so the md5 of the
original rows before the migration and after its rollback must be equal."""

from __future__ import annotations

import itertools
import logging
import os
import shutil

import pytest
from dag_support import run_to_success as run
from dag_support import write_migration
from mysql_support import OPERATION_ROWS, Writer, assert_unharmed, fill, rows_md5, scratch_database, skip_without_server
from pydantic import TypeAdapter

from airmigrate import db, state
from airmigrate.airflow.runner import run_dag, task_errors
from airmigrate.engines import sql
from airmigrate.engines.mysql.state_names import state_database
from airmigrate.operations import OpContext, Operation, steps_for

pytestmark = pytest.mark.server
skip_without_server()

ROWS = OPERATION_ROWS  # AIRMIGRATE_TEST_FIGURES: see figures()
LOCK_TIMEOUT_MS = 1000
log = logging.getLogger(__name__)


@pytest.fixture
def target(monkeypatch, tmp_path):
    """A database of its own with items(id, a, s) of ROWS rows and parents(id) 0..999 (every `a` has one); the
    DAGs pointed at it and at tmp_path's migrations folder."""
    with scratch_database("am_opc", monkeypatch, dags_in=tmp_path) as found:  # its state database goes with it
        fill(found, "items", ROWS)
        with db.connect(found, autocommit=True) as conn:
            conn.execute("CREATE TABLE parents (id INT PRIMARY KEY) SELECT DISTINCT a AS id FROM items")
            conn.execute("ANALYZE TABLE items")
        yield found


def figures(line: str) -> None:
    """The run's figures: logged, and appended to the file AIRMIGRATE_TEST_FIGURES names (for the README)."""
    log.warning("%s", line)
    if os.environ.get("AIRMIGRATE_TEST_FIGURES"):
        with open(os.environ["AIRMIGRATE_TEST_FIGURES"], "a") as out:
            out.write(line + "\n")


def migration(tmp_path, target, operations: list[dict], table: str = "items", **extra) -> str:
    """A migration folder with these operations on `table`; its id (it carries the database's name)."""
    spec = {"description": "mysql operation", "table": f"{target.dbname}.{table}", "key": "id",
            "lock_timeout_ms": LOCK_TIMEOUT_MS, "operations": operations, **extra}
    return write_migration(tmp_path, f"0001_{target.dbname}", spec)


def one(target, query: str, params=()):
    with db.connect(target) as conn:
        return conn.execute(query, params).fetchone()


def original_md5(target, table: str = "items") -> str:
    """md5 over the original rows (ids 1..ROWS) in key order: the application never writes them."""
    return rows_md5(target, f"SELECT id, a, s FROM `{table}` WHERE id <= {ROWS}")


def shape(target, table: str = "items") -> str:
    return one(target, sql.SQL("SHOW CREATE TABLE {}").format(sql.Identifier(table)))[1]


def application(table: str = "items", base: int = 0):
    """Inserts rows past the end (ids from ROWS + base; a in parents, s unique), updates its own rows, reads
    original rows by `a`."""
    first = ROWS + 1 + base

    def work(conn, rng, i):
        name = sql.Identifier(table)
        if i % 3 == 0:
            conn.execute(sql.SQL("INSERT INTO {} (id, a, s) VALUES (%s, %s, %s)").format(name),
                         (first + i, rng.randint(0, 999), f"app {first + i}"))
        elif i % 3 == 1 and i > 3:
            conn.execute(sql.SQL("UPDATE {} SET a = %s WHERE id = %s").format(name),
                         (rng.randint(0, 999), first + rng.randrange(0, i - 1, 3)))
        else:
            conn.execute(sql.SQL("SELECT COUNT(*) FROM {} WHERE a = %s AND id <= %s").format(name),
                         (rng.randint(0, 999), 50)).fetchone()
    return work


RUNS = itertools.count(1)  # each application run its own ids


class Measured(Writer):
    """The application meanwhile (mysql_support.Writer: a process of its own), and the report's figures."""

    def __init__(self, target, table: str = "items"):
        super().__init__(target, application(table, next(RUNS) * 10_000_000))

    def check(self, what: str, seconds: float) -> None:
        figures(f"{what} on {ROWS} rows: DAG {seconds:.1f} s, {self.calls} application statements, "
                f"{len(self.errors)} errors, slowest {self.slowest:.3f} s")
        assert_unharmed(self, LOCK_TIMEOUT_MS / 1000)


def uses_index(target, name: str) -> bool:
    plan = one(target, "EXPLAIN SELECT id FROM items WHERE a = 7")
    with db.connect(target) as conn:
        columns = [d[0] for d in conn.execute("EXPLAIN SELECT id FROM items WHERE a = 7").description]
    return plan[columns.index("key")] == name


def index_names(target) -> set[str]:
    with db.connect(target) as conn:
        return {r[0] for r in conn.execute("SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE "
                                           "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'items'").fetchall()}


def refused(target, query: str, params=()) -> str:
    """The server's error for a statement that must fail (a constraint's proof that it is enforced)."""
    with db.connect(target, autocommit=True) as conn:
        with pytest.raises(Exception) as error:
            conn.execute(query, params)
    return str(error.value)


def up_and_back(target, migration_id: str, what: str, enforced=None, **conf) -> None:
    """The DAG (to the expand, or with `conf` the whole way) under the application, `enforced()` checked, then the
    rollback DAG under the application: the original rows' md5 and the table's definition as before."""
    md5, before = original_md5(target), shape(target)
    with Measured(target) as app:
        seconds = run(migration_id, **(conf or {"until": "expand"}))
    app.check(what, seconds)
    if enforced:
        enforced()
    with Measured(target) as app:
        seconds = run(f"{migration_id}__rollback", approve_rollback=True)
    app.check(f"{what} rollback", seconds)
    assert original_md5(target) == md5, "the rollback changed the original rows"
    assert shape(target) == before, "the rollback left the table's definition changed"
    figures(f"{what}: md5 of the original rows after the rollback equal to before ({md5})")


def test_add_index_online_used_then_rolled_back(target, tmp_path):
    migration_id = migration(tmp_path, target, [{"op": "add_index", "name": "items_a", "columns": ["a"]}])
    up_and_back(target, migration_id, "add_index", lambda: uses_index(target, "items_a") or pytest.fail(
        "the new index is not used for WHERE a = 7"))
    assert "items_a" not in index_names(target)


def test_add_unique_online_enforced_then_rolled_back(target, tmp_path):
    migration_id = migration(tmp_path, target, [{"op": "add_unique", "name": "items_s", "columns": ["s"]}])

    def enforced():
        assert "Duplicate entry 'row 5'" in refused(target, "INSERT INTO items (id, a, s) VALUES (-1, 1, 'row 5')")
    up_and_back(target, migration_id, "add_unique", enforced)
    assert "items_s" not in index_names(target)


def test_rename_index_instant_then_rolled_back(target, tmp_path):
    with db.connect(target, autocommit=True) as conn:
        conn.execute("ALTER TABLE items ADD INDEX items_a_old (a)")
    migration_id = migration(tmp_path, target, [{"op": "rename_index", "name": "items_a_old", "to": "items_a_new"}])

    def enforced():
        assert {"items_a_new"} <= index_names(target) and "items_a_old" not in index_names(target)
        assert uses_index(target, "items_a_new")
    up_and_back(target, migration_id, "rename_index", enforced, approve_contract=True)
    assert "items_a_old" in index_names(target)


def test_add_foreign_key_in_place_then_proven_then_rolled_back(target, tmp_path, sql_forms):
    migration_id = migration(tmp_path, target, [{"op": "add_foreign_key", "name": "items_parent", "columns": ["a"],
                                                 "references_table": "parents", "references_columns": ["id"]}])

    def enforced():
        assert "foreign key constraint fails" in refused(
            target, "INSERT INTO items (id, a, s) VALUES (-1, 4242, 'orphan')")
    up_and_back(target, migration_id, "add_foreign_key", enforced)
    assert one(target, "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE "
                       "CONSTRAINT_SCHEMA = DATABASE() AND CONSTRAINT_NAME = 'items_parent'")[0] == 0


def test_add_foreign_key_with_an_orphan_fails_naming_it_and_rolls_back(target, tmp_path, sql_forms):
    with db.connect(target, autocommit=True) as conn:
        conn.execute("DELETE FROM parents WHERE id = 777")  # rows with a = 777 are orphans now
    migration_id = migration(tmp_path, target, [{"op": "add_foreign_key", "name": "items_parent", "columns": ["a"],
                                                 "references_table": "parents", "references_columns": ["id"]}])
    md5, before = original_md5(target), shape(target)
    dagrun = run_dag(migration_id, {"until": "expand"})
    assert str(dagrun.state) == "failed"
    errors = " ".join(task_errors(dagrun).values())
    assert "items_parent: no match for (id: a) 777: 777; 1777: 777" in errors, errors
    run(f"{migration_id}__rollback", approve_rollback=True)
    assert (original_md5(target), shape(target)) == (md5, before)


def test_add_check_refused_without_pt_osc_quoting_the_server(target, tmp_path):
    migration_id = migration(tmp_path, target, [{"op": "add_check", "name": "items_a_positive",
                                                 "expression": "a >= 0"}])
    before = shape(target)
    dagrun = run_dag(migration_id, {"until": "expand"})
    assert str(dagrun.state) == "failed"
    errors = " ".join(task_errors(dagrun).values())
    assert "ALGORITHM=COPY" in errors and "executor: pt-osc" in errors, errors
    assert shape(target) == before


@pytest.mark.skipif(shutil.which("pt-online-schema-change") is None, reason="pt-online-schema-change not installed")
def test_add_check_with_pt_osc_online_enforced_then_rolled_back(target, tmp_path):
    migration_id = migration(tmp_path, target, [{"op": "add_check", "name": "items_a_positive",
                                                 "expression": "a >= 0"}], executor="pt-osc")

    def enforced():
        assert "items_a_positive" in refused(target, "INSERT INTO items (id, a, s) VALUES (-1, -5, 'negative')")
    up_and_back(target, migration_id, "add_check (pt-osc)", enforced)


def test_drop_table_retired_then_brought_back(target, tmp_path):
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE old_items AS SELECT * FROM items WHERE id <= 1000")
    old = original_md5(target, "old_items")
    migration_id = migration(tmp_path, target, [{"op": "drop_table", "table": "old_items"}])

    def enforced():
        assert one(target, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
                           "TABLE_NAME = 'old_items'")[0] == 0
        assert one(target, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND "
                           "TABLE_NAME = %s", (state_database(target.dbname), f"dropped_{migration_id}_old_items"[:63]))[0] == 1
    up_and_back(target, migration_id, "drop_table", enforced, approve_contract=True)
    assert original_md5(target, "old_items") == old


def kinds(target) -> dict[str, str]:
    with db.connect(target) as conn:
        return dict(conn.execute("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                                 "DATABASE() AND TABLE_NAME IN ('items', 'goods')").fetchall())


def test_rename_table_both_names_work_then_swapped_then_rolled_back(target, tmp_path, sql_forms):
    """The old release (items) under the expand and its rollback; then the new release (goods) under the contract's
    atomic swap; then the rollback after the contract (no application: its last step takes the new name away)."""
    migration_id = migration(tmp_path, target, [{"op": "rename_table", "to": "goods"}])
    md5, before = original_md5(target), shape(target)

    def both_names():
        assert kinds(target) == {"items": "BASE TABLE", "goods": "VIEW"}
        with db.connect(target, autocommit=True) as conn:  # the new release writes through the view
            conn.execute("INSERT INTO goods (id, a, s) VALUES (-7, 3, 'through the view')")
            assert conn.execute("SELECT s FROM items WHERE id = -7").fetchone()[0] == "through the view"
            conn.execute("DELETE FROM goods WHERE id = -7")
    up_and_back(target, migration_id, "rename_table", both_names)
    assert kinds(target) == {"items": "BASE TABLE"}

    run(migration_id, until="expand")
    with Measured(target, "goods") as app:
        seconds = run(migration_id, approve_contract=True)
    app.check("rename_table contract", seconds)
    assert kinds(target) == {"goods": "BASE TABLE"}
    assert original_md5(target, "goods") == md5
    run(f"{migration_id}__rollback", approve_rollback=True)
    assert kinds(target) == {"items": "BASE TABLE"}
    assert (original_md5(target), shape(target)) == (md5, before)


def test_create_table_then_dropped_when_empty_kept_when_not(target, tmp_path, sql_forms):
    migration_id = migration(tmp_path, target, [{"op": "create_table", "columns": {"id": "bigint", "n": "varchar(20)"},
                                                 "checks": {"fresh_n": "n <> ''"}}], table="fresh")
    with Measured(target) as app:
        seconds = run(migration_id, approve_contract=True)
    app.check("create_table", seconds)
    assert "fresh_n" in refused(target, "INSERT INTO fresh (id, n) VALUES (1, '')")
    run(f"{migration_id}__rollback", approve_rollback=True)
    assert one(target, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
                       "TABLE_NAME = 'fresh'")[0] == 0
    # again, and the new release writes a row: the rollback keeps the table (and the row) in airmigrate
    run(migration_id, approve_contract=True)
    with db.connect(target, autocommit=True) as conn:
        conn.execute("INSERT INTO fresh (id, n) VALUES (1, 'kept')")
    run(f"{migration_id}__rollback", approve_rollback=True)
    assert one(target, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
                       "TABLE_NAME = 'fresh'")[0] == 0
    assert one(target, sql.SQL("SELECT n FROM {}").format(
        sql.Identifier("airmigrate", f"created_{migration_id}_fresh"[:63])))[0] == "kept"


def test_every_step_done_twice_does_nothing_the_second_time(target, sql_forms):
    """A retried or resumed step (the state lost between the statement and its record): each operation's expand,
    contract, down and down_contract run twice through the DDL executor, in order, end where one run ends."""
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE old_items (id INT PRIMARY KEY)")
        conn.execute("ALTER TABLE items ADD INDEX i0 (a)")
    ops = [{"op": "add_index", "name": "i", "columns": ["a"]}, {"op": "add_unique", "name": "u", "columns": ["s"]},
           {"op": "add_foreign_key", "name": "f", "columns": ["a"], "references_table": "parents",
            "references_columns": ["id"]}, {"op": "rename_index", "name": "i0", "to": "j"},
           {"op": "drop_table", "table": "old_items"}, {"op": "rename_table", "to": "goods"}]
    with db.connect(target, autocommit=True) as conn:  # the state database a run has: drop_table retires into it
        state.ensure_schema(conn)
    before = shape(target)
    types = {"id": "int(11)"}
    for op in ops:
        generated = steps_for(TypeAdapter(Operation).validate_python(op),
                              OpContext(f"0001_{target.dbname}", 0, target.dbname, "items", "id", types))
        for phase in ("expand", "contract", "down", "down_contract"):
            for statement in getattr(generated, phase):
                for _ in range(2):
                    db.run_ddl(target, statement, lock_timeout_ms=LOCK_TIMEOUT_MS)
    assert shape(target) == before
    assert one(target, "SELECT COUNT(*) FROM old_items")[0] == 0
    assert kinds(target) == {"items": "BASE TABLE"}
