"""Order and dependencies (issue 9 part 3): folder order, out_of_order, depends_on, what a migration touches,
rollbacks refused while a later migration relies on the change, and `--rollback --cascade`."""

from __future__ import annotations

import pytest
import yaml

from airmigrate import state
from airmigrate.db import connect
from airmigrate.errors import PreflightError, SpecError
from airmigrate.order import cascade, check_order, shared, sql_touched, touched
from airmigrate.spec import load_migration
from airmigrate.stages import preflight, rollback

from test_cli import airmigrate


def write(root, name, files=None, **spec):
    """A migration folder `root/name` with migration.yaml from `spec` and the given SQL files."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "migration.yaml").write_text(yaml.safe_dump({"description": f"test {name}", "table": "users", **spec}))
    for file, text in (files or {}).items():
        (folder / file).write_text(text)
    return folder


def add_x(root, **extra):
    return write(root, "0001_add_x", operations=[{"op": "add_column", "column": "x", "type": "integer"}], **extra)


def index_x(root, **extra):
    return write(root, "0002_index_x", operations=[{"op": "add_index", "name": "idx_users_x", "columns": ["x"]}],
                 **extra)


def set_status(target, migration_id, status):
    with connect(target, autocommit=True) as conn:
        state.ensure_schema(conn)
        state.start_history(conn, migration_id, "x")
        conn.execute("UPDATE airmigrate.history SET status = %s WHERE migration_id = %s", (status, migration_id))


# --- touched() ------------------------------------------------------------------------------------------------

def test_touched_from_operations(tmp_path):
    folder = write(tmp_path, "0001_ops", operations=[
        {"op": "add_column", "column": "score", "type": "integer", "backfill": "length(full_name)"},
        {"op": "rename_column", "column": "phone", "to": "phone_number"},
        {"op": "split_table", "new_table": "user_logins", "columns": ["last_login_at"]},
        {"op": "add_index", "name": "idx_users_country", "columns": ["country"]},
        {"op": "add_check", "name": "chk_country", "expression": "length(country) = 2"},
        {"op": "add_unique", "name": "uq_users_email", "columns": ["email"]},
    ])
    assert touched(load_migration(folder)) == {
        ("column", "public.users.score"), ("column", "public.users.phone"), ("column", "public.users.phone_number"),
        ("table", "public.user_logins"), ("column", "public.users.last_login_at"),
        ("column", "public.user_logins.last_login_at"),
        ("index", "public.idx_users_country"), ("uses_column", "public.users.country"),
        ("constraint", "public.users.chk_country"),
        ("index", "public.uq_users_email"), ("constraint", "public.users.uq_users_email"),
        ("uses_column", "public.users.email"),
    }
    drop = write(tmp_path, "0002_drop", table="app.users", operations=[{"op": "drop_column", "column": "legacy"}])
    assert touched(load_migration(drop)) == {("column", "app.users.legacy")}


def test_touched_from_sql_files(tmp_path):
    folder = write(tmp_path, "0001_sql", files={
        "up.sql": "ALTER TABLE users ADD COLUMN tier text, ADD CONSTRAINT chk_tier CHECK (tier <> '') NOT VALID;\n"
                  "CREATE INDEX CONCURRENTLY idx_users_tier ON users (tier, lower(email)) WHERE country IS NOT NULL;\n"
                  "ALTER TABLE users RENAME COLUMN phone TO phone_old;\n",
        "backfill.sql": "UPDATE users SET tier = 'basic' WHERE id BETWEEN %(lo)s AND %(hi)s AND tier IS NULL;\n",
        "cleanup.sql": "DROP INDEX CONCURRENTLY IF EXISTS idx_users_legacy;\nDROP TABLE archive.old_users;\n",
        "down.sql": "ALTER TABLE users DROP COLUMN tier;\n",
    }, backfill={"sql": "backfill.sql", "columns": ["tier"]}, cleanup="cleanup.sql")
    assert touched(load_migration(folder)) == {
        ("column", "public.users.tier"), ("constraint", "public.users.chk_tier"),
        ("index", "public.idx_users_tier"), ("uses_column", "public.users.tier"),
        ("uses_column", "public.users.email"), ("uses_column", "public.users.country"),
        ("column", "public.users.phone"), ("column", "public.users.phone_old"),
        ("index", "public.idx_users_legacy"), ("table", "archive.old_users"),
    }
    # the migration's own schema for its unqualified table; public for any other
    assert sql_touched("UPDATE users SET a = 1; ALTER TABLE orders DROP COLUMN b", "app", "users") == {
        ("column", "app.users.a"), ("column", "public.orders.b")}


def test_shared_needs_a_change_on_one_side():
    created = {("column", "public.users.x")}
    indexed = {("uses_column", "public.users.x"), ("index", "public.idx_a")}
    indexed_too = {("uses_column", "public.users.x"), ("index", "public.idx_b")}
    assert shared(created, indexed) == [("column", "public.users.x")]
    assert shared(indexed, indexed_too) == []  # two indexes on one column do not depend on each other
    assert shared(indexed, {("index", "public.idx_a")}) == [("index", "public.idx_a")]


# --- spec fields ----------------------------------------------------------------------------------------------

def test_depends_on_must_name_another_folder(tmp_path):
    with pytest.raises(SpecError) as bad:
        load_migration(add_x(tmp_path, depends_on=["add_orders"]))
    assert "depends_on" in str(bad.value) and "'add_orders' is not a migration folder name" in str(bad.value)
    assert "migration.yaml" in str(bad.value)
    with pytest.raises(SpecError) as itself:
        load_migration(index_x(tmp_path, depends_on=["0002_index_x"]))
    assert "depends_on[0]: names this migration itself" in str(itself.value)


# --- check_order ----------------------------------------------------------------------------------------------

def test_refused_while_an_earlier_migration_is_pending_unless_out_of_order(tmp_path, fresh_db):
    add_x(tmp_path)
    later = load_migration(index_x(tmp_path))
    with pytest.raises(PreflightError) as refused:
        preflight.preflight(fresh_db, later)
    message = str(refused.value)
    assert "0002_index_x must run after 0001_add_x, which has not been applied" in message
    assert "airmigrate run 0001_add_x" in message and "out_of_order: true" in message
    with connect(fresh_db) as conn:  # refused before anything was recorded
        assert state.history(conn, "0002_index_x") is None

    for status, words in (("running", "is running"), ("failed", "failed and is not finished"),
                          ("rolled_back", "was rolled back")):
        set_status(fresh_db, "0001_add_x", status)
        with connect(fresh_db, autocommit=True) as conn, pytest.raises(PreflightError, match=words):
            check_order(conn, later)
    for status in ("applied", "expanded"):
        set_status(fresh_db, "0001_add_x", status)
        with connect(fresh_db, autocommit=True) as conn:
            check_order(conn, later)

    set_status(fresh_db, "0001_add_x", "rolled_back")
    (tmp_path / "0002_index_x" / "migration.yaml").write_text(
        (tmp_path / "0002_index_x" / "migration.yaml").read_text() + "out_of_order: true\n")
    with connect(fresh_db, autocommit=True) as conn:
        check_order(conn, load_migration(tmp_path / "0002_index_x"))


def test_resuming_its_own_run_is_not_held_back(tmp_path, fresh_db):
    add_x(tmp_path)
    later = load_migration(index_x(tmp_path))
    with connect(fresh_db, autocommit=True) as conn:
        state.ensure_schema(conn)
        state.begin_run(conn, later.id, "up", None)  # its run started earlier (e.g. before 0001 was rolled back)
        check_order(conn, later)


def test_depends_on_unmet_met_and_unknown(tmp_path, fresh_db):
    write(tmp_path, "0001_other", operations=[{"op": "add_column", "column": "y", "type": "integer"}])
    add_x(tmp_path, out_of_order=True)  # never mind 0001_other
    needs = load_migration(index_x(tmp_path, depends_on=["0001_add_x"], out_of_order=True))
    with connect(fresh_db, autocommit=True) as conn, pytest.raises(PreflightError) as unmet:
        check_order(conn, needs)
    assert "0002_index_x depends on 0001_add_x" in str(unmet.value) and "has not been applied" in str(unmet.value)
    assert "airmigrate run 0001_add_x" in str(unmet.value)
    set_status(fresh_db, "0001_add_x", "failed")
    with connect(fresh_db, autocommit=True) as conn, pytest.raises(PreflightError, match="which is failed"):
        check_order(conn, needs)
    set_status(fresh_db, "0001_add_x", "applied")
    with connect(fresh_db, autocommit=True) as conn:
        check_order(conn, needs)

    with pytest.raises(SpecError) as error:  # refused when the folder loads (lint, plan, history), not at run time
        load_migration(write(tmp_path, "0003_unknown", depends_on=["0009_nope"], out_of_order=True,
                             operations=[{"op": "add_column", "column": "z", "type": "integer"}]))
    text = str(error.value)
    assert "0003_unknown/migration.yaml: depends_on[0]: there is no migration folder '0009_nope'" in text


# --- rollback -------------------------------------------------------------------------------------------------

def test_rollback_refused_while_a_later_migration_touches_the_same_column(tmp_path, fresh_db):
    first = load_migration(add_x(tmp_path))
    second = load_migration(index_x(tmp_path))
    unrelated = load_migration(write(tmp_path, "0003_add_y", operations=[
        {"op": "add_column", "column": "y", "type": "integer"}]))
    for migration in (first, second, unrelated):
        set_status(fresh_db, migration.id, "applied")
    with pytest.raises(PreflightError) as refused:
        rollback.preflight_rollback(fresh_db, first)
    message = str(refused.value)
    assert "0001_add_x cannot be rolled back while 0002_index_x (both touch column public.users.x)" in message
    assert "0003_add_y" not in message
    assert "roll back 0002_index_x first" in message and "--cascade" in message
    assert rollback.preflight_rollback(fresh_db, first, dry_run=True)["dry_run"]  # a dry run only warns
    with connect(fresh_db, autocommit=True) as conn:
        assert [m.id for m in cascade(conn, first)] == ["0002_index_x"]
        assert cascade(conn, unrelated) == []

    set_status(fresh_db, "0002_index_x", "rolled_back")  # gone: nothing relies on 0001 any more
    with connect(fresh_db, autocommit=True) as conn:
        assert cascade(conn, first) == []


def test_rollback_refused_by_an_explicit_dependent(tmp_path, fresh_db):
    first = load_migration(write(tmp_path, "0001_add_y", operations=[
        {"op": "add_column", "column": "y", "type": "integer"}]))
    second = load_migration(write(tmp_path, "0002_add_z", depends_on=["0001_add_y"], operations=[
        {"op": "add_column", "column": "z", "type": "integer"}]))
    third = load_migration(write(tmp_path, "0003_index_z", operations=[
        {"op": "add_index", "name": "idx_users_z", "columns": ["z"]}]))
    for migration in (first, second, third):
        set_status(fresh_db, migration.id, "applied")
    with pytest.raises(PreflightError, match=r"0002_add_z \(depends_on: \[0001_add_y\]"):
        rollback.preflight_rollback(fresh_db, first)
    with connect(fresh_db, autocommit=True) as conn:  # 0003 relies on 0002, which relies on 0001: latest first
        assert [m.id for m in cascade(conn, first)] == ["0003_index_z", "0002_add_z"]


def test_cli_rollback_cascade_rolls_back_the_dependents_first(tmp_path, fresh_db):
    folders = {"AIRMIGRATE_MIGRATIONS_DIR": str(tmp_path / "migrations"),
               "AIRMIGRATE_EXPECTATIONS_DIR": str(tmp_path / "expectations")}
    (tmp_path / "migrations").mkdir()
    (tmp_path / "expectations").mkdir()
    for args in (("add_x", "--op", "add_column", "--table", "users", "--column", "x", "--type", "integer"),
                 ("index_x", "--op", "add_index", "--table", "users", "--column", "x")):
        made = airmigrate(fresh_db, "new", *args, **folders)
        assert made.returncode == 0, made.stderr

    early = airmigrate(fresh_db, "run", "0002_index_x", **folders)
    assert early.returncode != 0 and "must run after 0001_add_x" in early.stdout + early.stderr
    for name in ("0001_add_x", "0002_index_x"):
        done = airmigrate(fresh_db, "run", name, **folders)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    refused = airmigrate(fresh_db, "run", "0001_add_x", "--rollback", "--approve", **folders)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "0002_index_x (both touch column public.users.x)" in output
    with connect(fresh_db) as conn:
        assert state.history(conn, "0001_add_x")["status"] == "applied"

    unapproved = airmigrate(fresh_db, "run", "0001_add_x", "--rollback", "--cascade", **folders)
    assert unapproved.returncode == 2 and "0001_add_x" in unapproved.stderr and "--approve" in unapproved.stderr

    back = airmigrate(fresh_db, "run", "0001_add_x", "--rollback", "--cascade", "--approve", **folders)
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
    assert "cascade: rolling back 0002_index_x first, then 0001_add_x" in back.stdout
    assert back.stdout.index("running 0002_index_x__rollback") < back.stdout.index("running 0001_add_x__rollback")
    with connect(fresh_db) as conn:
        assert state.history(conn, "0001_add_x")["status"] == "rolled_back"
        assert state.history(conn, "0002_index_x")["status"] == "rolled_back"
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' "
                            "AND column_name = 'x'").fetchone()[0] == 0


def test_depends_on_a_folder_that_does_not_exist_is_refused_at_load_with_the_closest_name(tmp_path):
    add_x(tmp_path)  # 0001_add_x exists
    with pytest.raises(SpecError, match=r"no migration folder '0001_add_y'.*did you mean '0001_add_x'"):
        load_migration(index_x(tmp_path, depends_on=["0001_add_y"]))
