"""Zero-downtime patterns declared in migration.yaml (`operations:`), one module each.

Each module holds the operation's pydantic model and ``steps(op, ctx) -> Steps``: the SQL of
its expand, per-batch backfill, contract and down phases. The stages run those steps through
the same executor, lint and state tracking as raw SQL files.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from airmigrate.operations import (
    add_check,
    add_column,
    add_foreign_key,
    add_index,
    add_unique,
    change_column_type,
    create_table,
    delete_rows,
    drop_column,
    drop_table,
    move_rows,
    rename_column,
    rename_table,
    split_table,
)
from airmigrate.operations.base import OpContext, Steps

MODULES = {
    "add_column": add_column, "rename_column": rename_column, "split_table": split_table,
    "change_column_type": change_column_type, "add_index": add_index, "add_foreign_key": add_foreign_key,
    "add_check": add_check, "add_unique": add_unique, "drop_column": drop_column, "drop_table": drop_table,
    "delete_rows": delete_rows, "move_rows": move_rows,
    "rename_table": rename_table, "rename_index": rename_table, "rename_constraint": rename_table,
    "create_table": create_table,
}

# operations that delete or move whole rows: alone in their migration (spec), walked back over their archive
ROW_OPERATIONS = ("delete_rows", "move_rows")

Operation = Annotated[Union[
    add_column.AddColumn, rename_column.RenameColumn, split_table.SplitTable,
    change_column_type.ChangeColumnType, add_index.AddIndex, add_foreign_key.AddForeignKey,
    add_check.AddCheck, add_unique.AddUnique, drop_column.DropColumn, drop_table.DropTable,
    delete_rows.DeleteRows, move_rows.MoveRows, rename_table.RenameTable, rename_table.RenameIndex,
    rename_table.RenameConstraint, create_table.CreateTable,
], Field(discriminator="op")]


def steps_for(op, ctx: OpContext) -> Steps:
    return MODULES[op.op].steps(op, ctx)


def combined(operations, make_context) -> Steps:
    """All operations' steps in declaration order (down in reverse order)."""
    parts = [steps_for(op, make_context(i)) for i, op in enumerate(operations)]
    return Steps(
        expand=[sql for p in parts for sql in p.expand],
        backfill=[sql for p in parts for sql in p.backfill],
        contract=[sql for p in parts for sql in p.contract],
        down=[sql for p in reversed(parts) for sql in p.down],
        down_backfill=[sql for p in reversed(parts) for sql in p.down_backfill],
        down_contract=[sql for p in reversed(parts) for sql in p.down_contract],
        backfill_columns=[c for p in parts for c in p.backfill_columns],
        dropped_columns=[c for p in parts for c in p.dropped_columns],
        self_restored=[c for p in parts for c in p.self_restored],
        destructive=any(p.destructive for p in parts),
        down_walk=next((p.down_walk for p in parts if p.down_walk), None),
        vacuum_dead_tuples=min((p.vacuum_dead_tuples for p in parts if p.vacuum_dead_tuples), default=None),
        sweep=next((p.sweep for p in parts if p.sweep), None),  # delete_rows / move_rows: the only operation
    )


__all__ = ["Operation", "ROW_OPERATIONS", "OpContext", "Steps", "steps_for", "combined", "for_migration", "MODULES", "refusals",
           "probes"]


def probes(migration, structure: dict | None) -> list[tuple[str, list[str]]]:
    """(what, statements) that must succeed on an empty temporary copy of the table for the operations to be
    able to carry its structure over (preflight runs each in a transaction it rolls back)."""
    out = []
    for op in migration.spec.operations:
        check = getattr(MODULES[op.op], "probes", None)
        if check is not None:
            out += check(op, structure)
    return out


def refusals(migration, structure: dict | None) -> list[str]:
    """What the migration's operations cannot carry over from the table as it is (`structure`): each reason
    with its fix. Preflight refuses the migration when there is any."""
    out = []
    for op in migration.spec.operations:
        check = getattr(MODULES[op.op], "refusals", None)
        if check is not None:
            out += check(op, structure, migration.spec.key_columns)
    return out


def for_migration(migration, column_types: dict[str, str] | None = None,
                  live_columns: frozenset[str] | None = None,
                  structure: dict | None = None) -> Steps:
    """The migration's operations as steps; without column types (lint, plan, docs) types read as `text`, and
    without `structure` (the table's catalog definition) nothing is carried over to replacement columns."""
    spec = migration.spec

    def context(index: int) -> OpContext:
        return OpContext(migration.id, index, spec.schema_name, spec.table_name, spec.key, column_types or {},
                         live_columns, structure)

    return combined(spec.operations, context)
