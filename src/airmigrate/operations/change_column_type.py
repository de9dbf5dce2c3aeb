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

from airmigrate.operations.base import (
    NAME,
    OpContext,
    OperationModel,
    Steps,
    batch_range,
    check_expression,
    check_type,
    create_trigger,
    drop_trigger,
    ident,
    on_record,
    s,
    snapshot_name,
    trigger_function,
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


def steps(op: ChangeColumnType, ctx: OpContext) -> Steps:
    tbl, old, new = ctx.qualified, ident(op.column), ident(f"{op.column}__new"[:63])
    convert = op.using or s("{c}::" + op.type, c=old)
    expand = [s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {n} " + op.type + collate(ctx.structure, op.column, op.type),
                t=tbl, n=new),
              trigger_function(ctx, s("BEGIN NEW.{n} := " + on_record(convert) + "; RETURN NEW; END", n=new)),
              create_trigger(ctx, "BEFORE INSERT OR UPDATE")]
    backfill = [s("UPDATE {t} SET {n} = " + convert + " WHERE " + batch_range(ctx) +
                  " AND {n} IS DISTINCT FROM (" + convert + ")", t=tbl, n=new)]
    retired = ident(f"{op.column}__old"[:63])
    carry = carry_column(ctx.structure, op.column, f"{op.column}__new"[:63], op.column)
    contract = carry.build + carry.release + drop_trigger(ctx) + [
        s("ALTER TABLE {t} RENAME COLUMN {o} TO {r}", t=tbl, o=old, r=retired),
        s("ALTER TABLE {t} RENAME COLUMN {n} TO {o}", t=tbl, n=new, o=old),
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
    back, retired = ident(f"{op.column}__old"[:63]), ident(f"{op.column}__rollback"[:63])
    down = drop_trigger(ctx) + [
        s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {b} " + original + collate(ctx.structure, op.column), t=tbl,
          b=back),
        # only a value the application writes now is cast back; a row it merely touches keeps its slot for
        # the batch, which puts the original value (from the snapshot) there
        trigger_function(ctx, s("BEGIN IF TG_OP = 'INSERT' OR NEW.{o} IS DISTINCT FROM OLD.{o} THEN NEW.{b} := NEW.{o}::"
                                + original + "; END IF; RETURN NEW; END", b=back, o=old), kind="back"),
        create_trigger(ctx, "BEFORE INSERT OR UPDATE", kind="back")]
    key, snap = ident(ctx.key), ident("airmigrate", snapshot_name(ctx.migration_id))
    down_backfill = [s(
        "UPDATE {t} AS t SET {b} = v.value FROM (SELECT x.{k}, CASE WHEN s.{k} IS NULL THEN x.{o}::" + original +
        " ELSE s.{o} END AS value FROM {t} AS x LEFT JOIN {snap} AS s ON s.{k} = x.{k} WHERE " +
        batch_range(ctx, "x") + ") AS v WHERE t.{k} = v.{k} AND " + batch_range(ctx, "t") +
        " AND t.{b} IS NULL AND v.value IS NOT NULL", t=tbl, b=back, k=key, o=old, snap=snap)]
    # what the original column had (recorded before the migration) is rebuilt on `<col>__old` first
    carry = carry_column(ctx.structure, op.column, f"{op.column}__old"[:63], op.column)
    down_contract = carry.build + carry.release + drop_trigger(ctx, kind="back") + [
        s("ALTER TABLE {t} RENAME COLUMN {o} TO {r}", t=tbl, o=old, r=retired),
        s("ALTER TABLE {t} RENAME COLUMN {b} TO {o}", t=tbl, b=back, o=old),
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
