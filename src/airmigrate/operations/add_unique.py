"""add_unique: a unique index built CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX (instant)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate.operations.add_check import drop_constraint
from airmigrate.operations.add_index import create_index, drop_index
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps, ident, s


class AddUnique(OperationModel):
    op: Literal["add_unique"]
    name: str = Field(..., pattern=NAME)
    columns: list[str] = Field(..., min_length=1)


def steps(op: AddUnique, ctx: OpContext) -> Steps:
    return Steps(
        expand=[create_index(ctx, op.name, op.columns, unique=True),
                s("ALTER TABLE {t} ADD CONSTRAINT {c} UNIQUE USING INDEX {c}", t=ctx.qualified, c=ident(op.name))],
        down=[drop_constraint(ctx, op.name), drop_index(ctx, op.name)])
