"""add_index: CREATE INDEX CONCURRENTLY (no write lock); a failed build's INVALID index is dropped before a retry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from airmigrate.engines import sql
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps, check_expression, ident, s


class AddIndex(OperationModel):
    op: Literal["add_index"]
    name: str = Field(..., pattern=NAME)
    columns: list[str] = Field(..., min_length=1)
    unique: bool = False
    where: str | None = Field(None, description="Partial index predicate")

    @field_validator("where")
    @classmethod
    def _where(cls, value: str | None) -> str | None:
        return value if value is None else check_expression(value)


def create_index(ctx: OpContext, name: str, columns: list[str], unique: bool = False, where: str | None = None) -> str:
    predicate = " WHERE " + where if where else ""
    return s("CREATE " + ("UNIQUE " if unique else "") + "INDEX CONCURRENTLY IF NOT EXISTS {i} ON {t} ({cols})"
             + predicate, i=ident(name), t=ctx.qualified, cols=sql.SQL(", ").join(ident(c) for c in columns))


def drop_index(ctx: OpContext, name: str) -> str:
    return s("DROP INDEX CONCURRENTLY IF EXISTS {i}", i=ident(ctx.schema, name))


def steps(op: AddIndex, ctx: OpContext) -> Steps:
    return Steps(expand=[create_index(ctx, op.name, op.columns, op.unique, op.where)],
                 down=[drop_index(ctx, op.name)])
