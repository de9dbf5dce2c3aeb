"""What every operation shares: its context, the steps it generates, and SQL building blocks.

Operations are data (pydantic models in each module) turned into SQL text by pure functions;
running that SQL is the stages' job (alembic's ops/toimpl split). Identifiers always go through
``airmigrate.engines.sql``; types and expressions the user writes are checked by the engine's own parser
to be exactly one type name or one expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, field_validator

from airmigrate import engines
from airmigrate.engines import sql
from airmigrate.engines.operation_sql import RowsJob
from airmigrate.errors import FieldProblem

NAME = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"
NAME_RE = re.compile(NAME)
SNAPSHOT_PREFIX = "snapshot_"


def snapshot_name(migration_id: str) -> str:
    """The table (in schema airmigrate) where the backup stage keeps (key, old values) for the rollback."""
    return f"{SNAPSHOT_PREFIX}{migration_id}"[:63]


class OperationModel(BaseModel):
    """What every operation's model shares: no unknown fields, immutable, and refused at load on an engine that
    cannot run it (the engine's operation_refusal names why and the way around it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("op", check_fields=False)
    @classmethod
    def _runs_on_engine(cls, value: str) -> str:
        refusal = engines.current().operation_refusal(value)
        if refusal is not None:
            raise FieldProblem(*refusal)
        return value


@dataclass(frozen=True)
class OpContext:
    """Where an operation applies, and the column types found in the target (for generated columns)."""

    migration_id: str
    index: int
    schema: str
    table: str
    key: str
    column_types: dict[str, str] = field(default_factory=dict)
    # The table's columns when the rollback started (None without a target: plan, lint, docs). A rollback
    # picks its path from it once (before or after the contract) and keeps it while it runs.
    live_columns: frozenset[str] | None = None
    # The table as it was before the migration (airmigrate.structure.read_table: recorded by the backup stage,
    # else read live): what a replaced or moved column had, to be carried over. None without a target.
    structure: dict | None = None

    @property
    def qualified(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    def type_of(self, column: str) -> str:
        """The column's type in the target. Static uses (lint, plan, docs) have no target: they see `text`."""
        if not self.column_types:
            return "text"
        if column not in self.column_types:
            raise ValueError(f"column {self.table}.{column} does not exist in the target")
        return self.column_types[column]

    def contracted(self, column_of_expanded_shape: str) -> bool:
        """Did the contract run? The expanded shape's column (e.g. `col__new`) is gone once it did. Without
        a target the answer is yes: the plan then shows the longer rollback path, the one to be ready for."""
        return self.live_columns is None or column_of_expanded_shape not in self.live_columns

    def name(self, kind: str) -> str:
        """A per-migration object name (trigger, function), at most 63 bytes."""
        return f"am_{kind}_{self.migration_id}_{self.index}"[:63]


@dataclass(frozen=True)
class Steps:
    """SQL per phase. `backfill` and `down_backfill` statements run once per batch with %(lo)s / %(hi)s bound.

    A rollback is three phases like the way up: `down` (short DDL: drop triggers, re-add columns, install a
    reverse sync trigger), `down_backfill` (data copied back in batches by the same engine as the backfill),
    `down_contract` (short DDL: swap names, drop what the migration created)."""

    expand: list[str] = field(default_factory=list)
    backfill: list[str] = field(default_factory=list)
    contract: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)
    down_backfill: list[str] = field(default_factory=list)
    down_contract: list[str] = field(default_factory=list)
    backfill_columns: list[str] = field(default_factory=list)   # written by the backfill: snapshotted
    dropped_columns: list[str] = field(default_factory=list)    # dropped by the contract: snapshotted
    self_restored: list[str] = field(default_factory=list)      # snapshotted, but put back by down_backfill
    destructive: bool = False                                   # contract drops something: approval by default
    # the table whose key the rollback's batches walk, (schema, table): the archive of delete_rows, whose rows
    # are no longer in the migration's table; None: the migration's table
    down_walk: tuple[str, str] | None = None
    vacuum_dead_tuples: int | None = None   # VACUUM the table between batches past this many dead tuples
    # the rows the batches must leave none of (delete_rows, move_rows: their `where`): once the walk reached the
    # end, a final sweep makes batches over the rows still matching it, behind the cursor (stages/backfill/sweep)
    sweep: str | None = None


def check_type(value: str) -> str:
    """Exactly one type name of the target's engine (e.g. `bigint`, `numeric(12,2)`), as its parser renders it:
    the rendering, not the user's text, is spliced into DDL (a trailing `-- comment` cannot survive it)."""
    return engines.current().check_type(value)


def check_expression(value: str) -> str:
    """Exactly one SQL expression over the row's columns, as the engine's parser renders it (a trailing
    `-- comment` in a backfill would otherwise comment out the batch's bounds)."""
    return engines.current().check_expression(value)


def on_record(expression: str, record: str = "new") -> str:
    """`length(full_name)` -> `length(new.full_name)`: the same expression evaluated on the trigger's row."""
    return engines.current().on_record(expression, record)


def mirror_index(definition: str, old: str, new: str, name: str, relation: tuple[str, str] | None = None) -> str:
    """The index `definition` on column `new` instead of `old`, named `name`, built without blocking writes;
    `relation` (schema, table) moves it to another table (a split's new table)."""
    return engines.current().mirror_index(definition, old, new, name, relation)


def s(template: str, **parts) -> str:
    """Compose SQL with airmigrate.engines.sql and render it for the configured engine (no connection needed)."""
    return sql.SQL(template).format(**parts).as_string(None)


def ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def trigger_function(ctx: OpContext, body: str, kind: str = "sync") -> str:
    """CREATE OR REPLACE FUNCTION airmigrate.<name>() RETURNS trigger with a plpgsql body (split_table's trigger,
    PostgreSQL only: the column operations' triggers come from the engine, below)."""
    return s("CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS {body}",
             fn=ident("airmigrate", ctx.name(kind)), body=sql.Literal(body))


def create_trigger(ctx: OpContext, timing: str, kind: str = "sync") -> str:
    """(Re)create the row trigger; DROP + CREATE in one transaction (the expand group) keeps it idempotent."""
    return s("CREATE OR REPLACE TRIGGER {trg} " + timing + " ON {tbl} FOR EACH ROW EXECUTE FUNCTION {fn}()",
             trg=ident(ctx.name(kind)), tbl=ctx.qualified, fn=ident("airmigrate", ctx.name(kind)))


def computed_column_trigger(ctx: OpContext, column: str, expression: str, kind: str = "sync") -> list[str]:
    """(Re)create the row trigger setting `column` to `expression` (over the row) on every insert and update."""
    return engines.current().computed_column_trigger(ctx.name(kind), (ctx.schema, ctx.table), column,
                                                     on_record(expression))


def two_way_sync_trigger(ctx: OpContext, old: str, new: str, kind: str = "sync") -> list[str]:
    """(Re)create the row trigger keeping `old` and `new` equal whichever one the application writes."""
    return engines.current().two_way_sync_trigger(ctx.name(kind), (ctx.schema, ctx.table), old, new)


def cast_back_trigger(ctx: OpContext, source: str, target: str, type_: str, kind: str = "back") -> list[str]:
    """(Re)create the row trigger copying what the application writes into `source` to `target` as `type_`."""
    return engines.current().cast_back_trigger(ctx.name(kind), (ctx.schema, ctx.table), source, target, type_)


def drop_trigger(ctx: OpContext, kind: str = "sync") -> list[str]:
    return engines.current().drop_row_trigger(ctx.name(kind), (ctx.schema, ctx.table))


def distinct(a: str, b: str) -> str:
    """NULL-safe "differs" (IS DISTINCT FROM; MySQL: NOT (a <=> b))."""
    return engines.current().distinct(a, b)


def cast(expression: str, type_: str) -> str:
    """`expression` converted to `type_` (PostgreSQL: `x::type`; MySQL: the assignment converts)."""
    return engines.current().cast(expression, type_)


def placed_after(column: str) -> str:
    """` AFTER col` where the engine can place an added column (MySQL), so a replacement column ends up where the
    original was; empty on PostgreSQL."""
    return engines.current().placed_after(column)


def set_not_null(ctx: OpContext, column: str, type_: str, default: str | None) -> list[str]:
    """The column made NOT NULL without blocking writes (the engine's way: a validated CHECK, an in-place MODIFY)."""
    return engines.current().set_not_null((ctx.schema, ctx.table), column, type_, default)


def batch_range(ctx: OpContext, alias: str | None = None) -> str:
    key = ident(alias, ctx.key) if alias else ident(ctx.key)
    return s("{k} BETWEEN %(lo)s AND %(hi)s", k=key)


def row_phases(job: RowsJob) -> dict[str, list[str]]:
    """delete_rows / move_rows: the statements of each phase, from the engine's building blocks (what a batch
    runs differs most: PostgreSQL deletes RETURNING into the archive, MySQL archives by a trigger)."""
    engine = engines.current()
    return {"expand": engine.rows_expand(job), "backfill": engine.rows_batch(job),
            "contract": engine.rows_contract(job), "down": engine.rows_down(job),
            "down_backfill": engine.rows_down_batch(job), "down_contract": engine.rows_down_contract(job)}
