"""split_table: move columns to a new table keyed like the old one, kept in sync by a trigger.

Expand creates the new table and an AFTER trigger on the old one mirroring inserts, updates
and deletes, and builds on the new table everything the moved columns have (:mod:`.carry`: indexes,
CHECKs, UNIQUE, foreign keys, NOT NULL, under temporary names while the originals hold theirs);
batches copy existing rows (INSERT ... ON CONFLICT DO UPDATE, safe to re-run); contract drops the
trigger and the moved columns from the old table, then gives the new table's indexes and constraints
the original names and sets defaults, comments, grants and statistics targets.

An engine may write all of it its own way (``Engine.split_table_sql``; MySQL: a trigger per event, ON DUPLICATE
KEY UPDATE, engines/mysql/op_split.py): the statements below are PostgreSQL's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate import engines
from airmigrate.engines import sql
from airmigrate.engines.operation_sql import SplitJob
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
from airmigrate.operations.carry import Carry, carry_column, collate, refusals as carry_refusals


class SplitTable(OperationModel):
    op: Literal["split_table"]
    new_table: str = Field(..., pattern=NAME)
    columns: list[str] = Field(..., min_length=1)


def steps(op: SplitTable, ctx: OpContext) -> Steps:
    own = engines.current().split_table_sql(job(op, ctx))
    if own is not None:  # the engine's own way (MySQL: a trigger per event, ON DUPLICATE KEY UPDATE)
        return Steps(**own, destructive=True)
    tbl, new, key = ctx.qualified, ident(ctx.schema, op.new_table), ident(ctx.key)
    cols = [ident(c) for c in op.columns]
    col_list = sql.SQL(", ").join(cols)
    defs = sql.SQL(", ").join(sql.SQL("{} " + ctx.type_of(c) + collate(ctx.structure, c)).format(ident(c))
                              for c in op.columns)
    sets = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=c) for c in cols)
    new_vals = sql.SQL(", ").join(sql.SQL("NEW.{}").format(c) for c in [key, *cols])
    body = s("BEGIN "
             "IF TG_OP = 'DELETE' THEN DELETE FROM {n} WHERE {k} = OLD.{k}; RETURN OLD; END IF; "
             "INSERT INTO {n} ({k}, {cl}) VALUES ({nv}) ON CONFLICT ({k}) DO UPDATE SET {sets}; "
             "RETURN NEW; END", n=new, k=key, cl=col_list, nv=new_vals, sets=sets)
    moved = carried(op, ctx, (ctx.schema, op.new_table))
    expand = [s("CREATE TABLE IF NOT EXISTS {n} ({k} " + ctx.type_of(ctx.key) + " PRIMARY KEY, {defs})",
                n=new, k=key, defs=defs),
              trigger_function(ctx, body),
              create_trigger(ctx, "AFTER INSERT OR UPDATE OR DELETE")] + moved.build
    # FOR SHARE: a concurrent update of a source row waits for this batch, so its trigger copy lands after
    # ours; without it the batch could write back a value read before that update (a lost update).
    backfill = [s("INSERT INTO {n} ({k}, {cl}) SELECT {k}, {cl} FROM {t} WHERE " + batch_range(ctx) +
                  " FOR SHARE ON CONFLICT ({k}) DO UPDATE SET {sets}", n=new, k=key, cl=col_list, t=tbl,
                  sets=sets)]
    contract = drop_trigger(ctx) + moved.release + [
        s("ALTER TABLE {t} DROP COLUMN IF EXISTS {c}", t=tbl, c=c) for c in cols] + moved.finish
    down, down_backfill, down_contract = rollback_steps(op, ctx)
    return Steps(expand=expand, backfill=backfill, contract=contract, down=down, down_backfill=down_backfill,
                 down_contract=down_contract, destructive=True)


def job(op: SplitTable, ctx: OpContext) -> SplitJob:
    """What an engine writing its own steps needs to know (engines.operation_sql.SplitJob)."""
    return SplitJob((ctx.schema, ctx.table), op.new_table, ctx.key, tuple(op.columns),
                    {c: ctx.type_of(c) for c in (ctx.key, *op.columns)}, ctx.structure, ctx.name("sync"),
                    ctx.name("back"), ctx.contracted(op.columns[0]))


def carried(op: SplitTable, ctx: OpContext, table: tuple[str, str] | None) -> Carry:
    """Everything the moved columns had, built on `table` (None: back on the original table); an object using
    several moved columns is built once."""
    carry = Carry()
    for column in op.columns:
        part = carry_column(ctx.structure, column, column, column, table, extra_columns=(*op.columns, ctx.key))
        carry.build += part.build
        carry.release += part.release
        carry.finish += part.finish
    return Carry(*(list(dict.fromkeys(part)) for part in (carry.build, carry.release, carry.finish)))


def refusals(op: SplitTable, structure: dict | None, key: tuple[str, ...]) -> list[str]:
    """What the new table could not take over (preflight refuses with each reason)."""
    return carry_refusals(structure, op.columns, key, moving=True) + engines.current().split_refusals(
        structure, op.columns, key)


def rollback_steps(op: SplitTable, ctx: OpContext) -> tuple[list[str], list[str], list[str]]:
    """Before the contract: the mirror's trigger and the new table go (see below). After it: the columns come
    back empty (instant), a trigger on the new table mirrors the application's writes home, batches copy the
    rest back, and only then the new table goes: no step holds a lock for longer than a short DDL. After the contract, what the columns had is built again on the old table before the
    new table goes, and gets its names back after."""
    tbl, new, key = ctx.qualified, ident(ctx.schema, op.new_table), ident(ctx.key)
    if not ctx.contracted(op.columns[0]):
        # Before the contract the old table is the record: every write reached it, and the new table only mirrors
        # it. Copying the mirror back would overwrite what the application wrote between the mirror's trigger
        # going and the batch (a lost write): the trigger and the new table go, nothing is copied.
        return drop_trigger(ctx), [], [s("DROP TABLE IF EXISTS {n}", n=new)]
    cols = [ident(c) for c in op.columns]
    back_fn, back_trg = ident("airmigrate", ctx.name("back")), ident(ctx.name("back"))
    mirror = s("BEGIN UPDATE {t} SET {sets} WHERE {k} = NEW.{k} AND ({diff}); RETURN NEW; END", t=tbl, k=key,
               sets=sql.SQL(", ").join(sql.SQL("{c} = NEW.{c}").format(c=c) for c in cols),
               diff=sql.SQL(" OR ").join(sql.SQL("{c} IS DISTINCT FROM NEW.{c}").format(c=c) for c in cols))
    down = drop_trigger(ctx) + [
        s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} " + ctx.type_of(name) + collate(ctx.structure, name), t=tbl,
          c=ident(name))
        for name in op.columns] + [
        s("CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS {body}", fn=back_fn,
          body=sql.Literal(mirror)),
        s("CREATE OR REPLACE TRIGGER {trg} AFTER INSERT OR UPDATE ON {n} FOR EACH ROW EXECUTE FUNCTION {fn}()",
          trg=back_trg, n=new, fn=back_fn)]
    down_backfill = [s(
        "UPDATE {t} AS o SET {sets} FROM {n} AS x WHERE o.{k} = x.{k} AND " + batch_range(ctx, "o") +
        " AND ({diff})", t=tbl, n=new, k=key,
        sets=sql.SQL(", ").join(sql.SQL("{c} = x.{c}").format(c=c) for c in cols),
        diff=sql.SQL(" OR ").join(sql.SQL("o.{c} IS DISTINCT FROM x.{c}").format(c=c) for c in cols))]
    home = carried(op, ctx, None) if ctx.contracted(op.columns[0]) else Carry()
    down_contract = home.build + home.release + [s("DROP TABLE IF EXISTS {n}", n=new),
                                  s("DROP FUNCTION IF EXISTS {fn}()", fn=back_fn)] + home.finish
    return down, down_backfill, down_contract
