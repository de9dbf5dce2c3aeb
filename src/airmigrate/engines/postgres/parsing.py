"""SQL text as PostgreSQL reads it (pglast, PostgreSQL's own parser): syntax errors with their line, one type
name, one expression, one SELECT, an expression on a trigger's row, an index definition moved to another column.
What the user writes is checked here and the rendering (never the raw text) is what gets spliced into DDL."""

from __future__ import annotations

import re

import pglast
from pglast import ast, visitors
from pglast.stream import RawStream
from pglast.visitors import Visitor


def parse_error_at(text: str, exc: pglast.parser.ParseError) -> tuple[int, str]:
    """(1-based line, message without the character index) of a pglast ParseError, whose second argument is
    the character index: lines are what a user can find in the file."""
    index = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
    return text.count("\n", 0, index) + 1, re.sub(r", at index \d+", "", str(exc).splitlines()[0])


def syntax_error(text: str) -> tuple[int, str] | None:
    """The first syntax error of a SQL text as (line, message), or None when it parses."""
    try:
        pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        return parse_error_at(text, exc)
    return None


def one_select(value: str) -> str:
    """Exactly one SELECT, as pglast renders it (nothing else can ride along); ValueError otherwise."""
    try:
        statements = pglast.parse_sql(value)
    except pglast.parser.ParseError as exc:
        raise ValueError(f"does not parse: {exc}") from None
    if len(statements) != 1 or type(statements[0].stmt).__name__ != "SelectStmt":
        raise ValueError("must be exactly one SELECT returning one number")
    return RawStream()(statements[0])


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


def mirror_index(definition: str, old: str, new: str, name: str, relation: tuple[str, str] | None = None) -> str:
    """The index `definition` (pg_get_indexdef) on column `new` instead of `old`, named `name`, built
    CONCURRENTLY: re-rendered by pglast, column references renamed in its keys, expressions and predicate.
    `relation` (schema, table) moves it to another table (a split's new table)."""
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


REWRITING = {"AT_DropColumn": "DROP COLUMN", "AT_AlterColumnType": "ALTER COLUMN TYPE"}


def data_losing_statements(text: str) -> list[str]:
    """What in this SQL drops or rewrites data a column snapshot cannot bring back ("DROP TABLE", "UPDATE")."""
    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError:
        return []  # lint reports it; the stage will not get this far
    out = []
    for raw in statements:
        node, kind = raw.stmt, type(raw.stmt).__name__
        if kind == "DropStmt" and getattr(node.removeType, "name", "") == "OBJECT_TABLE":
            out.append("DROP TABLE")
        elif kind in ("TruncateStmt", "DeleteStmt", "UpdateStmt"):
            out.append({"TruncateStmt": "TRUNCATE", "DeleteStmt": "DELETE", "UpdateStmt": "UPDATE"}[kind])
        elif kind == "AlterTableStmt":
            out += [REWRITING[c.subtype.name] for c in node.cmds or ()
                    if getattr(getattr(c, "subtype", None), "name", "") in REWRITING]
    return out


class _RenameColumn(Visitor):
    """Column references, FK column lists and constraint key lists naming `old` name `new` instead."""

    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new = old, new

    def visit_ColumnRef(self, ancestors, node):
        last = node.fields[-1]
        if isinstance(last, ast.String) and last.sval == self.old:
            return ast.ColumnRef(fields=(*node.fields[:-1], ast.String(sval=self.new)))
        return None

    def visit_Constraint(self, ancestors, node):
        for attr in ("fk_attrs", "keys"):
            names = getattr(node, attr)
            if names:
                setattr(node, attr, tuple(ast.String(sval=self.new) if n.sval == self.old else n for n in names))
        return None


def _not_valid(statement) -> str:
    constraint = statement.cmds[0].def_
    constraint.skip_validation, constraint.initially_valid = True, False
    return RawStream()(statement)


def constraint_not_valid(add_constraint: str, old: str, new: str) -> str:
    """`ALTER TABLE t ADD CONSTRAINT c <definition>` with column `old` read as `new`, added NOT VALID."""
    statement = pglast.parse_sql(add_constraint)[0].stmt
    _RenameColumn(old, new)(statement)
    return _not_valid(statement)


def foreign_key_not_valid(add_constraint: str, referenced_old: str, referenced_new: str) -> str:
    """Another table's `ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY ... REFERENCES ours (old)` pointing at the
    replacement column instead, added NOT VALID (new writes are checked at once; VALIDATE comes later)."""
    statement = pglast.parse_sql(add_constraint)[0].stmt
    constraint = statement.cmds[0].def_
    constraint.pk_attrs = tuple(ast.String(sval=referenced_new) if n.sval == referenced_old else n
                                for n in constraint.pk_attrs)
    return _not_valid(statement)


def index_on(definition: str, name: str, table: str) -> str:
    """An index definition (pg_get_indexdef) renamed and built on another (temporary) table of the same shape."""
    statement = pglast.parse_sql(definition)[0].stmt
    statement.idxname, statement.relation = name, ast.RangeVar(relname=table, inh=True, relpersistence="t")
    return RawStream()(statement)
