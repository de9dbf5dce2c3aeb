"""delete_rows: remove the rows matching `where`, in key-range batches, keeping them in an archive table.

Expand creates ``airmigrate.archive_<migration>`` (the table's columns, keyed like it, so no row can be archived
twice); each batch deletes the matching rows of its key range and inserts them into the archive, in the
transaction that marks the batch done: a killed run never loses a row and never archives one twice. The contract
drops the archive once it is `keep_archive_days` old (after the approval: it drops data). The rollback walks the
archive's key and puts the rows back (a key taken meanwhile keeps the application's row), then drops the archive
when every archived row is back. How each step is written is the engine's (RowsJob, Engine.rows_*): PostgreSQL
deletes ``RETURNING *`` into the archive in one statement, MySQL archives through a trigger its batch turns on.

`archive: none` deletes without a copy (an approval and a lint acknowledgement; the backup stage then takes a
dump of the table, where the deleted rows stay). Rows of other tables referencing the deleted ones are
found by the preflight (:func:`referencing_problems`), never by a batch failing half-way.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from airmigrate.engines import sql
from airmigrate.engines.operation_sql import RowsJob
from airmigrate.operations.base import (
    OpContext,
    OperationModel,
    Steps,
    batch_range,
    check_expression,
    ident,
    row_phases,
    s,
)

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
                             "`delete-without-archive` lint finding; the backup stage keeps a dump)")


def archive_name(migration_id: str) -> str:
    return f"{ARCHIVE_PREFIX}{migration_id}"[:63]


def archive_of(ctx: OpContext) -> sql.Identifier:
    return ident("airmigrate", archive_name(ctx.migration_id))


def rows_job(op: RowsWhere, ctx: OpContext, **moving) -> RowsJob:
    """What the engine's building blocks need to know of a delete_rows / move_rows (`moving`: move_rows' part)."""
    columns = restorable_columns(ctx)
    return RowsJob(migration_id=ctx.migration_id, table=ctx.qualified, key=ctx.key, where=op.where,
                   in_range=batch_range(ctx), archive=archive_of(ctx), helper=ctx.name("rows"),
                   columns=None if columns is None else tuple(columns), keep_archive_days=op.keep_archive_days,
                   **moving)


def steps(op: DeleteRows, ctx: OpContext) -> Steps:
    if op.archive == "none":
        return Steps(backfill=[s("DELETE FROM {t} WHERE " + batch_range(ctx) + " AND (" + op.where + ")",
                                 t=ctx.qualified)], destructive=True,
                     vacuum_dead_tuples=op.vacuum_dead_tuples, sweep=op.where)
    return Steps(**row_phases(rows_job(op, ctx)), destructive=True,
                 down_walk=("airmigrate", archive_name(ctx.migration_id)),
                 vacuum_dead_tuples=op.vacuum_dead_tuples, sweep=op.where)


def restorable_columns(ctx: OpContext) -> list[str] | None:
    """The columns a re-insert writes: all but generated ones (None without a target: every column)."""
    if not ctx.structure:
        return None
    return [name for name, column in ctx.structure["columns"].items() if not column.get("generated")]
