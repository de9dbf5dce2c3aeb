"""drop_table: only in the contract step. The table is moved into airmigrate's schema (MySQL: database) rather than
dropped, so rollback is instant and lossless; `airmigrate` never deletes it on its own (drop it by hand once the
release is proven). The SQL is the engine's (PostgreSQL: RENAME + SET SCHEMA; MySQL: one RENAME TABLE)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate import engines
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps


class DropTable(OperationModel):
    op: Literal["drop_table"]
    table: str = Field(..., pattern=NAME)


def retired_name(ctx: OpContext, table: str) -> str:
    return f"dropped_{ctx.migration_id}_{table}"[:63]


def steps(op: DropTable, ctx: OpContext) -> Steps:
    phases = engines.current().retire_table_sql(ctx.schema, op.table, retired_name(ctx, op.table))
    return Steps(contract=phases["contract"], down=phases["down"], destructive=True)
