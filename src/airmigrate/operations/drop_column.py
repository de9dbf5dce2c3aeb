"""drop_column: only in the contract step; the backup snapshot keeps (key, value) so rollback can restore it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps, ident, s


class DropColumn(OperationModel):
    op: Literal["drop_column"]
    column: str = Field(..., pattern=NAME)


def steps(op: DropColumn, ctx: OpContext) -> Steps:
    col = ident(op.column)
    return Steps(contract=[s("ALTER TABLE {t} DROP COLUMN IF EXISTS {c}", t=ctx.qualified, c=col)],
                 down=[s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} " + ctx.type_of(op.column),
                         t=ctx.qualified, c=col)],
                 dropped_columns=[op.column], destructive=True)
