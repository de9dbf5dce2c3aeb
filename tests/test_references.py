"""Preflight's references check: every table, column, type and index a migration names exists (or, for what it
creates, does not) before the backup and before any change, each finding naming its file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airmigrate import state
from airmigrate.db import connect
from airmigrate.errors import PreflightError
from airmigrate.spec import load_migration
from airmigrate.stages.preflight import preflight
from airmigrate.stages.references import find_problems


def make(tmp_path: Path, spec: str, name: str = "0301_refs", **files: str):
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "migration.yaml").write_text(textwrap.dedent(spec))
    for file, text in files.items():
        (folder / file.replace("_sql", ".sql")).write_text(textwrap.dedent(text))
    return load_migration(folder)


def refused(target, migration) -> str:
    with pytest.raises(PreflightError) as info:
        preflight(target, migration, "manual__test")
    return str(info.value)


BACKFILL = """\
    -- one batch
    UPDATE users
    SET email_verified = (email_confirmd_at IS NOT NULL)
    WHERE id BETWEEN %(lo)s AND %(hi)s
      AND email_verified IS DISTINCT FROM (email_confirmed_at IS NOT NULL);
"""
UP = "ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified boolean;\n"
DOWN = "ALTER TABLE users DROP COLUMN IF EXISTS email_verified;\n"
SQL_SPEC = """\
    description: backfill with a typo
    table: users
    backfill:
      sql: backfill.sql
      columns: [email_verified]
"""


def test_missing_column_in_operations_names_the_yaml_field(fresh_db, tmp_path):
    migration = make(tmp_path, """\
        description: rename a column that is not there
        table: users
        operations:
          - op: rename_column
            column: phne
            to: phone_number
    """)
    message = refused(fresh_db, migration)
    assert "migration.yaml:5: operations[0].column" in message and "no column 'phne'" in message
    assert "Fix:" in message and "phone" in message  # the table's columns are listed


def test_missing_column_in_backfill_sql_names_file_and_line(fresh_db, tmp_path):
    migration = make(tmp_path, SQL_SPEC, up_sql=UP, down_sql=DOWN, backfill_sql=BACKFILL)
    message = refused(fresh_db, migration)
    assert "backfill.sql:3:" in message and "email_confirmd_at" in message
    assert "email_verified" not in message.split("email_confirmd_at")[0]  # up.sql adds that one: not reported


def test_column_added_by_up_sql_and_used_by_backfill_is_fine(fresh_db, tmp_path):
    migration = make(tmp_path, SQL_SPEC, up_sql=UP, down_sql=DOWN,
                     backfill_sql=BACKFILL.replace("email_confirmd_at", "email_confirmed_at"))
    with connect(fresh_db, autocommit=True) as conn:
        assert find_problems(conn, migration) == []
    no_up = make(tmp_path, SQL_SPEC, "0302_no_up", up_sql="SELECT 1;\n", down_sql=DOWN,
                 backfill_sql=BACKFILL.replace("email_confirmd_at", "email_confirmed_at"))
    with connect(fresh_db, autocommit=True) as conn:
        shown = [str(p) for p in find_problems(conn, no_up)]
    assert any("backfill.sql:3:" in p and "'email_verified'" in p for p in shown), shown
    assert any("migration.yaml:5: backfill.columns[0]" in p for p in shown), shown


def test_missing_type_and_existing_index_and_column_type_clash(fresh_db, tmp_path):
    migration = make(tmp_path, """\
        description: three mistakes
        table: users
        operations:
          - {op: add_column, column: score, type: scoretype}
          - {op: add_index, name: users_email_key, columns: [email]}
          - {op: add_column, column: country, type: text}
          - {op: add_foreign_key, name: fk_country, columns: [country], references_table: countries, references_columns: [code]}
    """)
    message = refused(fresh_db, migration)
    assert 'migration.yaml:4: operations[0].type: type "scoretype" does not exist' in message
    assert "migration.yaml:5: operations[1].name" in message and "users_email_key already exists" in message
    assert "migration.yaml:6: operations[2].column" in message and "character(2), not text" in message
    assert "migration.yaml:7: operations[3].references_table: table countries does not exist" in message


def test_existing_column_of_the_same_type_and_resumed_runs_are_fine(fresh_db, tmp_path):
    migration = make(tmp_path, """\
        description: idempotent
        table: users
        operations:
          - {op: add_column, column: country, type: "char(2)"}
          - {op: add_index, name: users_email_key, columns: [email]}
    """)
    with connect(fresh_db, autocommit=True) as conn:
        shown = [str(p) for p in find_problems(conn, migration)]
        assert len(shown) == 1 and "users_email_key" in shown[0]  # the column is fine, the index name is not
        state.ensure_schema(conn)
        state.start_history(conn, migration.id, migration.checksum)  # an earlier run made the index: resume
        assert find_problems(conn, migration) == []


def test_a_refused_migration_writes_nothing(fresh_db, tmp_path):
    migration = make(tmp_path, SQL_SPEC, up_sql=UP, down_sql=DOWN, backfill_sql=BACKFILL)
    refused(fresh_db, migration)
    with connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM airmigrate.history").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM airmigrate.runs").fetchone()[0] == 0
        columns = [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'users'::regclass "
                                              "AND attnum > 0 AND NOT attisdropped")]
    assert "email_verified" not in columns
