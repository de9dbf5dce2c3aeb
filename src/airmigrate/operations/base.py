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
SNAPSHOT_PREFIX = "snapshot_"


def snapshot_name(migration_id: str) -> str:
    """The table (in schema airmigrate) where the backup stage keeps (key, old values) for the rollback."""
    return f"{SNAPSHOT_PREFIX}{migration_id}"[:63]


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


def mirror_index(definition: str, old: str, new: str, name: str, relation: tuple[str, str] | None = None) -> str:
    """The index `definition` (pg_get_indexdef) on column `new` instead of `old`, named `name`, built
    CONCURRENTLY: re-rendered by pglast, column references renamed in its keys, expressions and predicate.
    `relation` (schema, table) moves it to another table (a split's new table)."""
    import pglast
    from pglast import ast
    from pglast.visitors import Visitor

    class Rename(Visitor):
        def visit_ColumnRef(self, parent, node):
            last = node.fields[-1]
            if isinstance(last, ast.String) and last.sval == old:
                return ast.ColumnRef(fields=(*node.fields[:-1], ast.String(sval=new)))
            return None

        def visit_IndexElem(self, parent, node):
            if node.name == old:
                return ast.IndexElem(name=new, expr=node.expr, indexcolname=node.indexcolname,
                                     collation=node.collation, opclass=node.opclass, opclassopts=node.opclassopts,
                                     ordering=node.ordering, nulls_ordering=node.nulls_ordering)
            return None

    statement = pglast.parse_sql(definition)[0].stmt
    Rename()(statement)
    statement.idxname, statement.concurrent, statement.if_not_exists = name, True, True
    if relation:
        statement.relation = ast.RangeVar(schemaname=relation[0], relname=relation[1], inh=True,
                                          relpersistence="p")
    return pglast.stream.RawStream()(statement)


def s(template: str, **parts) -> str:
    """Compose SQL with psycopg.sql and render it (no connection needed)."""
    return sql.SQL(template).format(**parts).as_string(None)


def ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def check_type(value: str) -> str:
    """Exactly one PostgreSQL type name (e.g. `bigint`, `numeric(12,2)`, `text[]`), returned as pglast renders it.

    The rendering, not the user's text, is what gets spliced into DDL: a trailing `-- comment` or any
    other leftover text cannot survive it, so `type: "text -- x"` cannot swallow the DEFAULT after it."""
    stmt = _parse_one(f"SELECT NULL::{value}", value, "a PostgreSQL type")
    target = stmt.targetList or ()
    # an alias means words followed the type ("int int" parses as NULL::int AS int)
    if len(target) != 1 or not isinstance(target[0].val, ast.TypeCast) or target[0].name:
        raise ValueError(f"'{value}' must be one type name")
    rendered = RawStream()(target[0].val.typeName)
    _same_meaning(stmt, f"SELECT NULL::{rendered}", value)
    return rendered


def check_expression(value: str) -> str:
    """Exactly one SQL expression over the row's columns, returned as pglast renders it.

    Generated statements splice the rendering, never the raw text: a trailing `-- comment` in a
    backfill would otherwise comment out the batch's `WHERE key BETWEEN %(lo)s AND %(hi)s`."""
    stmt = _parse_one(f"SELECT {value}", value, "a SQL expression")
    if len(stmt.targetList or ()) != 1:
        raise ValueError(f"'{value}' must be one expression")
    rendered = RawStream()(stmt.targetList[0].val)
    # anything the rendering dropped (an alias, FROM, WHERE, ORDER BY, LIMIT ...) makes the trees differ
    _same_meaning(stmt, f"SELECT {rendered}", value, "must be one expression")
    return rendered


def _parse_one(text: str, value: str, what: str):
    """The single SELECT `text` parses to; a second statement (after a `;`) is refused."""
    try:
        stmts = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise ValueError(f"'{value}' is not {what} ({exc})") from None
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.SelectStmt):
        raise ValueError(f"'{value}' must be exactly one {what.split(' ', 1)[1]}")
    return stmts[0].stmt


def _same_meaning(original, rendered_sql: str, value: str, problem: str = "does not survive re-rendering") -> None:
    """The rendering must parse back to the very tree the user's text gave (locations aside): what runs is
    what was checked, and a rendering quirk can never change the meaning silently."""
    try:
        again = pglast.parse_sql(rendered_sql)
    except pglast.parser.ParseError:
        again = None
    if not again or len(again) != 1 or again[0].stmt != original:
        raise ValueError(f"'{value}' {problem}")


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
