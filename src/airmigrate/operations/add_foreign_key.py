"""add_foreign_key: enforced for every write at once, existing rows proven without blocking writes. PostgreSQL:
ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT. MySQL: added in place with the checks off for that one
statement, then a batched anti-join proves no orphan exists (or fails naming them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate import engines
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps


class AddForeignKey(OperationModel):
    op: Literal["add_foreign_key"]
    name: str = Field(..., pattern=NAME)
    columns: list[str] = Field(..., min_length=1)
    references_table: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$")
    references_columns: list[str] = Field(..., min_length=1)
    on_delete: Literal["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"] = "NO ACTION"


def steps(op: AddForeignKey, ctx: OpContext) -> Steps:
    engine = engines.current()
    return Steps(expand=engine.add_foreign_key_sql(ctx.schema, ctx.table, op.name, op.columns,
                                                   tuple(op.references_table.split(".")), op.references_columns,
                                                   op.on_delete, ctx.key, ctx.column_types.get(ctx.key, "text")),
                 down=[engine.drop_foreign_key_sql(ctx.schema, ctx.table, op.name)])
