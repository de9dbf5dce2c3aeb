"""add_column: nullable column, optional batched backfill kept fresh by a trigger, NOT NULL without a long lock.

Expand adds the column (a constant default is instant since PostgreSQL 11; MySQL: ALGORITHM=INSTANT). With
`backfill`, a BEFORE trigger computes it for rows the application writes meanwhile, and the batches fill
the rest. Contract with `not_null`: the engine's NOT NULL without a long lock (PostgreSQL: CHECK (col IS NOT NULL)
NOT VALID -> VALIDATE (no write lock) -> SET NOT NULL (uses the valid check, no scan) -> drop the check; MySQL:
one MODIFY COLUMN in place, writes going on); then the trigger goes, so from the contract on the application
writes the column itself (or relies on `default`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from airmigrate.engines import sql
from airmigrate.operations.base import (
    NAME,
    OpContext,
    OperationModel,
    Steps,
    batch_range,
    check_expression,
    check_type,
    computed_column_trigger,
    distinct,
    drop_trigger,
    ident,
    s,
    set_not_null,
)


class AddColumn(OperationModel):
    op: Literal["add_column"]
    column: str = Field(..., pattern=NAME)
    type: str = Field(..., description="PostgreSQL type, e.g. boolean, bigint, numeric(12,2)")
    default: str | None = Field(None, description="Constant default for new rows (an expression: FALSE, 0, 'x')")
    backfill: str | None = Field(None, description="Expression over the row computing the value, e.g. "
                                                    "email_confirmed_at IS NOT NULL")
    not_null: bool = Field(False, description="Make it NOT NULL in the contract step (needs default or backfill)")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return check_type(value)

    @field_validator("default", "backfill")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return value if value is None else check_expression(value)


def steps(op: AddColumn, ctx: OpContext) -> Steps:
    col, tbl = ident(op.column), ctx.qualified
    default = sql.SQL(" DEFAULT {}").format(sql.SQL(op.default)) if op.default else sql.SQL("")
    expand = [s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} " + op.type + "{d}", t=tbl, c=col, d=default)]
    backfill, contract = [], []
    if op.backfill:
        expand += computed_column_trigger(ctx, op.column, op.backfill)
        backfill = [s("UPDATE {t} SET {c} = " + op.backfill + " WHERE " + batch_range(ctx) + " AND "
                      + distinct(s("{c}", c=col), "(" + op.backfill + ")"), t=tbl, c=col)]
    if op.not_null:
        contract += set_not_null(ctx, op.column, op.type, op.default)
    if op.backfill:  # last: until here the trigger fills the column for an application that does not yet
        contract += drop_trigger(ctx)
    down = drop_trigger(ctx) + [s("ALTER TABLE {t} DROP COLUMN IF EXISTS {c}", t=tbl, c=col)]
    return Steps(expand=expand, backfill=backfill, contract=contract, down=down)
