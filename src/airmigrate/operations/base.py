"""What every operation shares: its context, the steps it generates, and SQL building blocks.

Operations are data (pydantic models in each module) turned into SQL text by pure functions;
running that SQL is the stages' job (alembic's ops/toimpl split). Identifiers always go through
``psycopg.sql``; types and expressions the user writes are checked by PostgreSQL's own parser
(pglast) to be exactly one type name or one expression.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pglast
from pglast import ast, visitors
from pglast.stream import RawStream
from psycopg import sql


NAME = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"


@dataclass(frozen=True)
class OpContext:
    """Where an operation applies, and the column types found in the target (for generated columns)."""

    migration_id: str
    index: int
    schema: str
    table: str
    key: str
    column_types: dict[str, str] = field(default_factory=dict)

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

    def name(self, kind: str) -> str:
        """A per-migration object name (trigger, function), at most 63 bytes."""
        return f"am_{kind}_{self.migration_id}_{self.index}"[:63]


@dataclass(frozen=True)
class Steps:
    """SQL per phase. `backfill` statements run once per batch with %(lo)s / %(hi)s bound."""

    expand: list[str] = field(default_factory=list)
    backfill: list[str] = field(default_factory=list)
    contract: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)
    backfill_columns: list[str] = field(default_factory=list)   # written by the backfill: snapshotted
    dropped_columns: list[str] = field(default_factory=list)    # dropped by the contract: snapshotted
    destructive: bool = False                                   # contract drops something: approval by default


def s(template: str, **parts) -> str:
    """Compose SQL with psycopg.sql and render it (no connection needed)."""
    return sql.SQL(template).format(**parts).as_string(None)


def ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def check_type(value: str) -> str:
    """Exactly one PostgreSQL type name (e.g. `bigint`, `numeric(12,2)`, `text[]`)."""
    try:
        stmts = pglast.parse_sql(f"SELECT NULL::{value}")
    except pglast.parser.ParseError as exc:
        raise ValueError(f"'{value}' is not a PostgreSQL type ({exc})") from None
    target = stmts[0].stmt.targetList if len(stmts) == 1 else None
    # an alias means words followed the type ("int int" parses as NULL::int AS int)
    if not target or len(target) != 1 or type(target[0].val).__name__ != "TypeCast" or target[0].name:
        raise ValueError(f"'{value}' must be one type name")
    return value


def check_expression(value: str) -> str:
    """Exactly one SQL expression over the row's columns (no statement separators, no subquery tricks)."""
    try:
        stmts = pglast.parse_sql(f"SELECT {value}")
    except pglast.parser.ParseError as exc:
        raise ValueError(f"'{value}' is not a SQL expression ({exc})") from None
    select = stmts[0].stmt if len(stmts) == 1 else None
    if select is None or len(select.targetList or ()) != 1 or select.fromClause or select.whereClause:
        raise ValueError(f"'{value}' must be one expression")
    return value


class _QualifyWithRecord(visitors.Visitor):
    """Rewrite bare column references `col` to `NEW.col`, so a row expression works inside a trigger."""

    def __init__(self, record: str):
        super().__init__()
        self.record = record

    def visit_ColumnRef(self, ancestors, node):
        if len(node.fields) == 1 and isinstance(node.fields[0], ast.String):
            return ast.ColumnRef(fields=(ast.String(sval=self.record), node.fields[0]))
        return None


def on_record(expression: str, record: str = "new") -> str:
    """`length(full_name)` -> `length(new.full_name)`: the same expression evaluated on the trigger's row."""
    tree = pglast.parse_sql(f"SELECT {expression}")
    _QualifyWithRecord(record)(tree)
    return RawStream()(tree[0].stmt.targetList[0].val)


def trigger_function(ctx: OpContext, body: str, kind: str = "sync") -> str:
    """CREATE OR REPLACE FUNCTION airmigrate.<name>() RETURNS trigger with a plpgsql body."""
    return s("CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS {body}",
             fn=ident("airmigrate", ctx.name(kind)), body=sql.Literal(body))


def create_trigger(ctx: OpContext, timing: str, kind: str = "sync") -> str:
    """(Re)create the row trigger; DROP + CREATE in one transaction (the expand group) keeps it idempotent."""
    return s("CREATE OR REPLACE TRIGGER {trg} " + timing + " ON {tbl} FOR EACH ROW EXECUTE FUNCTION {fn}()",
             trg=ident(ctx.name(kind)), tbl=ctx.qualified, fn=ident("airmigrate", ctx.name(kind)))


def drop_trigger(ctx: OpContext, kind: str = "sync") -> list[str]:
    return [s("DROP TRIGGER IF EXISTS {trg} ON {tbl}", trg=ident(ctx.name(kind)), tbl=ctx.qualified),
            s("DROP FUNCTION IF EXISTS {fn}()", fn=ident("airmigrate", ctx.name(kind)))]


def batch_range(ctx: OpContext, alias: str | None = None) -> str:
    key = ident(alias, ctx.key) if alias else ident(ctx.key)
    return s("{k} BETWEEN %(lo)s AND %(hi)s", k=key)
