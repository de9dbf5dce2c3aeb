"""add_foreign_key: ADD CONSTRAINT ... FOREIGN KEY NOT VALID, then VALIDATE CONSTRAINT."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate.engines import sql
from airmigrate.operations.add_check import add_not_valid_then_validate, drop_constraint
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps, ident


class AddForeignKey(OperationModel):
    op: Literal["add_foreign_key"]
    name: str = Field(..., pattern=NAME)
    columns: list[str] = Field(..., min_length=1)
    references_table: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$")
    references_columns: list[str] = Field(..., min_length=1)
    on_delete: Literal["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"] = "NO ACTION"


def steps(op: AddForeignKey, ctx: OpContext) -> Steps:
    definition = sql.SQL("FOREIGN KEY ({cols}) REFERENCES {ref} ({refcols}) ON DELETE " + op.on_delete).format(
        cols=sql.SQL(", ").join(ident(c) for c in op.columns),
        ref=ident(*op.references_table.split(".")),
        refcols=sql.SQL(", ").join(ident(c) for c in op.references_columns)).as_string(None)
    return Steps(expand=add_not_valid_then_validate(ctx, op.name, definition), down=[drop_constraint(ctx, op.name)])
