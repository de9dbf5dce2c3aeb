"""drop_column: only in the contract step; the backup snapshot keeps (key, value) so rollback can restore it.

The rollback adds the column back empty (the engine's way: MySQL puts it where it was, with its definition, and
makes it NOT NULL again once the snapshot's values are back), then the batches restore the values."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate import engines
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps, ident, s


class DropColumn(OperationModel):
    op: Literal["drop_column"]
    column: str = Field(..., pattern=NAME)


def refusals(op: DropColumn, structure: dict | None, key: tuple[str, ...]) -> list[str]:
    """What reads the column (a view, PostgreSQL's generated columns and column triggers): PostgreSQL's DROP COLUMN
    would fail at the contract, after the whole run; MySQL's succeeds and leaves such a view broken. Refused before
    anything runs, with the fix."""
    if not structure:
        return []
    table = f"{structure['schema']}.{structure['table']}"
    return [f"{what} reads {table}.{op.column}: dropping the column would break it or fail at the contract. "
            f"Drop {what} or change it not to read {op.column} first, in an earlier migration"
            for what in structure.get("dependents", {}).get(op.column, [])]


def steps(op: DropColumn, ctx: OpContext) -> Steps:
    col = ident(op.column)
    down, down_contract = engines.current().restore_dropped_column((ctx.schema, ctx.table), op.column,
                                                                   ctx.type_of(op.column), ctx.structure)
    return Steps(contract=[s("ALTER TABLE {t} DROP COLUMN IF EXISTS {c}", t=ctx.qualified, c=col)],
                 down=down, down_contract=down_contract, dropped_columns=[op.column], destructive=True)
