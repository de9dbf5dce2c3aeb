"""add_index: an index built without blocking writes (PostgreSQL: CREATE INDEX CONCURRENTLY, a failed build's
INVALID index dropped before a retry; MySQL: the server's online ADD INDEX). The SQL is the engine's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from airmigrate import engines
from airmigrate.errors import FieldProblem
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps, check_expression


class AddIndex(OperationModel):
    op: Literal["add_index"]
    name: str = Field(..., pattern=NAME)
    columns: list[str] = Field(..., min_length=1)
    unique: bool = False
    where: str | None = Field(None, description="Partial index predicate")

    @field_validator("where")
    @classmethod
    def _where(cls, value: str | None) -> str | None:
        if value is None:
            return value
        refusal = engines.current().partial_index_refusal()
        if refusal is not None:
            raise FieldProblem(*refusal)
        return check_expression(value)


def create_index(ctx: OpContext, name: str, columns: list[str], unique: bool = False, where: str | None = None) -> str:
    return engines.current().create_index_sql(ctx.schema, ctx.table, name, columns, unique, where)


def drop_index(ctx: OpContext, name: str) -> str:
    return engines.current().drop_index_sql(ctx.schema, ctx.table, name)


def steps(op: AddIndex, ctx: OpContext) -> Steps:
    return Steps(expand=[create_index(ctx, op.name, op.columns, op.unique, op.where)],
                 down=[drop_index(ctx, op.name)])
