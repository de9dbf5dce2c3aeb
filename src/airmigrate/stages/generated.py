"""The SQL a migration's declared operations generate, resolved against the target's column types."""

from __future__ import annotations

from airmigrate import engines, operations, structure
from airmigrate.db import split_statements
from airmigrate.engines import sql
from airmigrate.operations import Steps
from airmigrate.operations.base import SNAPSHOT_PREFIX  # noqa: F401  (re-exported)
from airmigrate.spec import Migration


def column_types(conn, schema: str, table: str) -> dict[str, str]:
    """name -> the type the engine spells (format_type, MySQL's COLUMN_TYPE) of a table's live columns."""
    return engines.of(conn).column_types(conn, schema, table)


def runtime_steps(conn, migration: Migration, live_columns: frozenset[str] | None = None) -> Steps:
    """Steps with the column types the table had before the migration changed it (recorded by the backup
    stage), so a rollback after the contract still knows a dropped or retyped column's original type.
    `live_columns` (a rollback's view of the table) picks each operation's rollback path."""
    if not migration.spec.operations:
        return Steps()
    spec = migration.spec
    types = column_types(conn, spec.schema_name, spec.table_name)
    types.update(recorded_column_types(conn, migration.id))
    return operations.for_migration(migration, types, live_columns, table_structure(conn, migration))


def table_structure(conn, migration: Migration) -> dict | None:
    """The table as it was before the migration (recorded by the backup stage of the run not rolled back), so a
    contract or a rollback after the contract carries over what the original column had; the live table
    before the first run and after a rollback (it may have changed since)."""
    return recorded_fact(conn, migration.id, "structure", active=True) or structure.read_table(
        conn, migration.spec.schema_name, migration.spec.table_name)


def rollback_steps(conn, migration: Migration, run_id: int) -> Steps:
    """The rollback run's steps, from the table's shape recorded when that run started: its down, batches
    and down_contract phases must agree even though the down phase changes the table in between."""
    recorded = engines.of(conn).state_sql().live_columns(conn, run_id)
    live = frozenset(recorded) if recorded is not None else None
    return runtime_steps(conn, migration, live)


def restore_statement(migration: Migration, snapshot: str, columns: list[str]) -> str | None:
    """Per batch: put the snapshot's values of `columns` back where they differ (the key range bounded on
    both sides, like every batch)."""
    if not columns:
        return None
    keys = migration.spec.key_columns
    if len(keys) == 1:
        bounds = sql.SQL("t.{k} BETWEEN %(lo)s AND %(hi)s").format(k=sql.Identifier(keys[0]))
    else:
        row = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in keys)
        lo = sql.SQL(", ").join(sql.SQL(f"%(lo_{i})s") for i in range(len(keys)))
        hi = sql.SQL(", ").join(sql.SQL(f"%(hi_{i})s") for i in range(len(keys)))
        bounds = sql.SQL("({}) BETWEEN ({}) AND ({})").format(row, lo, hi)
    engine = engines.current()
    changed = " OR ".join(engine.distinct(sql.SQL("t.{c}").format(c=sql.Identifier(c)).as_string(None),
                                          sql.SQL("s.{c}").format(c=sql.Identifier(c)).as_string(None))
                          for c in columns)
    return engine.update_joined((migration.spec.schema_name, migration.spec.table_name),
                                sql.Identifier("airmigrate", snapshot), list(keys),
                                [(c, sql.SQL("s.{c}").format(c=sql.Identifier(c)).as_string(None)) for c in columns],
                                bounds.as_string(None) + " AND (" + changed + ")")


def snapshot_columns(conn, migration: Migration, snapshot: str | None) -> list[str]:
    """The value columns of the rollback snapshot (empty when there is none)."""
    if not snapshot:
        return []
    names = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'airmigrate' AND table_name = %s "
        "ORDER BY ordinal_position", (snapshot,)).fetchall()]
    return [name for name in names if name not in migration.spec.key_columns]


def down_batch_statements(conn, migration: Migration, run_id: int) -> list[str]:
    """What a rollback's batches run: the operations' copy-back, then the snapshot's overwritten values."""
    steps = rollback_steps(conn, migration, run_id)
    row = conn.execute("SELECT snapshot_table FROM airmigrate.history WHERE migration_id = %s",
                       (migration.id,)).fetchone()
    snapshot = row[0] if row else None
    restore = restore_statement(migration, snapshot, [c for c in snapshot_columns(conn, migration, snapshot)
                                                      if c not in steps.self_restored]) if snapshot else None
    return steps.down_backfill + ([restore] if restore else [])


def recorded_column_types(conn, migration_id: str) -> dict[str, str]:
    return recorded_fact(conn, migration_id, "column_types") or {}


def recorded_fact(conn, migration_id: str, name: str, active: bool = False):
    """A fact the newest up run of the migration recorded (the backup stage's view of the table before it);
    `active`: only from a run not rolled back yet."""
    statements = engines.of(conn).state_sql()
    if not statements.state_table_exists(conn, "runs"):
        return None
    return statements.recorded_fact(conn, migration_id, name, active) or None


def join_sql(text: str | None, statements: list[str]) -> str:
    """A SQL file's text followed by generated statements, as one script for the executor."""
    has_sql = bool(text and text.strip() and split_statements(text))  # a comment-only file adds nothing
    parts = [text.strip().rstrip(";")] if has_sql else []
    return ";\n".join(parts + statements) + (";\n" if parts or statements else "")
