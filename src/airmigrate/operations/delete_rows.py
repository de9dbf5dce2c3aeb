"""delete_rows: remove the rows matching `where`, in key-range batches, keeping them in an archive table.

Expand creates ``airmigrate.archive_<migration>`` (the table's columns, keyed like it, so no row can be archived
twice); each batch deletes the matching rows of its key range and inserts them into the archive in one
statement (``WITH d AS (DELETE ... RETURNING *) INSERT ...``), in the transaction that marks the batch done:
a killed run never loses a row and never archives one twice. The contract drops the archive once it is
`keep_archive_days` old (after the approval: it drops data). The rollback walks the archive's key and puts the
rows back (``ON CONFLICT DO NOTHING``), then drops the archive when every archived row is back.

`archive: none` deletes without a copy (an approval and a lint acknowledgement; the backup stage then takes a
pg_dump of the table, where the deleted rows stay). Rows of other tables referencing the deleted ones are
found by the preflight (:func:`referencing_problems`), never by a batch failing half-way.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from airmigrate.engines import sql
from airmigrate.operations.base import OpContext, OperationModel, Steps, batch_range, check_expression, ident, s

ARCHIVE_PREFIX = "archive_"


class RowsWhere(OperationModel):
    """What delete_rows and move_rows share: the rows (one condition), how long their archive stays, and when
    the table is vacuumed between batches."""

    where: str = Field(..., min_length=1, description="The rows: one SQL condition over the table's columns, e.g. "
                                                      "\"created_at < now() - interval '90 days'\"")
    keep_archive_days: int = Field(7, ge=0, le=3650, description="The contract drops the archive only once its "
                                                                 "last batch is this many days old")
    vacuum_dead_tuples: int = Field(100_000, ge=1000, description="VACUUM the table (never FULL) between batches "
                                                                  "once it has this many dead tuples")

    @field_validator("where")
    @classmethod
    def _one_condition(cls, value: str) -> str:
        return check_expression(value)


class DeleteRows(RowsWhere):
    op: Literal["delete_rows"]
    archive: Literal["table", "none"] = Field(
        "table", description="table: keep the deleted rows in airmigrate.archive_<migration> (the rollback puts "
                             "them back); none: no archive (needs approval and an acknowledged "
                             "`delete-without-archive` lint finding; the backup stage keeps a pg_dump)")


def archive_name(migration_id: str) -> str:
    return f"{ARCHIVE_PREFIX}{migration_id}"[:63]


def archive_of(ctx: OpContext) -> sql.Identifier:
    return ident("airmigrate", archive_name(ctx.migration_id))


def steps(op: DeleteRows, ctx: OpContext) -> Steps:
    tbl, key = ctx.qualified, ident(ctx.key)
    matching = batch_range(ctx) + " AND (" + op.where + ")"
    if op.archive == "none":
        return Steps(backfill=[s("DELETE FROM {t} WHERE " + matching, t=tbl)], destructive=True,
                     vacuum_dead_tuples=op.vacuum_dead_tuples, sweep=op.where)
    archive = archive_of(ctx)
    expand = [s("CREATE TABLE IF NOT EXISTS {a} (LIKE {t}, PRIMARY KEY ({k}))", a=archive, t=tbl, k=key)]
    backfill = [s("WITH d AS (DELETE FROM {t} WHERE " + matching + " RETURNING *) INSERT INTO {a} SELECT * FROM d",
                  t=tbl, a=archive)]
    contract = [contract_drop(ctx, archive, op.keep_archive_days)]
    columns = restorable_columns(ctx)
    cols = sql.SQL("*") if columns is None else sql.SQL(", ").join(map(ident, columns))
    into = sql.SQL("") if columns is None else sql.SQL("({})").format(cols)
    down_backfill = [s("INSERT INTO {t} {into} OVERRIDING SYSTEM VALUE SELECT {cols} FROM {a} WHERE "
                       + batch_range(ctx) + " ON CONFLICT DO NOTHING", t=tbl, into=into, cols=cols, a=archive)]
    down_contract = drop_archive_when_kept(ctx, archive)
    return Steps(expand=expand, backfill=backfill, contract=contract, down_backfill=down_backfill,
                 down_contract=down_contract, destructive=True, down_walk=("airmigrate", archive_name(ctx.migration_id)),
                 vacuum_dead_tuples=op.vacuum_dead_tuples, sweep=op.where)


def contract_drop(ctx: OpContext, archive: sql.Identifier, keep_days: int) -> str:
    """The contract: drop the archive, refusing (nothing dropped) while its last batch is younger than keep_days."""
    return s("DO $am$ BEGIN IF to_regclass({q}) IS NULL THEN RETURN; END IF; "
             "IF (SELECT max(b.finished_at) FROM airmigrate.batches b JOIN airmigrate.runs r USING (run_id) "
             "WHERE r.migration_id = {m} AND r.direction = 'up') > now() - make_interval(days => {d}) THEN "
             "RAISE EXCEPTION 'the archive % keeps the rows for keep_archive_days (%) after the last batch: the "
             "contract drops it after that. Run `airmigrate complete %` then (or roll back meanwhile); nothing was "
             "dropped', {q}, {d}, {m}; END IF; DROP TABLE {a}; END $am$",
             q=sql.Literal(archive.as_string(None)), m=sql.Literal(ctx.migration_id), d=sql.Literal(keep_days),
             a=archive)


def drop_archive_when_kept(ctx: OpContext, archive: sql.Identifier) -> list[str]:
    """The rollback's last step: the archive goes only when every row in it is back in the table (a row the
    application re-created under the same key since keeps its archived version: the archive stays, with a
    warning in the rollback's log)."""
    tbl, key = ctx.qualified, ident(ctx.key)
    return [s("DO $am$ BEGIN IF to_regclass({q}) IS NULL THEN RETURN; END IF; "
              "IF EXISTS (SELECT 1 FROM {a} x WHERE NOT EXISTS (SELECT 1 FROM {t} y WHERE y.{k} = x.{k})) "
              "THEN RAISE WARNING 'rows of % are not back in % (their key is taken): the archive is kept', "
              "{q}, {tq}; ELSE DROP TABLE {a}; END IF; END $am$",
              q=sql.Literal(archive.as_string(None)), a=archive, t=tbl, k=key, tq=sql.Literal(tbl.as_string(None)))]


def restorable_columns(ctx: OpContext) -> list[str] | None:
    """The columns a re-insert writes: all but generated ones (None without a target: every column)."""
    if not ctx.structure:
        return None
    return [name for name, column in ctx.structure["columns"].items() if not column.get("generated")]
