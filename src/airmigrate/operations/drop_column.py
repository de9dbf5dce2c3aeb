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


def steps(op: DropColumn, ctx: OpContext) -> Steps:
    col = ident(op.column)
    down, down_contract = engines.current().restore_dropped_column((ctx.schema, ctx.table), op.column,
                                                                   ctx.type_of(op.column), ctx.structure)
    return Steps(contract=[s("ALTER TABLE {t} DROP COLUMN IF EXISTS {c}", t=ctx.qualified, c=col)],
                 down=down, down_contract=down_contract, dropped_columns=[op.column], destructive=True)
