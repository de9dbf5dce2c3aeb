"""The SQL a migration's declared operations generate, resolved against the target's column types."""

from __future__ import annotations

from airmigrate import operations
from airmigrate.operations import Steps
from airmigrate.spec import Migration

SNAPSHOT_PREFIX = "snapshot_"


def column_types(conn, schema: str, table: str) -> dict[str, str]:
    """name -> formatted type (format_type) of a table's live columns."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (f'"{schema}"."{table}"',)).fetchall()
    return dict(rows)


def runtime_steps(conn, migration: Migration) -> Steps:
    """Steps with the column types the table had before the migration changed it (recorded by the backup
    stage), so a rollback after the contract still knows a dropped or retyped column's original type."""
    if not migration.spec.operations:
        return Steps()
    spec = migration.spec
    types = column_types(conn, spec.schema_name, spec.table_name)
    types.update(recorded_column_types(conn, migration.id))
    return operations.for_migration(migration, types)


def recorded_column_types(conn, migration_id: str) -> dict[str, str]:
    if conn.execute("SELECT to_regclass('airmigrate.runs')").fetchone()[0] is None:
        return {}
    row = conn.execute("SELECT facts -> 'column_types' FROM airmigrate.runs WHERE migration_id = %s "
                       "AND direction = 'up' AND facts ? 'column_types' ORDER BY run_id DESC LIMIT 1",
                       (migration_id,)).fetchone()
    return row[0] if row and row[0] else {}


def join_sql(text: str | None, statements: list[str]) -> str:
    """A SQL file's text followed by generated statements, as one script for the executor."""
    parts = [text.strip().rstrip(";")] if text and text.strip() else []
    return ";\n".join(parts + statements) + (";\n" if parts or statements else "")
