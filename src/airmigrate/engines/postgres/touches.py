"""What a SQL text changes, as (kind, name) pairs (the migration order's ``touched``), read from pglast's tree."""

from __future__ import annotations

import pglast
from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from airmigrate.engines.base import USES


def sql_touched(text: str, schema: str = "public", table: str | None = None) -> set[tuple[str, str]]:
    """airmigrate.order.touched() of SQL text (batch placeholders bound); an unqualified table is in `schema` when it is `table` (the migration's), else in
    public (the usual search_path)."""
    out: set[tuple[str, str]] = set()

    def rel(node) -> str:
        return f"{node.schemaname or (schema if node.relname == table else 'public')}.{node.relname}"

    def qualified(parts) -> tuple[str, str]:
        names = [p.sval for p in parts]
        return (names[-2] if len(names) > 1 else None), names[-1]

    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError:
        return out  # load_migration checked the files; nothing more to learn here
    for raw in statements:
        stmt = raw.stmt
        if isinstance(stmt, ast.AlterTableStmt) and stmt.relation is not None:
            where = rel(stmt.relation)
            if stmt.objtype == ObjectType.OBJECT_INDEX:
                out.add(("index", f"{where.split('.')[0]}.{stmt.relation.relname}"))
                continue
            for cmd in stmt.cmds or ():
                definition = cmd.def_
                if isinstance(definition, ast.ColumnDef):
                    out.add(("column", f"{where}.{definition.colname}"))
                elif isinstance(definition, ast.Constraint):
                    if definition.conname:
                        out.add(("constraint", f"{where}.{definition.conname}"))
                    for key in (*(definition.keys or ()), *(definition.fk_attrs or ())):
                        out.add((USES, f"{where}.{key.sval}"))
                    for key in (definition.pk_attrs or ()) if definition.pktable is not None else ():
                        out.add((USES, f"{rel(definition.pktable)}.{key.sval}"))
                    if definition.indexname:
                        out.add(("index", f"{where.split('.')[0]}.{definition.indexname}"))
                    for name in _column_refs(definition.raw_expr):
                        out.add((USES, f"{where}.{name}"))
                if cmd.name and cmd.subtype in (AlterTableType.AT_DropConstraint,
                                                 AlterTableType.AT_ValidateConstraint):
                    out.add(("constraint", f"{where}.{cmd.name}"))
                elif cmd.name:
                    out.add(("column", f"{where}.{cmd.name}"))
        elif isinstance(stmt, ast.RenameStmt):
            if stmt.renameType == ObjectType.OBJECT_COLUMN and stmt.relation is not None:
                out.add(("column", f"{rel(stmt.relation)}.{stmt.subname}"))
                out.add(("column", f"{rel(stmt.relation)}.{stmt.newname}"))
            elif stmt.renameType == ObjectType.OBJECT_TABCONSTRAINT and stmt.relation is not None:
                out.add(("constraint", f"{rel(stmt.relation)}.{stmt.subname}"))
                out.add(("constraint", f"{rel(stmt.relation)}.{stmt.newname}"))
            elif stmt.renameType == ObjectType.OBJECT_INDEX and stmt.relation is not None:
                index_schema = rel(stmt.relation).split(".")[0]
                out.add(("index", f"{index_schema}.{stmt.relation.relname}"))
                out.add(("index", f"{index_schema}.{stmt.newname}"))
            elif stmt.renameType == ObjectType.OBJECT_TABLE and stmt.relation is not None:
                out.add(("table", rel(stmt.relation)))
                out.add(("table", f"{rel(stmt.relation).split('.')[0]}.{stmt.newname}"))
        elif isinstance(stmt, ast.IndexStmt) and stmt.relation is not None:
            where = rel(stmt.relation)
            if stmt.idxname:
                out.add(("index", f"{where.split('.')[0]}.{stmt.idxname}"))
            for element in stmt.indexParams or ():
                names = [element.name] if element.name else _column_refs(element.expr)
                for name in names:
                    out.add((USES, f"{where}.{name}"))
            for name in _column_refs(stmt.whereClause):
                out.add((USES, f"{where}.{name}"))
        elif isinstance(stmt, ast.DropStmt) and stmt.removeType in (ObjectType.OBJECT_INDEX, ObjectType.OBJECT_TABLE):
            kind = "index" if stmt.removeType == ObjectType.OBJECT_INDEX else "table"
            for parts in stmt.objects or ():
                owner, name = qualified(parts)
                default = schema if kind == "table" and name == table else "public"
                out.add((kind, f"{owner or default}.{name}"))
        elif isinstance(stmt, ast.CreateStmt) and stmt.relation is not None:
            out.add(("table", rel(stmt.relation)))
        elif isinstance(stmt, ast.UpdateStmt) and stmt.relation is not None:
            for target in stmt.targetList or ():
                out.add(("column", f"{rel(stmt.relation)}.{target.name}"))
    return out


def _column_refs(node) -> list[str]:
    """Column names referenced in an expression node (or in the SQL text of a SELECT)."""
    if node is None:
        return []
    if isinstance(node, str):
        try:
            node = pglast.parse_sql(node)[0].stmt
        except pglast.parser.ParseError:
            return []
    names = []
    for found in _walk(node):
        if isinstance(found, ast.ColumnRef):
            last = found.fields[-1] if found.fields else None
            if isinstance(last, ast.String):
                names.append(last.sval)
    return list(dict.fromkeys(names))


def _walk(node):
    """Every AST node under `node` (pglast's nodes are slots; tuples hold lists)."""
    if isinstance(node, tuple | list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, ast.Node):
        yield node
        for attribute in node:
            yield from _walk(getattr(node, attribute))


def columns_read(expression: str) -> list[str]:
    """The columns an expression reads, in order of first mention."""
    return _column_refs(f"SELECT {expression}")
