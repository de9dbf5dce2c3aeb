"""rename_table, rename_index, rename_constraint on a real PostgreSQL: an application on the old name and one on the
new name both keep working through expand, contract and rollback."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from airmigrate.db import connect
from airmigrate.errors import PreflightError
from airmigrate.stages import cleanup, preflight, rollback
from test_operations import apply_all, make_migration, q


class NamedApp(threading.Thread):
    """Inserts (RETURNING the id), updates and deletes through one table name; counts its statements and errors."""

    def __init__(self, target, table: str):
        super().__init__(daemon=True)
        self.target, self.table, self.stop = target, table, threading.Event()
        self.ok, self.errors = 0, []

    def run(self):
        with connect(self.target, autocommit=True) as conn:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    new_id = conn.execute(
                        f"INSERT INTO {self.table} (email, full_name, country) VALUES (%s, 'App', 'US') RETURNING id",
                        (f"{self.table}{n}.{id(self)}@example.com",)).fetchone()[0]
                    conn.execute(f"UPDATE {self.table} SET full_name = 'App 2' WHERE id = %s", (new_id,))
                    conn.execute(f"UPDATE {self.table} SET phone = '1' WHERE id = %s", (n % 30000 + 1,))
                    if n % 3 == 0:
                        conn.execute(f"DELETE FROM {self.table} WHERE id = %s", (new_id,))
                    self.ok += 1
                except psycopg.Error as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.003)

    def until(self, statements: int) -> None:
        goal = self.ok + statements
        deadline = time.monotonic() + 30
        while self.ok < goal and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.ok >= goal, f"{self.table}: the application stopped working ({self.errors[:3]})"

    def finish(self) -> None:
        self.stop.set()
        self.join(10)


def test_rename_table_keeps_old_and_new_name_working_through_expand_contract_and_rollback(fresh_db, tmp_path):
    migration = make_migration(tmp_path, {"op": "rename_table", "to": "accounts"}, approval=False)
    old_app = NamedApp(fresh_db, "users")
    old_app.start()
    old_app.until(20)
    run_id = apply_all(fresh_db, migration)
    new_app = NamedApp(fresh_db, "accounts")
    new_app.start()
    old_app.until(20)
    new_app.until(20)
    assert q(fresh_db, "SELECT relkind FROM pg_class WHERE relname IN ('users', 'accounts') ORDER BY relname") == \
        [("r",), ("v",)]
    old_app.finish()  # the old release is gone before the contract
    assert old_app.errors == []
    cleanup.cleanup(fresh_db, migration, run_id)
    new_app.until(20)
    assert q(fresh_db, "SELECT to_regclass('users')")[0][0] is None

    # the rollback: the old release comes back beside the new one, both work until the rollback's last step
    run_id = rollback.preflight_rollback(fresh_db, migration)["run_id"]
    rollback.down(fresh_db, migration, run_id)
    back_app = NamedApp(fresh_db, "users")
    back_app.start()
    back_app.until(20)
    new_app.until(20)
    new_app.finish()
    assert new_app.errors == []
    rollback.restore(fresh_db, migration, run_id)
    back_app.until(20)
    back_app.finish()
    assert back_app.errors == []
    assert q(fresh_db, "SELECT relkind FROM pg_class WHERE relname = 'users'") == [("r",)]
    assert q(fresh_db, "SELECT to_regclass('accounts')")[0][0] is None


def test_rename_table_both_names_keep_working_through_expand_and_a_rollback_before_the_contract(fresh_db, tmp_path):
    """The other way through: expand, then the rollback before any contract, with one application on each name
    running the whole time (the old one from before the expand to the end, the new one from the expand until the
    rollback's last step drops its view): zero errors."""
    migration = make_migration(tmp_path, {"op": "rename_table", "to": "accounts"}, approval=False)
    old_app = NamedApp(fresh_db, "users")
    old_app.start()
    old_app.until(20)
    apply_all(fresh_db, migration)
    new_app = NamedApp(fresh_db, "accounts")
    new_app.start()
    old_app.until(20)
    new_app.until(20)
    run_id = rollback.preflight_rollback(fresh_db, migration)["run_id"]
    rollback.down(fresh_db, migration, run_id)  # users a table again, accounts its view: both still work
    assert q(fresh_db, "SELECT relname::text, relkind::text FROM pg_class WHERE relname IN ('users', 'accounts') "
                       "ORDER BY relname") == [("accounts", "v"), ("users", "r")]
    old_app.until(20)
    new_app.until(20)
    new_app.finish()  # the newer release is gone before the rollback's last step
    assert new_app.errors == []
    assert rollback.restore(fresh_db, migration, run_id)["structure_identical"]
    old_app.until(20)
    old_app.finish()
    assert old_app.errors == []
    assert q(fresh_db, "SELECT to_regclass('accounts')")[0][0] is None


def test_rename_table_rollback_before_the_contract(fresh_db, tmp_path):
    migration = make_migration(tmp_path, {"op": "rename_table", "to": "accounts"}, approval=False)
    apply_all(fresh_db, migration)
    run_id = rollback.preflight_rollback(fresh_db, migration)["run_id"]
    rollback.down(fresh_db, migration, run_id)
    result = rollback.restore(fresh_db, migration, run_id)
    assert result["structure_identical"], result["structure_differences"]
    assert q(fresh_db, "SELECT relkind FROM pg_class WHERE relname = 'users'") == [("r",)]
    assert q(fresh_db, "SELECT to_regclass('accounts')")[0][0] is None


def test_rename_index_and_constraint_and_back(fresh_db, tmp_path):
    migration = make_migration(tmp_path, {"op": "rename_index", "name": "users_email_key", "to": "users_email_uq"})
    apply_all(fresh_db, migration)
    assert q(fresh_db, "SELECT to_regclass('users_email_uq') IS NOT NULL")[0][0]
    run_id = rollback.preflight_rollback(fresh_db, migration)["run_id"]
    rollback.down(fresh_db, migration, run_id)
    rollback.restore(fresh_db, migration, run_id)
    assert q(fresh_db, "SELECT to_regclass('users_email_key') IS NOT NULL")[0][0]

    (tmp_path / "c").mkdir()
    migration = make_migration(tmp_path / "c", {"op": "rename_constraint", "name": "users_pkey", "to": "users_pk"})
    apply_all(fresh_db, migration)
    assert q(fresh_db, "SELECT count(*) FROM pg_constraint WHERE conname = 'users_pk'")[0][0] == 1
    run_id = rollback.preflight_rollback(fresh_db, migration)["run_id"]
    rollback.down(fresh_db, migration, run_id)
    assert rollback.restore(fresh_db, migration, run_id)["structure_identical"]
    assert q(fresh_db, "SELECT count(*) FROM pg_constraint WHERE conname = 'users_pkey'")[0][0] == 1


def test_rename_refusals_name_the_field(fresh_db, tmp_path):
    migration = make_migration(tmp_path, {"op": "rename_index", "name": "users_emial_key", "to": "users_email_uq"})
    with pytest.raises(PreflightError, match=r"operations\[0\]\.name.*users_emial_key does not exist|users_emial_key"):
        preflight.preflight(fresh_db, migration)
    (tmp_path / "t").mkdir()
    with connect(fresh_db) as conn:
        conn.execute("CREATE TABLE accounts (id int)")
        conn.commit()
    migration = make_migration(tmp_path / "t", {"op": "rename_table", "to": "accounts"})
    with pytest.raises(PreflightError, match="accounts"):
        preflight.preflight(fresh_db, migration)


def test_create_table_then_rollback_drops_it_empty_or_keeps_its_rows(fresh_db, tmp_path):
    op = {"op": "create_table", "columns": {"id": "bigint", "user_id": "bigint", "total": "numeric(12,2)"},
          "not_null": ["user_id"], "checks": {"chk_total": "total >= 0"}}
    migration = make_migration(tmp_path, op, table="orders")
    apply_all(fresh_db, migration)
    assert sorted(q(fresh_db, "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                              "WHERE conrelid = 'orders'::regclass")) == [("CHECK ((total >= (0)::numeric))",),
                                                                         ("PRIMARY KEY (id)",)]
    assert q(fresh_db, "SELECT attname FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnotnull "
                       "AND attnum > 0 ORDER BY attnum") == [("id",), ("user_id",)]
    with connect(fresh_db) as conn:
        conn.execute("INSERT INTO orders VALUES (1, 3, 9.5)")
        conn.commit()
    run_id = rollback.preflight_rollback(fresh_db, migration)["run_id"]
    rollback.down(fresh_db, migration, run_id)
    rollback.restore(fresh_db, migration, run_id)
    assert q(fresh_db, "SELECT to_regclass('orders')")[0][0] is None
    assert q(fresh_db, "SELECT count(*) FROM airmigrate.\"created_0050_create_table_orders\"")[0][0] == 1

    (tmp_path / "empty").mkdir()
    migration = make_migration(tmp_path / "empty", {"op": "create_table", "columns": {"id": "bigint"}},
                               table="invoices")
    apply_all(fresh_db, migration)
    run_id = rollback.preflight_rollback(fresh_db, migration)["run_id"]
    rollback.down(fresh_db, migration, run_id)
    rollback.restore(fresh_db, migration, run_id)
    assert q(fresh_db, "SELECT count(*) FROM pg_class WHERE relname LIKE '%%invoices%%'")[0][0] == 0


def test_create_table_refuses_an_existing_table_or_a_missing_key(fresh_db, tmp_path):
    migration = make_migration(tmp_path, {"op": "create_table", "columns": {"id": "bigint"}})  # table: users
    with pytest.raises(PreflightError, match="already exists"):
        preflight.preflight(fresh_db, migration)
    (tmp_path / "k").mkdir()
    migration = make_migration(tmp_path / "k", {"op": "create_table", "columns": {"code": "text"}}, table="codes")
    with pytest.raises(PreflightError, match=r"key id is not among"):
        preflight.preflight(fresh_db, migration)
