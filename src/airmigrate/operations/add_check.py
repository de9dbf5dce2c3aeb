"""add_check: a CHECK constraint without blocking writes. PostgreSQL: ADD CONSTRAINT ... NOT VALID (instant), then
VALIDATE CONSTRAINT (no write lock). MySQL can only add one by copying the table: preflight refuses it quoting the
server, unless the migration says `executor: pt-osc`, which runs it on a shadow copy online."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from airmigrate import engines
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps, check_expression


class AddCheck(OperationModel):
    op: Literal["add_check"]
    name: str = Field(..., pattern=NAME)
    expression: str

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        return check_expression(value)


def steps(op: AddCheck, ctx: OpContext) -> Steps:
    engine = engines.current()
    return Steps(expand=engine.add_check_sql(ctx.schema, ctx.table, op.name, op.expression),
                 down=[engine.drop_check_sql(ctx.schema, ctx.table, op.name)])
