"""add_unique: a unique constraint whose index is built without blocking writes (PostgreSQL: CONCURRENTLY, then
ADD CONSTRAINT ... UNIQUE USING INDEX, instant; MySQL: a unique index is the constraint, added online)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate import engines
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps


class AddUnique(OperationModel):
    op: Literal["add_unique"]
    name: str = Field(..., pattern=NAME)
    columns: list[str] = Field(..., min_length=1)


def steps(op: AddUnique, ctx: OpContext) -> Steps:
    engine = engines.current()
    return Steps(expand=engine.add_unique_sql(ctx.schema, ctx.table, op.name, op.columns),
                 down=engine.drop_unique_sql(ctx.schema, ctx.table, op.name))
