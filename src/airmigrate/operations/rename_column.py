"""rename_column: expand adds the new column and a two-way sync trigger; backfill copies; contract drops the old.

While both exist, old and new application versions work side by side: whichever column a
write changes, the trigger copies to the other. Contract (after validation, after the
application reads the new name) builds on the new column everything the old one has (:mod:`.carry`),
then drops the trigger and the old column and gives indexes and constraints their names back.
The default is set only at the contract: during expand a default on the new column would keep the
sync trigger from copying an old-version insert's value into it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate.engines import sql
from airmigrate.operations.base import (
    NAME,
    OpContext,
    OperationModel,
    Steps,
    batch_range,
    create_trigger,
    drop_trigger,
    ident,
    s,
    trigger_function,
)
from airmigrate.operations.carry import carry_column, collate, refusals as carry_refusals


class RenameColumn(OperationModel):
    op: Literal["rename_column"]
    column: str = Field(..., pattern=NAME)
    to: str = Field(..., pattern=NAME)


def two_way_sync_body(old: str, new: str) -> str:
    """On INSERT fill whichever is missing; on UPDATE copy the side that changed."""
    return s(
        "BEGIN "
        "IF TG_OP = 'INSERT' THEN "
        "IF NEW.{n} IS NULL THEN NEW.{n} := NEW.{o}; ELSIF NEW.{o} IS NULL THEN NEW.{o} := NEW.{n}; END IF; "
        "ELSIF NEW.{o} IS DISTINCT FROM OLD.{o} THEN NEW.{n} := NEW.{o}; "
        "ELSIF NEW.{n} IS DISTINCT FROM OLD.{n} THEN NEW.{o} := NEW.{n}; END IF; "
        "RETURN NEW; END", o=ident(old), n=ident(new))


def steps(op: RenameColumn, ctx: OpContext) -> Steps:
    old, new, tbl = ident(op.column), ident(op.to), ctx.qualified
    expand = [s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {n} " + ctx.type_of(op.column)
                + collate(ctx.structure, op.column), t=tbl, n=new),
              trigger_function(ctx, two_way_sync_body(op.column, op.to)),
              create_trigger(ctx, "BEFORE INSERT OR UPDATE")]
    backfill = [s("UPDATE {t} SET {n} = {o} WHERE " + batch_range(ctx) + " AND {n} IS DISTINCT FROM {o}",
                  t=tbl, n=new, o=old)]
    # Everything on the old column would go with it: build it again on the new one first, then take its names.
    carry = carry_column(ctx.structure, op.column, op.to, op.to)
    contract = (carry.build + carry.release + drop_trigger(ctx)
                + [s("ALTER TABLE {t} DROP COLUMN IF EXISTS {o}", t=tbl, o=old)] + carry.finish)
    # Down before contract: drop the copy. After contract the old column is gone: rename the new one back.
    down = drop_trigger(ctx) + [s(
        "DO $am$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = {sch} AND "
        "table_name = {tn} AND column_name = {oc}) THEN ALTER TABLE {t} DROP COLUMN IF EXISTS {n}; "
        "ELSE ALTER TABLE {t} RENAME COLUMN {n} TO {o}; END IF; END $am$",
        sch=sql.Literal(ctx.schema), tn=sql.Literal(ctx.table), oc=sql.Literal(op.column), t=tbl, n=new, o=old)]
    return Steps(expand=expand, backfill=backfill, contract=contract, down=down, destructive=True)


def refusals(op: RenameColumn, structure: dict | None, key: tuple[str, ...]) -> list[str]:
    """What the new column could not take over from the old one (preflight refuses with each reason)."""
    return carry_refusals(structure, [op.column])

