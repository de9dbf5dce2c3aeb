"""drop_table: only in the contract step. The table is renamed into the airmigrate schema rather than
dropped, so rollback is instant and lossless; `airmigrate` never deletes it on its own (drop it by hand
once the release is proven)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate.engines import sql
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps, ident, s


class DropTable(OperationModel):
    op: Literal["drop_table"]
    table: str = Field(..., pattern=NAME)


def retired_name(ctx: OpContext, table: str) -> str:
    return f"dropped_{ctx.migration_id}_{table}"[:63]


def steps(op: DropTable, ctx: OpContext) -> Steps:
    retired = retired_name(ctx, op.table)
    return Steps(
        contract=[s("ALTER TABLE {t} RENAME TO {r}", t=ident(ctx.schema, op.table), r=ident(retired)),
                  s("ALTER TABLE {t} SET SCHEMA airmigrate", t=ident(ctx.schema, retired))],
        down=[s("DO $am$ BEGIN IF to_regclass({q}) IS NOT NULL THEN ALTER TABLE {t} SET SCHEMA {sch}; "
                "ALTER TABLE {moved} RENAME TO {r}; END IF; END $am$",
                q=sql.Literal(f'"airmigrate"."{retired}"'), t=ident("airmigrate", retired), sch=ident(ctx.schema),
                moved=ident(ctx.schema, retired), r=ident(op.table))],
        destructive=True)
