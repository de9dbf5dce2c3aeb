"""move_rows: move the rows matching `where` into another table, in key-range batches.

Each batch deletes the matching rows of its key range from the table, inserts them into the destination (`to`, its
columns computed by `columns` when given) and keeps the original rows in ``airmigrate.archive_<migration>``, in the
transaction that marks the batch done (how is the engine's, as for delete_rows): the two tables are consistent at
every commit, and a killed run neither loses nor moves a row twice (the archive is keyed by the table's key).
`create: true` makes the destination (``LIKE`` the table, with its defaults, constraints and indexes) in the expand.

The rollback walks the archive's keys and moves each batch back: without `columns` the rows as the destination
holds them now (what the application changed there is kept), with `columns` the original rows; a key
taken meanwhile in the table fails that batch (nothing is lost: fix it, retry the failed batches). Then the archive
goes, and a destination the migration created goes when it is empty. The contract drops the archive once it is
`keep_archive_days` old, like delete_rows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from airmigrate.operations.base import NAME, NAME_RE, OpContext, Steps, check_expression, ident, row_phases
from airmigrate.operations.delete_rows import RowsWhere, archive_name, rows_job


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
    job = rows_job(op, ctx, destination=ident(ctx.schema, op.to), into=tuple(op.columns.items()), create=op.create)
    return Steps(**row_phases(job), destructive=True, down_walk=("airmigrate", archive_name(ctx.migration_id)),
                 vacuum_dead_tuples=op.vacuum_dead_tuples, sweep=op.where)
