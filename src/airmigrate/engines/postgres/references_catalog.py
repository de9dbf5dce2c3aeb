"""The catalog model the preflight's reference check replays a migration against (airmigrate.engines.postgres.references):
what the target has, what the migration's earlier steps add, and the findings with the file and line they name.
Also the pglast helpers both halves of the check use."""

from __future__ import annotations


import psycopg
from pglast import ast

from airmigrate.findings import Problem  # noqa: F401 (the check's findings)


def _literal_name(schema: str | None, name: str) -> str:
    """A name as to_regclass reads it (quoted: pglast hands us names already case-folded)."""
    quoted = '"' + name.replace('"', '""') + '"'
    return ('"' + schema.replace('"', '""') + '".' + quoted) if schema else quoted


class _Catalog:
    """The target's tables, columns, indexes and constraints, changed as the migration's steps would."""

    def __init__(self, conn):
        self.conn = conn
        self.current = conn.execute("SELECT current_schema()").fetchone()[0] or "public"
        self.tables: dict[tuple[str, str], dict[str, str] | None] = {}   # None: does not exist
        self.original: dict[tuple[str, str], list[str]] = {}                # columns in the target, for hints
        self.relations: dict[tuple[str, str], bool] = {}                    # indexes etc. created/dropped
        self.constraints: dict[tuple[str, str, str], bool] = {}

    def key(self, schema: str | None, name: str) -> tuple[str, str]:
        if schema:
            return schema, name
        row = self.conn.execute("SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                "WHERE c.oid = to_regclass(%s)", (_literal_name(None, name),)).fetchone()
        return (row[0] if row else self.current), name

    def columns(self, key: tuple[str, str]) -> dict[str, str] | None:
        if key not in self.tables:
            name = _literal_name(*key)
            if self.conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
                self.tables[key] = None
            else:
                self.tables[key] = dict(self.conn.execute(
                    "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                    "to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (name,)).fetchall())
                self.original[key] = list(self.tables[key])
        return self.tables[key]

    def relation_exists(self, schema: str, name: str) -> bool:
        if (schema, name) in self.relations:
            return self.relations[(schema, name)]
        if (schema, name) in self.tables:
            return self.tables[(schema, name)] is not None
        return self.conn.execute("SELECT to_regclass(%s)", (_literal_name(schema, name),)).fetchone()[0] is not None

    def constraint_exists(self, table: tuple[str, str], name: str) -> bool:
        if (*table, name) in self.constraints:
            return self.constraints[(*table, name)]
        if self.columns(table) is None:
            return False
        return bool(self.conn.execute("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) "
                                      "AND conname = %s)", (_literal_name(*table), name)).fetchone()[0])

    def canonical_type(self, typename: str) -> tuple[str | None, str | None]:
        """(the type as format_type writes it, None) or (None, why it is not a type here). The text was checked
        by pglast to be exactly one type name, so it can be spliced into the cast."""
        try:
            with self.conn.transaction():
                cur = self.conn.execute(f"SELECT to_regtype(%s)::oid, NULL::{typename}", (typename,))
                oid = cur.fetchone()[0]
                fmod = cur.pgresult.fmod(1)
                if oid is None:
                    return None, f"type {typename} does not exist"
                return self.conn.execute("SELECT format_type(%s, %s)", (oid, fmod)).fetchone()[0], None
        except psycopg.Error as exc:
            return None, (exc.diag.message_primary or str(exc)).strip()


def _enum(value) -> str | None:
    return getattr(value, "name", None) if value is not None else None


def _location(node, fallback) -> int | None:
    loc = getattr(node, "location", None)
    if isinstance(loc, int) and loc >= 0:
        return loc
    relation = getattr(fallback, "relation", None)
    return getattr(relation, "location", None)


def _strings(values) -> list[str]:
    return [v.sval for v in values or () if isinstance(v, ast.String)]


def _column_refs(node):
    """ColumnRefs of an expression tree, not descending into subqueries (their names are another scope)."""
    if node is None or isinstance(node, ast.SubLink):
        return
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from _column_refs(item)
        return
    if isinstance(node, ast.ColumnRef):
        yield node
        return
    if isinstance(node, ast.Node):
        for attr in node:
            yield from _column_refs(getattr(node, attr))


def _ref_column(ref: ast.ColumnRef, table_names: set[str], bare: bool = True) -> str | None:
    """The column a reference names on the table (known by `table_names`), None when it is not one of its."""
    fields = [f.sval if isinstance(f, ast.String) else None for f in ref.fields]
    if None in fields:  # `*` or `t.*`
        return None
    if len(fields) == 1:
        return fields[0] if bare else None
    if len(fields) == 2 and fields[0] in table_names:
        return fields[1]
    return None
