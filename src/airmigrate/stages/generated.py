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
    """Steps with real column types: the table's, plus the snapshot's for columns a contract dropped."""
    if not migration.spec.operations:
        return Steps()
    spec = migration.spec
    types = column_types(conn, "airmigrate", f"{SNAPSHOT_PREFIX}{migration.id}"[:63])
    types.update(column_types(conn, spec.schema_name, spec.table_name))
    return operations.for_migration(migration, types)


def join_sql(text: str | None, statements: list[str]) -> str:
    """A SQL file's text followed by generated statements, as one script for the executor."""
    parts = [text.strip().rstrip(";")] if text and text.strip() else []
    return ";\n".join(parts + statements) + (";\n" if parts or statements else "")
