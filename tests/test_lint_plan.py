"""Lint (squawk + airmigrate's pglast rules) and plan (locks, effects, estimates, exact SQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airmigrate import plan
from airmigrate.db import connect
from airmigrate.errors import PreflightError
from airmigrate.lint import lint_file, lint_migration
from airmigrate.spec import load_migration
from airmigrate.stages.preflight import preflight

ROOT = Path(__file__).resolve().parent.parent
UNSAFE_UP = """ALTER TABLE users ADD COLUMN IF NOT EXISTS score int;
CREATE INDEX idx_users_score ON users (score);
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
UPDATE users SET score = 0;
ALTER TABLE users DROP COLUMN last_login_at;
"""


def unsafe_migration(tmp_path, acknowledge=()):
    folder = tmp_path / "0060_unsafe"
    folder.mkdir()
    (folder / "migration.yaml").write_text(yaml.safe_dump(
        {"description": "unsafe", "table": "users", "acknowledge": list(acknowledge)}))
    (folder / "up.sql").write_text(UNSAFE_UP)
    (folder / "down.sql").write_text("ALTER TABLE users DROP COLUMN IF EXISTS score;\n")
    return folder


def airmigrate(*args, env=None):
    return subprocess.run([sys.executable, "-m", "airmigrate.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_unsafe_statements_are_found_with_line_rule_and_recipe(tmp_path):
    findings = lint_migration(load_migration(unsafe_migration(tmp_path)))
    by_rule = {f.rule: f for f in findings}
    assert by_rule["require-concurrent-index-creation"].line == 2
    assert "CONCURRENTLY" in by_rule["require-concurrent-index-creation"].recipe
    assert by_rule["adding-not-nullable-field"].line == 3 and "NOT VALID" in by_rule["adding-not-nullable-field"].recipe
    assert by_rule["unbatched-update"].line == 4 and "backfill.sql" in by_rule["unbatched-update"].recipe
    assert by_rule["destructive-in-expand"].line == 5 and "cleanup.sql" in by_rule["destructive-in-expand"].recipe
    assert str(by_rule["unbatched-update"]).startswith(f"{tmp_path}/0060_unsafe/up.sql:4: unbatched-update:")


def test_lint_exit_codes(tmp_path):
    clean = airmigrate("lint", "migrations/")
    assert clean.returncode == 0 and "0 not acknowledged" in clean.stdout
    dirty = airmigrate("lint", str(unsafe_migration(tmp_path)))
    assert dirty.returncode == 1 and "up.sql:2: require-concurrent-index-creation" in dirty.stdout
    assert airmigrate("lint", str(tmp_path / "nope")).returncode == 2


def test_a_folder_that_does_not_load_is_still_linted_and_named(tmp_path):
    """A syntax error: the folder's spec error on stderr, its SQL files' findings with the right line, exit 1."""
    folder = unsafe_migration(tmp_path)
    (folder / "up.sql").write_text("-- two lines\nALTER TABLE users ADD COLUM x int;\n")
    result = airmigrate("lint", str(tmp_path))
    assert result.returncode == 1
    assert f"{folder}/up.sql: up: line 2: syntax error" in result.stderr
    assert f"{folder}/up.sql:2: syntax-error" in result.stdout and "1 folder(s) that do not load" in result.stdout


def test_acknowledged_rules_pass_with_their_reason(tmp_path):
    rules = ["require-concurrent-index-creation", "adding-not-nullable-field", "unbatched-update",
             "destructive-in-expand", "ban-drop-column", "prefer-bigint-over-int"]
    folder = unsafe_migration(tmp_path, [{"rule": r, "reason": "users has 200 rows in this product"} for r in rules])
    result = airmigrate("lint", str(folder))
    assert result.returncode == 0, result.stdout
    assert "[acknowledged: users has 200 rows in this product]" in result.stdout


def test_preflight_refuses_unacknowledged_unsafe_sql_and_changes_nothing(fresh_db, tmp_path):
    with pytest.raises(PreflightError, match="require-concurrent-index-creation") as err:
        preflight(fresh_db, load_migration(unsafe_migration(tmp_path)))
    assert "acknowledge:" in str(err.value)
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT to_regclass('airmigrate.runs')").fetchone()[0] is not None
        assert conn.execute("SELECT count(*) FROM airmigrate.runs").fetchone()[0] == 0


def test_backfill_file_must_be_one_bounded_update(tmp_path):
    path = tmp_path / "backfill.sql"
    path.write_text("UPDATE users SET a = 1 WHERE id BETWEEN %(lo)s AND %(hi)s; DELETE FROM users WHERE id = 1;")
    assert [f.rule for f in lint_file(path, "backfill")] == ["backfill-single-update"]


@pytest.mark.parametrize("statement, lock, effect", [
    ("ALTER TABLE users ADD COLUMN a int DEFAULT 0", "ACCESS EXCLUSIVE", ""),
    ("ALTER TABLE users ADD COLUMN a timestamptz DEFAULT clock_timestamp()", "ACCESS EXCLUSIVE", "rewrite"),
    ("ALTER TABLE users ALTER COLUMN a TYPE bigint", "ACCESS EXCLUSIVE", "rewrite"),
    ("ALTER TABLE users ALTER COLUMN a SET NOT NULL", "ACCESS EXCLUSIVE", "scan"),
    ("ALTER TABLE users ADD CONSTRAINT c CHECK (a > 0) NOT VALID", "ACCESS EXCLUSIVE", ""),
    ("ALTER TABLE users VALIDATE CONSTRAINT c", "SHARE UPDATE EXCLUSIVE", "scan"),
    ("ALTER TABLE users ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES t (id) NOT VALID", "SHARE ROW EXCLUSIVE", ""),
    ("CREATE INDEX i ON users (a)", "SHARE", "scan"),
    ("CREATE INDEX CONCURRENTLY i ON users (a)", "SHARE UPDATE EXCLUSIVE", "scan"),
    ("UPDATE users SET a = 1", "ROW EXCLUSIVE", "scan"),
    ("UPDATE users SET a = 1 WHERE id BETWEEN %(lo)s AND %(hi)s", "ROW EXCLUSIVE", ""),
])
def test_lock_classification(statement, lock, effect):
    assert plan.classify(statement) == (lock, effect)


def test_plan_sql_is_exactly_what_runs():
    migration = load_migration(ROOT / "migrations" / "0001_add_user_email_verified")
    text = plan.render_sql(migration)
    begin = text.index("BEGIN;")
    assert text.index("SET LOCAL lock_timeout = '500ms';") > begin
    assert text.index("COMMIT;") < text.index("CREATE INDEX CONCURRENTLY")  # concurrent statement outside
    assert "SET lock_timeout = '500ms';\nSET statement_timeout" in text


def test_plan_of_the_pandas_path_shows_the_sql_each_batch_runs():
    """The same statements apply_transform executes; placeholders shown as they run, not quoted."""
    from airmigrate.stages.backfill.transform import transform_statements

    migration = load_migration(ROOT / "migrations" / "0002_normalize_user_phone")
    text = plan.render_sql(migration)
    statements = transform_statements(migration)
    for statement in [statements["read"], *(s for _, s in statements["write"].statements)]:
        assert statement.as_string() + ";" in text
    backfill = [p for p in plan.static_plan(migration) if p.stage.startswith("backfill")]
    assert [p.sql.split()[0] for p in backfill] == ["SELECT", "CREATE", "COPY", "UPDATE"]
    assert "BETWEEN %(lo)s AND %(hi)s" in backfill[-1].sql and not any(p.blocks_writes for p in backfill)


def test_set_not_null_after_a_validated_check_is_not_flagged():
    """PostgreSQL 12+ skips SET NOT NULL's scan when a validated CHECK (col IS NOT NULL) proves it."""
    proofs = plan.NotNullProofs()
    steps = ["ALTER TABLE users ALTER COLUMN email SET NOT NULL",
             "ALTER TABLE users ADD CONSTRAINT nn CHECK (email IS NOT NULL) NOT VALID",
             "ALTER TABLE users ALTER COLUMN email SET NOT NULL",  # proven by nothing yet: not validated
             "ALTER TABLE users VALIDATE CONSTRAINT nn",
             "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
             "ALTER TABLE users ALTER COLUMN phone SET NOT NULL"]
    assert [proofs.skips_scan(s) for s in steps] == [False, False, False, False, True, False]


def test_plan_estimates_rows_batches_and_eta(fresh_db):
    migration = load_migration(ROOT / "migrations" / "0001_add_user_email_verified")
    with connect(fresh_db) as conn:
        est = plan.estimate(conn, migration)
    assert 25_000 <= est["rows"] <= 35_000  # pg_class.reltuples after the template's ANALYZE: ~30,000
    assert est["batches"] == -(-est["rows"] // migration.spec.batch_size)
    text = plan.render(migration, plan.static_plan(migration), est)
    assert "lock ACCESS EXCLUSIVE" in text and "no throughput measured" in text


def test_a_table_never_analyzed_is_estimated_by_the_planner_not_as_empty(empty_db):
    from airmigrate.db import connect, estimate_rows

    with connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE fresh (id int PRIMARY KEY, pad text)")
        conn.execute("INSERT INTO fresh SELECT g, repeat('x', 50) FROM generate_series(1, 20000) g")
        assert conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'fresh'").fetchone()[0] < 0
        assert 5_000 <= estimate_rows(conn, "public", "fresh") <= 60_000  # from its size on disk
        assert estimate_rows(conn, "public", "missing") == 0
