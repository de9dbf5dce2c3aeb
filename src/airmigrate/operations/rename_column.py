"""rename_column: expand adds the new column and a two-way sync trigger; backfill copies; contract drops the old.

While both exist, old and new application versions work side by side: whichever column a
write changes, the trigger copies to the other. Contract (after validation, after the
application reads the new name) builds on the new column everything the old one has (:mod:`.carry`; MySQL: the
engine's own carry, indexes online and one MODIFY COLUMN),
then drops the trigger and the old column and gives indexes and constraints their names back.
The default is set only at the contract: during expand a default on the new column would keep the
sync trigger from copying an old-version insert's value into it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate import engines
from airmigrate.operations.base import (
    NAME,
    OpContext,
    OperationModel,
    Steps,
    batch_range,
    distinct,
    drop_trigger,
    ident,
    placed_after,
    s,
    two_way_sync_trigger,
)
from airmigrate.operations.carry import carry_column, collate, refusals as carry_refusals


class RenameColumn(OperationModel):
    op: Literal["rename_column"]
    column: str = Field(..., pattern=NAME)
    to: str = Field(..., pattern=NAME)


def steps(op: RenameColumn, ctx: OpContext) -> Steps:
    old, new, tbl = ident(op.column), ident(op.to), ctx.qualified
    expand = ([s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {n} " + ctx.type_of(op.column)
                + collate(ctx.structure, op.column) + placed_after(op.column), t=tbl, n=new)]
              + two_way_sync_trigger(ctx, op.column, op.to))
    backfill = [s("UPDATE {t} SET {n} = {o} WHERE " + batch_range(ctx) + " AND "
                  + distinct(s("{n}", n=new), s("{o}", o=old)), t=tbl, n=new, o=old)]
    # Everything on the old column would go with it: build it again on the new one first, then take its names.
    carry = carry_column(ctx.structure, op.column, op.to, op.to)
    contract = (carry.build + carry.release + drop_trigger(ctx)
                + [s("ALTER TABLE {t} DROP COLUMN IF EXISTS {o}", t=tbl, o=old)] + carry.finish)
    # Down before contract: drop the copy. After contract the old column is gone: rename the new one back.
    down = drop_trigger(ctx) + engines.current().drop_or_rename_back((ctx.schema, ctx.table), op.column, op.to,
                                                                      ctx.live_columns)
    return Steps(expand=expand, backfill=backfill, contract=contract, down=down, destructive=True)


def refusals(op: RenameColumn, structure: dict | None, key: tuple[str, ...]) -> list[str]:
    """What the new column could not take over from the old one (preflight refuses with each reason)."""
    return carry_refusals(structure, [op.column])

