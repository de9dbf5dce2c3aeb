"""add_check: ADD CONSTRAINT ... CHECK NOT VALID (instant), then VALIDATE CONSTRAINT (no write lock)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps, check_expression, ident, s


class AddCheck(OperationModel):
    op: Literal["add_check"]
    name: str = Field(..., pattern=NAME)
    expression: str

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        return check_expression(value)


def add_not_valid_then_validate(ctx: OpContext, name: str, definition: str) -> list[str]:
    """Two statements, two transactions: the ACCESS EXCLUSIVE part is instant, the scan holds a weak lock."""
    return [s("ALTER TABLE {t} ADD CONSTRAINT {c} " + definition + " NOT VALID", t=ctx.qualified, c=ident(name)),
            s("ALTER TABLE {t} VALIDATE CONSTRAINT {c}", t=ctx.qualified, c=ident(name))]


def drop_constraint(ctx: OpContext, name: str) -> str:
    return s("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {c}", t=ctx.qualified, c=ident(name))


def steps(op: AddCheck, ctx: OpContext) -> Steps:
    return Steps(expand=add_not_valid_then_validate(ctx, op.name, f"CHECK ({op.expression})"),
                 down=[drop_constraint(ctx, op.name)])
