"""User expressions and SQL that cannot escape their batch (issue 8 part 2), on a real PostgreSQL.

Types and expressions written in migration.yaml reach SQL only as pglast re-rendered them, so a
trailing `-- comment` can neither comment out a batch's `WHERE key BETWEEN %(lo)s AND %(hi)s` nor
swallow the DEFAULT after a type. Lint catches the backfill.sql mistakes that would only show at
run time: a lone `%`, a WHERE not bounded by both batch placeholders; it reports every broken
statement of a file, and a suite with no expectations.
"""

from __future__ import annotations

import json

import psycopg
import pytest
import yaml

from airmigrate.db import connect
from airmigrate.errors import PreflightError
from airmigrate.lint import lint_file, lint_migration
from airmigrate.operations.base import check_expression, check_type
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, backup, preflight, schema_change
from airmigrate.stages.generated import runtime_steps

BOUNDED = "UPDATE users SET full_name = upper(full_name) WHERE id BETWEEN %(lo)s AND %(hi)s"


def make_folder(tmp_path, spec: dict, files: dict | None = None, name: str = "0070_expr"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "migration.yaml").write_text(yaml.safe_dump({"description": "expressions", "table": "users", **spec}))
    for file, text in (files or {}).items():
        (folder / file).write_text(text)
    return folder


def expand_then_one_batch(target, migration, lo: int, hi: int) -> int:
    """Preflight (lint included), backup and expand as the DAG runs them, then the per-batch function the
    backfill shards run, for the one key range [lo, hi]; returns the rows it wrote."""
    run_id = preflight.preflight(target, migration)["run_id"]
    backup.backup(target, migration, run_id)
    schema_change.schema_change(target, migration, run_id)
    with connect(target) as conn:
        steps = runtime_steps(conn, migration)
        apply_batch = backfill.batch_function(migration, steps.backfill, backfill.key_of(migration))
        rows = apply_batch(conn, str(lo), str(hi))
        conn.commit()
    return rows


def q(target, query, params=None):
    with connect(target) as conn:
        return conn.execute(query, params).fetchall()


def column_default(target, column):
    return q(target, "SELECT column_default FROM information_schema.columns WHERE table_name = 'users' "
                     "AND column_name = %s", (column,))[0][0]


# -- rendering --------------------------------------------------------------------------------------

@pytest.mark.parametrize("written, rendered", [
    ("text -- x", "text"), ("text[]", "text[]"), ("numeric(12,2)", "numeric(12, 2)"),
    ("timestamp with time zone", "timestamp with time zone"), ("varchar(8) /* short */", "varchar(8)"),
])
def test_a_type_is_stored_as_rendered(written, rendered):
    assert check_type(written) == rendered


@pytest.mark.parametrize("written", ["int; DROP TABLE users", "int int", "text, int", "text) DEFAULT (1"])
def test_a_type_with_anything_after_it_is_refused(written):
    with pytest.raises(ValueError):
        check_type(written)


@pytest.mark.parametrize("written", ["1; DROP TABLE users", "id AS x", "id FROM users", "id WHERE true",
                                     "id ORDER BY 1", "id LIMIT 1", "1, 2", "DISTINCT id"])
def test_an_expression_with_anything_around_it_is_refused(written):
    with pytest.raises(ValueError):
        check_expression(written)


EXPRESSIONS = ["full_name LIKE 'A%'", "CAST(id AS numeric(12,2)) / 7", "phone IS DISTINCT FROM NULL",
               "ARRAY[country, 'x']::text[]", "email_confirmed_at::timestamp with time zone",
               "left(full_name, 3)::varchar(8)", "id % 7 = 0 -- every seventh", "E'a\\nb' || country",
               "(id - 1) * 2 - (3 - id)", "NOT (phone IS NULL OR country = 'US')"]


def test_rendered_expressions_compute_the_same_values(fresh_db):
    """Rendering keeps the meaning: over 2,000 real rows, every expression and its rendering agree."""
    pairs = ", ".join(f"({written}\n) IS NOT DISTINCT FROM ({check_expression(written)})" for written in EXPRESSIONS)
    rows = q(fresh_db, f"SELECT {pairs} FROM users WHERE id <= 2000")
    assert len(rows) == 2000 and all(all(row) for row in rows)
    assert "--" not in check_expression(EXPRESSIONS[6]) and "%" in check_expression(EXPRESSIONS[0])


def test_sync_expressions_are_stored_as_rendered(tmp_path):
    folder = make_folder(tmp_path, {"backfill": {"sql": "backfill.sql", "columns": ["full_name"],
                                                 "sync": {"full_name": "upper(full_name) -- keep it loud"}}},
                         {"backfill.sql": BOUNDED, "up.sql": "SELECT 1;", "down.sql": "SELECT 1;"})
    assert load_migration(folder).spec.backfill.sync == {"full_name": "upper(full_name)"}


# -- comments cannot escape a batch or drop a clause ------------------------------------------------

def test_add_column_backfill_comment_keeps_the_batch_bounded(fresh_db, tmp_path):
    migration = load_migration(make_folder(tmp_path, {"operations": [
        {"op": "add_column", "column": "name_length", "type": "integer -- int4",
         "backfill": "length(full_name) -- count characters"}]}))
    with connect(fresh_db) as conn:
        assert all("--" not in statement for statement in runtime_steps(conn, migration).backfill)
    assert expand_then_one_batch(fresh_db, migration, 101, 200) == 100
    filled = q(fresh_db, "SELECT min(id), max(id), count(*), bool_and(name_length = length(full_name)) "
                         "FROM users WHERE name_length IS NOT NULL")
    assert filled == [(101, 200, 100, True)]


def test_add_column_default_and_type_comments_keep_the_default(fresh_db, tmp_path):
    migration = load_migration(make_folder(tmp_path, {"operations": [
        {"op": "add_column", "column": "tier", "type": "text -- plain text", "default": "'basic' -- for everyone"},
        {"op": "add_column", "column": "tags", "type": "text[] /* list */", "default": "'{}'"}]}))
    run_id = preflight.preflight(fresh_db, migration)["run_id"]
    schema_change.schema_change(fresh_db, migration, run_id)
    assert column_default(fresh_db, "tier") == "'basic'::text"
    assert column_default(fresh_db, "tags") == "'{}'::text[]"
    assert q(fresh_db, "SELECT count(*) FILTER (WHERE tier = 'basic'), count(*) FROM users") == [(30_000, 30_000)]
    with connect(fresh_db) as conn:
        tier = conn.execute("INSERT INTO users (email, full_name, country) VALUES ('new@example.com', 'N', 'US') "
                            "RETURNING tier").fetchone()[0]
    assert tier == "basic"


def test_change_column_type_comments_keep_the_batch_bounded(fresh_db, tmp_path):
    migration = load_migration(make_folder(tmp_path, {"operations": [
        {"op": "change_column_type", "column": "country", "type": "varchar(8) -- wider",
         "using": "lower(country) -- normalise"}]}))
    assert expand_then_one_batch(fresh_db, migration, 1, 50) == 50
    assert q(fresh_db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                       "WHERE attrelid = 'users'::regclass AND attname = 'country__new'") == [("character varying(8)",)]
    assert q(fresh_db, "SELECT count(*), min(id), max(id), bool_and(country__new = lower(country)) FROM users "
                       "WHERE country__new IS NOT NULL") == [(50, 1, 50, True)]


# -- lint: backfill.sql mistakes that only show at run time -----------------------------------------

def test_a_lone_percent_in_backfill_sql_is_found(fresh_db, tmp_path):
    text = "UPDATE users SET full_name = full_name\nWHERE id BETWEEN %(lo)s AND %(hi)s AND id % 2 = 0"
    folder = make_folder(tmp_path, {"backfill": {"sql": "backfill.sql", "columns": ["full_name"]}},
                         {"backfill.sql": text, "up.sql": "SELECT 1;", "down.sql": "SELECT 1;"})
    findings = [f for f in lint_migration(load_migration(folder)) if f.rule == "backfill-percent"]
    assert [(f.line, f.file) for f in findings] == [(2, str(folder / "backfill.sql"))]
    assert "%%" in findings[0].recipe
    with connect(fresh_db) as conn, pytest.raises(psycopg.ProgrammingError):  # what every batch would meet
        conn.execute(text, {"lo": "1", "hi": "10"})
    doubled = text.replace("id % 2", "id %% 2")
    (folder / "backfill.sql").write_text(doubled)
    assert not [f for f in lint_migration(load_migration(folder)) if f.rule == "backfill-percent"]
    with connect(fresh_db) as conn:
        assert conn.execute(doubled, {"lo": "1", "hi": "10"}).rowcount == 5


@pytest.mark.parametrize("text", [
    "UPDATE users SET full_name = full_name || %(hi)s WHERE id >= %(lo)s",
    "UPDATE users SET full_name = upper(full_name) WHERE id >= %(lo)s "
    "AND country = (SELECT country FROM users WHERE id = %(hi)s)",
    "UPDATE users SET full_name = upper(full_name) WHERE id BETWEEN %(lo)s AND %(hi)s OR phone IS NULL",
])
def test_a_backfill_whose_where_does_not_bound_the_batch_is_found(fresh_db, tmp_path, text):
    folder = make_folder(tmp_path, {"backfill": {"sql": "backfill.sql", "columns": ["full_name"]}},
                         {"backfill.sql": text, "up.sql": "SELECT 1;", "down.sql": "SELECT 1;"})
    findings = [f for f in lint_migration(load_migration(folder)) if f.rule == "backfill-unbounded"]
    assert len(findings) == 1 and findings[0].line == 1 and "%(" in findings[0].message
    with connect(fresh_db) as conn:  # and indeed: one batch of ten keys writes far more than ten rows
        assert conn.execute(text, {"lo": "1", "hi": "10"}).rowcount > 10


def test_a_bounded_backfill_and_generated_batches_pass(tmp_path):
    folder = make_folder(tmp_path, {"backfill": {"sql": "backfill.sql", "columns": ["full_name"]},
                                    "operations": [{"op": "add_column", "column": "n", "type": "int",
                                                    "backfill": "length(full_name)"},
                                                   {"op": "split_table", "new_table": "user_logins",
                                                    "columns": ["last_login_at"]}]},
                         {"backfill.sql": "-- ids %(lo)s..%(hi)s\n" + BOUNDED + " AND full_name LIKE 'a%%'"})
    rules = {f.rule for f in lint_migration(load_migration(folder))}
    assert not rules & {"backfill-unbounded", "backfill-percent", "syntax-error"}


def test_a_composite_key_needs_every_bound_in_the_where(tmp_path):
    text = ("UPDATE users SET full_name = upper(full_name) || %(hi_1)s "
            "WHERE (country, id) BETWEEN (%(lo_0)s, %(lo_1)s) AND (%(hi_0)s, 0) AND full_name <> %(lo)s")
    folder = make_folder(tmp_path, {"key": ["country", "id"], "backfill": {"sql": "backfill.sql",
                                                                          "columns": ["full_name"]}},
                         {"backfill.sql": text, "up.sql": "SELECT 1;", "down.sql": "SELECT 1;"})
    findings = {f.rule: f for f in lint_migration(load_migration(folder))}
    assert "%(hi_1)s" in findings["backfill-unbounded"].message
    assert "%(lo)s" in findings["backfill-percent"].message  # a composite key binds lo_0.., never lo


# -- lint: every parse error, and the rest still linted ---------------------------------------------

def test_every_broken_statement_is_reported_and_the_rest_still_linted(tmp_path):
    path = tmp_path / "up.sql"
    path.write_text("ALTER TABLE users ADD COLUM x int;\n"
                    "CREATE INDEX idx_users_phone ON users (phone);\n"
                    "-- a function body keeps its semicolons\n"
                    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n"
                    "SELEC 1;\n"
                    "UPDATE users SET phone = NULL;\n"
                    "UPDATE users SET phone = 'unterminated;\n")
    found = [(f.line, f.rule) for f in lint_file(path, "up")]
    assert found == [(1, "syntax-error"), (2, "require-concurrent-index-creation"), (5, "syntax-error"),
                     (6, "unbatched-update"), (7, "syntax-error")]


# -- lint: a suite that proves nothing --------------------------------------------------------------

def test_an_empty_expectation_suite_is_a_finding(fresh_db, tmp_path):
    suites = tmp_path / "expectations"
    suites.mkdir()
    (suites / "0070_expr.json").write_text(json.dumps({"name": "0070_expr", "expectations": []}, indent=1))
    folder = make_folder(tmp_path, {"operations": [{"op": "add_column", "column": "tier", "type": "text"}]})
    migration = load_migration(folder, suites)
    findings = [f for f in lint_migration(migration) if f.rule == "empty-expectations"]
    assert [(f.file, f.line) for f in findings] == [(str(suites / "0070_expr.json"), 3)]
    with pytest.raises(PreflightError, match="empty-expectations"):
        preflight.preflight(fresh_db, migration)
    (suites / "0070_expr.json").write_text(json.dumps({"name": "0070_expr", "expectations": [
        {"type": "expect_column_to_exist", "kwargs": {"column": "tier"}}]}))
    assert not [f for f in lint_migration(load_migration(folder, suites)) if "expectations" in f.rule]
