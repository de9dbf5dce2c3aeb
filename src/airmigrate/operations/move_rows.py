"""move_rows: move the rows matching `where` into another table, in key-range batches.

Each batch deletes the matching rows of its key range from the table, inserts them into the destination (`to`, its
columns computed by `columns` when given) and keeps the original rows in ``airmigrate.archive_<migration>``, in one
statement in the transaction that marks the batch done: the two tables are consistent at every commit, and a
killed run neither loses nor moves a row twice (the archive is keyed by the table's key). `create: true` makes the
destination (``LIKE`` the table, with its defaults, constraints and indexes) in the expand.

The rollback walks the archive's keys and moves each batch back in one statement: without `columns` the rows as the
destination holds them now (what the application changed there is kept), with `columns` the original rows; a key
taken meanwhile in the table fails that batch (nothing is lost: fix it, retry the failed batches). Then the archive
goes, and a destination the migration created goes when it is empty. The contract drops the archive once it is
`keep_archive_days` old, like delete_rows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from airmigrate.engines import sql
from airmigrate.operations.base import NAME, NAME_RE, OpContext, Steps, batch_range, check_expression, ident, s
from airmigrate.operations.delete_rows import (
    RowsWhere,
    archive_name,
    archive_of,
    contract_drop,
    drop_archive_when_kept,
    restorable_columns,
)


class MoveRows(RowsWhere):
    """The archive here keeps the moved rows as they were (the rollback's source when `columns` changed them)."""

    op: Literal["move_rows"]
    to: str = Field(..., pattern=NAME, description="The destination table, in the migration's schema")
    columns: dict[str, str] = Field(default_factory=dict, description="destination column: expression over the "
                                                                       "moved row; default: the same columns")
    create: bool = Field(False, description="Create the destination in the expand (LIKE the table, with its "
                                            "defaults, constraints and indexes); the rollback drops it when empty")

    @field_validator("columns")
    @classmethod
    def _expressions(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value:
            if not NAME_RE.match(column):
                raise ValueError(f"columns: '{column}' is not a plain column name")
        return {column: check_expression(expression) for column, expression in value.items()}

    @model_validator(mode="after")
    def _created_like_the_table(self):
        if self.create and self.columns:
            raise ValueError("create: true makes the destination LIKE the table, so its rows keep their columns: "
                             "leave out `columns`, or create the destination in an earlier migration")
        return self



def steps(op: MoveRows, ctx: OpContext) -> Steps:
    tbl, dest, key, archive = ctx.qualified, ident(ctx.schema, op.to), ident(ctx.key), archive_of(ctx)
    columns = restorable_columns(ctx)
    same = sql.SQL("*") if columns is None else sql.SQL(", ").join(map(ident, columns))
    listed = sql.SQL("") if columns is None else sql.SQL("({})").format(same)
    if op.columns:
        into = sql.SQL("({})").format(sql.SQL(", ").join(map(ident, op.columns)))
        values = sql.SQL(", ").join(sql.SQL(e) for e in op.columns.values())
    else:
        into, values = listed, same
    expand = ([s("CREATE TABLE IF NOT EXISTS {d} (LIKE {t} INCLUDING ALL)", d=dest, t=tbl)] if op.create else []) + [
        s("CREATE TABLE IF NOT EXISTS {a} (LIKE {t}, PRIMARY KEY ({k}))", a=archive, t=tbl, k=key)]
    backfill = [s("WITH d AS (DELETE FROM {t} WHERE " + batch_range(ctx) + " AND (" + op.where + ") RETURNING *), "
                  "i AS (INSERT INTO {dest} {into} OVERRIDING SYSTEM VALUE SELECT {values} FROM d) "
                  "INSERT INTO {a} SELECT * FROM d", t=tbl, dest=dest, into=into, values=values, a=archive)]
    moved = s(batch_range(ctx) + " AND {k} IN (SELECT {k} FROM {a} WHERE " + batch_range(ctx) + ")", k=key,
              a=archive)
    if op.columns:  # the destination's rows are computed: the originals come back from the archive
        down_backfill = [s("WITH gone AS (DELETE FROM {dest} WHERE " + moved + ") INSERT INTO {t} {cols} "
                           "OVERRIDING SYSTEM VALUE SELECT {same} FROM {a} WHERE " + batch_range(ctx),
                           dest=dest, t=tbl, cols=listed, same=same, a=archive)]
    else:  # the rows as the destination holds them now
        down_backfill = [s("WITH gone AS (DELETE FROM {dest} WHERE " + moved + " RETURNING *) INSERT INTO {t} {cols} "
                           "OVERRIDING SYSTEM VALUE SELECT {same} FROM gone", dest=dest, t=tbl, cols=listed,
                           same=same)]
    down_contract = drop_archive_when_kept(ctx, archive)
    if op.create:
        down_contract.append(s("DO $am$ BEGIN IF to_regclass({q}) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {d}) "
                               "THEN DROP TABLE {d}; END IF; END $am$",
                               q=sql.Literal(dest.as_string(None)), d=dest))
    return Steps(expand=expand, backfill=backfill, contract=[contract_drop(ctx, archive, op.keep_archive_days)],
                 down_backfill=down_backfill, down_contract=down_contract, destructive=True,
                 down_walk=("airmigrate", archive_name(ctx.migration_id)), vacuum_dead_tuples=op.vacuum_dead_tuples,
                 sweep=op.where)
