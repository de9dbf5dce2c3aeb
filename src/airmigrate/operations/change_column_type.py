"""change_column_type: a new column of the new type, kept in sync by a trigger, backfilled, then swapped.

ALTER COLUMN ... TYPE rewrites the table under ACCESS EXCLUSIVE; instead expand adds
`<column>__new`, a trigger converts every write (`using`, default `column::type`), batches
convert the rest, and contract first builds on the new column everything the old one has (indexes
concurrently, constraints NOT VALID then validated, NOT NULL through a validated CHECK: see
:mod:`.carry`), then swaps the names in one short transaction that also gives every index and
constraint its original name back and sets the default, comment, grants and statistics target.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from airmigrate import engines
from airmigrate.operations.base import (
    NAME,
    OpContext,
    OperationModel,
    Steps,
    batch_range,
    cast,
    cast_back_trigger,
    check_expression,
    check_type,
    computed_column_trigger,
    distinct,
    drop_trigger,
    ident,
    placed_after,
    s,
    snapshot_name,
)
from airmigrate.operations.carry import carry_column, collate, probe, refusals as carry_refusals


class ChangeColumnType(OperationModel):
    op: Literal["change_column_type"]
    column: str = Field(..., pattern=NAME)
    type: str
    using: str | None = Field(None, description="Conversion expression over the row; default `column::type`")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return check_type(value)

    @field_validator("using")
    @classmethod
    def _using(cls, value: str | None) -> str | None:
        return value if value is None else check_expression(value)


def swap(ctx: OpContext, old: str, new: str, retired: str, kind: str) -> list[str]:
    """The sync trigger `kind` dropped and `old` -> `retired`, `new` -> `old`: nothing the application writes
    falls between (the engine's way)."""
    return engines.current().swap_columns((ctx.schema, ctx.table), ctx.name(kind), old, new, retired)


def steps(op: ChangeColumnType, ctx: OpContext) -> Steps:
    tbl, old, new = ctx.qualified, ident(op.column), ident(f"{op.column}__new"[:63])
    convert = op.using or cast(s("{c}", c=old), op.type)
    expand = [s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {n} " + op.type + collate(ctx.structure, op.column, op.type)
                + placed_after(op.column), t=tbl, n=new)] + computed_column_trigger(ctx, f"{op.column}__new"[:63], convert)
    backfill = [s("UPDATE {t} SET {n} = " + convert + " WHERE " + batch_range(ctx) + " AND "
                  + distinct(s("{n}", n=new), "(" + convert + ")"), t=tbl, n=new)]
    retired = ident(f"{op.column}__old"[:63])
    carry = carry_column(ctx.structure, op.column, f"{op.column}__new"[:63], op.column, new_type=op.type)
    contract = carry.build + carry.release + swap(ctx, op.column, f"{op.column}__new"[:63],
                                                  f"{op.column}__old"[:63], "sync") + [
        s("ALTER TABLE {t} DROP COLUMN {r}", t=tbl, r=retired),
    ] + carry.finish
    down, down_backfill, down_contract = rollback_steps(op, ctx, old, new)
    return Steps(expand=expand, backfill=backfill, contract=contract, down=down, down_backfill=down_backfill,
                 down_contract=down_contract, dropped_columns=[op.column], self_restored=[op.column],
                 destructive=True)


def rollback_steps(op: ChangeColumnType, ctx: OpContext, old, new) -> tuple[list[str], list[str], list[str]]:
    """Before the contract: drop `<col>__new` (instant). After it, the way up in reverse, never a rewrite:
    `<col>__old` of the original type, a trigger casting back what the application writes meanwhile,
    batches filling the rest (the snapshot's original value where the row existed before the migration,
    else the cast; a slot the trigger filled holds a newer write and is left alone), then the names swap
    in one short transaction."""
    tbl = ctx.qualified
    if not ctx.contracted(f"{op.column}__new"[:63]):
        return drop_trigger(ctx) + [s("ALTER TABLE {t} DROP COLUMN IF EXISTS {n}", t=tbl, n=new)], [], []
    original = ctx.type_of(op.column)
    back_name = f"{op.column}__old"[:63]
    back, retired = ident(back_name), ident(f"{op.column}__rollback"[:63])
    down = drop_trigger(ctx) + [
        s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {b} " + original + collate(ctx.structure, op.column)
          + placed_after(op.column), t=tbl, b=back),
        # only a value the application writes now is cast back; a row it merely touches keeps its slot for
        # the batch, which puts the original value (from the snapshot) there
    ] + cast_back_trigger(ctx, op.column, back_name, original)
    down_backfill = [engines.current().fill_back_from_snapshot(
        (ctx.schema, ctx.table), ctx.key, back_name, op.column, original, ("airmigrate", snapshot_name(ctx.migration_id)))]
    # what the original column had (recorded before the migration) is rebuilt on `<col>__old` first
    carry = carry_column(ctx.structure, op.column, back_name, op.column)
    down_contract = carry.build + carry.release + swap(ctx, op.column, back_name, f"{op.column}__rollback"[:63],
                                                       "back") + [
        s("ALTER TABLE {t} DROP COLUMN {r}", t=tbl, r=retired)] + carry.finish
    return down, down_backfill, down_contract


def refusals(op: ChangeColumnType, structure: dict | None, key: tuple[str, ...]) -> list[str]:
    """What the new column could not take over from the old one (preflight refuses with each reason)."""
    return carry_refusals(structure, [op.column])


def probes(op: ChangeColumnType, structure: dict | None) -> list[tuple[str, list[str]]]:
    """(what, statements) preflight tries on an empty temporary copy: the default, CHECKs and indexes of the
    column must work with the new type."""
    statements = probe(structure, op.column, op.type)
    return [(f"{op.column} as {op.type}", statements)] if statements else []
