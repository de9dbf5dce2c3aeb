"""change_column_type: a new column of the new type, kept in sync by a trigger, backfilled, then swapped.

ALTER COLUMN ... TYPE rewrites the table under ACCESS EXCLUSIVE; instead expand adds
`<column>__new`, a trigger converts every write (`using`, default `column::type`), batches
convert the rest, and contract swaps the names in one short transaction.
"""

from __future__ import annotations

from typing import Literal

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, field_validator

from airmigrate.operations.base import (NAME, OpContext, Steps, batch_range, check_expression, check_type,
                                        create_trigger, drop_trigger, ident, on_record, s, trigger_function)


class ChangeColumnType(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    op: Literal["change_column_type"]
    column: str = Field(..., pattern=NAME)
    type: str
    using: str | None = Field(None, description="Conversion expression over the row; default `column::type`")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return check_type(value)

    @field_validator("using")
    @classmethod
    def _using(cls, value: str | None) -> str | None:
        return value if value is None else check_expression(value)


def steps(op: ChangeColumnType, ctx: OpContext) -> Steps:
    tbl, old, new = ctx.qualified, ident(op.column), ident(f"{op.column}__new"[:63])
    convert = op.using or s("{c}::" + op.type, c=old)
    expand = [s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {n} " + op.type, t=tbl, n=new),
              trigger_function(ctx, s("BEGIN NEW.{n} := " + on_record(convert) + "; RETURN NEW; END", n=new)),
              create_trigger(ctx, "BEFORE INSERT OR UPDATE")]
    backfill = [s("UPDATE {t} SET {n} = " + convert + " WHERE " + batch_range(ctx) +
                  " AND {n} IS DISTINCT FROM (" + convert + ")", t=tbl, n=new)]
    retired = ident(f"{op.column}__old"[:63])
    contract = drop_trigger(ctx) + [
        s("ALTER TABLE {t} RENAME COLUMN {o} TO {r}", t=tbl, o=old, r=retired),
        s("ALTER TABLE {t} RENAME COLUMN {n} TO {o}", t=tbl, n=new, o=old),
        s("ALTER TABLE {t} DROP COLUMN {r}", t=tbl, r=retired),
    ]
    down = drop_trigger(ctx) + [s(
        "DO $am$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = {sch} AND "
        "table_name = {tn} AND column_name = {nc}) THEN ALTER TABLE {t} DROP COLUMN {n}; "
        "ELSE ALTER TABLE {t} ALTER COLUMN {o} TYPE " + ctx.type_of(op.column) + "; END IF; END $am$",
        sch=sql.Literal(ctx.schema), tn=sql.Literal(ctx.table), nc=sql.Literal(f"{op.column}__new"[:63]),
        t=tbl, n=new, o=old)]
    return Steps(expand=expand, backfill=backfill, contract=contract, down=down, destructive=True)
