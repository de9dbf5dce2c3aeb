"""add_column: nullable column, optional batched backfill kept fresh by a trigger, NOT NULL without a long lock.

Expand adds the column (a constant default is instant since PostgreSQL 11). With `backfill`,
a BEFORE trigger computes it for rows the application writes meanwhile, and the batches fill
the rest. Contract with `not_null`: CHECK (col IS NOT NULL) NOT VALID -> VALIDATE (no write
lock) -> SET NOT NULL (uses the valid check, no scan) -> drop the check; then the trigger goes,
so from the contract on the application writes the column itself (or relies on `default`).
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
    create_trigger,
    drop_trigger,
    ident,
    on_record,
    s,
    trigger_function,
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
        body = s("BEGIN NEW.{c} := " + on_record(op.backfill) + "; RETURN NEW; END", c=col)
        expand += [trigger_function(ctx, body), create_trigger(ctx, "BEFORE INSERT OR UPDATE")]
        backfill = [s("UPDATE {t} SET {c} = " + op.backfill + " WHERE " + batch_range(ctx) +
                      " AND {c} IS DISTINCT FROM (" + op.backfill + ")", t=tbl, c=col)]
    if op.not_null:
        check = ident(f"{op.column}_not_null"[:63])
        contract += [
            s("ALTER TABLE {t} ADD CONSTRAINT {k} CHECK ({c} IS NOT NULL) NOT VALID", t=tbl, k=check, c=col),
            s("ALTER TABLE {t} VALIDATE CONSTRAINT {k}", t=tbl, k=check),
            s("ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL", t=tbl, c=col),
            s("ALTER TABLE {t} DROP CONSTRAINT {k}", t=tbl, k=check),
        ]
    if op.backfill:  # last: until here the trigger fills the column for an application that does not yet
        contract += drop_trigger(ctx)
    down = drop_trigger(ctx) + [s("ALTER TABLE {t} DROP COLUMN IF EXISTS {c}", t=tbl, c=col)]
    return Steps(expand=expand, backfill=backfill, contract=contract, down=down)
