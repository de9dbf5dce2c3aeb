"""`airmigrate new`: the next numbered folder, lint-clean and loadable as made, for every kind of migration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airmigrate.db import connect
from airmigrate.lifecycle.scaffold import MAX_SLUG, OPS
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, backup, cleanup, preflight, rollback, schema_change, validate

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "airmigrate.cli"]
SCHEMA_COMMENT = "# yaml-language-server: $schema=../../migration.schema.json"


@pytest.fixture
def dirs(tmp_path):
    """Empty migrations and expectations folders (nothing copied from the project)."""
    migrations, expectations = tmp_path / "migrations", tmp_path / "expectations"
    migrations.mkdir()
    expectations.mkdir()
    return migrations, expectations


def airmigrate(dirs, *args):
    migrations, expectations = dirs
    env = {**os.environ, "AIRMIGRATE_MIGRATIONS_DIR": str(migrations), "AIRMIGRATE_EXPECTATIONS_DIR": str(expectations)}
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def contents(dirs) -> set[str]:
    return {str(p.relative_to(d.parent)) for d in dirs for p in d.rglob("*")}


@pytest.mark.parametrize("op", OPS)
def test_each_kind_is_lint_clean_and_loads_as_made(dirs, op):
    migrations, expectations = dirs
    options = [] if op == "sql" else ["--op", op, "--table", "users", "--column", "country"]
    made = airmigrate(dirs, "new", f"try_{op}", *options)
    assert made.returncode == 0, made.stderr
    migration_id = f"0001_try_{op}"
    folder = migrations / migration_id
    expected = {"migration.yaml", "down.sql"} | ({"up.sql", "backfill.sql"} if op == "sql" else set())
    assert {p.name for p in folder.iterdir()} == expected
    assert sorted(p.name for p in migrations.iterdir()) == [migration_id]  # no staging folder left behind
    assert (folder / "migration.yaml").read_text().splitlines()[0] == SCHEMA_COMMENT
    assert "rolled back" in (folder / "down.sql").read_text()  # says why a way back is required
    suite = json.loads((expectations / f"{migration_id}.json").read_text())
    assert suite["name"] == migration_id and suite["expectations"]
    for step in (f"airmigrate lint {folder}", f"airmigrate plan {migration_id}", f"airmigrate run {migration_id}"):
        assert step in made.stdout
    assert ("give --column" in made.stdout) == (op == "sql")  # placeholders are listed, given values are not

    migration = load_migration(folder, expectations)
    assert migration.expectations_file == expectations / f"{migration_id}.json"
    assert migration.down_sql.strip()
    if op == "sql":
        assert not migration.spec.operations and migration.spec.backfill.sql == "backfill.sql"
        assert "BETWEEN %(lo)s AND %(hi)s" in migration.backfill_sql and "IS DISTINCT FROM" in migration.backfill_sql
        assert "ADD COLUMN IF NOT EXISTS new_column" in migration.up_sql
    else:
        assert [o.op for o in migration.spec.operations] == [op] and migration.spec.table == "users"

    lint = airmigrate(dirs, "lint", str(folder))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "0 finding(s)" in lint.stdout
    plan = airmigrate(dirs, "plan", migration_id, "--offline")
    assert plan.returncode == 0, plan.stderr


def test_number_follows_the_highest_existing_one(dirs):
    migrations, expectations = dirs
    for name in ("0001_first", "0007_seventh", "notes"):
        (migrations / name).mkdir()
    (migrations / "0042_not_a_folder.txt").write_text("")  # only folders count
    made = airmigrate(dirs, "new", "add_orders_status", "--op", "add_index", "--table", "shop.orders",
                      "--column", "status")
    assert made.returncode == 0, made.stderr
    assert (migrations / "0008_add_orders_status" / "migration.yaml").is_file()
    assert (expectations / "0008_add_orders_status.json").is_file()
    migration = load_migration(migrations / "0008_add_orders_status", expectations)
    assert migration.spec.schema_name == "shop" and migration.spec.operations[0].name == "idx_orders_status"
    again = airmigrate(dirs, "new", "add_orders_total", "--op", "add_column", "--table", "orders",
                       "--column", "total", "--type", "numeric(12,2)")
    assert again.returncode == 0, again.stderr
    assert load_migration(migrations / "0009_add_orders_total").spec.operations[0].type == "numeric(12, 2)"


@pytest.mark.parametrize("args, message", [
    (["Add-Orders"], "airmigrate new add_orders"),
    (["add orders"], "airmigrate new add_orders"),
    (["0003_add_orders"], "give the slug only"),
    (["add_orders__rollback"], "__rollback"),
    (["_add_orders"], "airmigrate new add_orders"),
    (["a" * (MAX_SLUG + 1)], "63 bytes"),
    (["add_orders", "--op", "add_column"], "needs --table"),
    (["add_orders", "--op", "add_column", "--table", "orders", "--column", "Total-Sum"], "total_sum"),
    (["add_orders", "--op", "add_column", "--table", "a.b.c"], "schema.table"),
    (["add_orders", "--op", "add_column", "--table", "orders", "--type", "int int"], "one PostgreSQL type"),
])
def test_bad_input_is_a_clear_error_and_creates_nothing(dirs, args, message):
    (dirs[0] / "0001_first").mkdir()
    before = contents(dirs)
    refused = airmigrate(dirs, "new", *args)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith("error: ") and message in refused.stderr
    assert contents(dirs) == before


def test_an_existing_migration_or_suite_is_refused(dirs):
    migrations, expectations = dirs
    assert airmigrate(dirs, "new", "add_orders_status").returncode == 0
    before = contents(dirs)
    again = airmigrate(dirs, "new", "add_orders_status")
    assert again.returncode == 2 and "0001_add_orders_status already exists" in again.stderr
    assert contents(dirs) == before
    (expectations / "0002_add_orders_total.json").write_text("{}")  # a stray suite is never overwritten
    before = contents(dirs)
    stray = airmigrate(dirs, "new", "add_orders_total")
    assert stray.returncode == 2 and "0002_add_orders_total.json already exists" in stray.stderr
    assert contents(dirs) == before and (expectations / "0002_add_orders_total.json").read_text() == "{}"


def _columns(target) -> list[str]:
    with connect(target) as conn:
        return [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                           "WHERE table_name = 'users' ORDER BY ordinal_position")]


@pytest.mark.parametrize("options", [["--op", "add_column", "--column", "nickname"], ["--column", "nickname"]],
                         ids=["add_column", "sql"])
def test_a_scaffolded_migration_applies_validates_and_rolls_back(fresh_db, dirs, options):
    """As made (plus --table users): expand, backfill, the suite it came with, contract; then the rollback."""
    migrations, expectations = dirs
    made = airmigrate(dirs, "new", "add_user_nickname", "--table", "users", *options)
    assert made.returncode == 0, made.stderr
    migration = load_migration(migrations / "0001_add_user_nickname", expectations)
    run_id = preflight.preflight(fresh_db, migration)["run_id"]
    backup.backup(fresh_db, migration, run_id)
    schema_change.schema_change(fresh_db, migration, run_id)
    backfill.start_backfill(fresh_db, migration, run_id)
    backfill.run_shard(fresh_db, migration, run_id, 0)
    assert validate.validate(fresh_db, migration, run_id)["validation"] == "passed"
    cleanup.cleanup(fresh_db, migration, run_id)
    assert "nickname" in _columns(fresh_db)
    if "--op" not in options:  # the sql template's backfill ran over every batch
        with connect(fresh_db) as conn:
            assert conn.execute("SELECT count(*) FROM users WHERE nickname IS DISTINCT FROM id::text").fetchone() \
                == (0,)
    back = rollback.preflight_rollback(fresh_db, migration)["run_id"]
    rollback.down(fresh_db, migration, back)
    assert rollback.restore(fresh_db, migration, back)["status"] == "rolled_back"
    assert "nickname" not in _columns(fresh_db)


def test_the_using_hint_of_a_mixed_case_column_quotes_it(dirs):
    import yaml

    done = airmigrate(dirs, "new", "country_text", "--op", "change_column_type", "--table", "customers",
                      "--column", "Country", "--type", "text")
    assert done.returncode == 0, done.stderr
    text = (dirs[0] / "0001_country_text" / "migration.yaml").read_text()
    hint = next(line for line in text.splitlines() if "# using:" in line).split("# using:")[1].split("   #")[0]
    assert yaml.safe_load(hint) == '"Country"::text'  # unquoted, PostgreSQL would read lowercase country
    lower = airmigrate(dirs, "new", "code_text", "--op", "change_column_type", "--table", "customers",
                       "--column", "code", "--type", "text")
    assert lower.returncode == 0 and '# using: "code::text"' in (dirs[0] / "0002_code_text" / "migration.yaml").read_text()
