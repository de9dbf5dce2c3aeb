"""One statement of a migration's SQL file checked against the catalog model (airmigrate.engines.postgres.references): the
tables, columns, types and indexes it names exist (or not, for what it creates); what it creates is added."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pglast import ast
from pglast.stream import RawStream

from airmigrate.engines.postgres.references_catalog import (
    Problem,
    _column_refs,
    _enum,
    _location,
    _ref_column,
    _strings,
)

if TYPE_CHECKING:  # the checker that owns the statement (references.py imports this module)
    from airmigrate.engines.postgres.references import _Checker


class _SqlStatement:
    """One statement of a SQL file against the catalog model; adds what it creates."""

    def __init__(self, checker: _Checker, path: Path, text: str, phase: str):
        self.c, self.path, self.text, self.phase = checker, path, text, phase
        self.catalog = checker.catalog

    def report(self, location: int | None, problem: str, fix: str) -> None:
        line = self.text.count("\n", 0, max(location or 0, 0)) + 1
        self.c.problems.append(Problem(self.path, line, None, problem, fix))

    def table(self, rangevar: ast.RangeVar, must_exist: bool = True, missing_ok: bool = False):
        key = self.catalog.key(rangevar.schemaname, rangevar.relname)
        if self.catalog.columns(key) is None and must_exist and not missing_ok:
            self.report(rangevar.location, f"table {'.'.join(key)} does not exist in the target, and no earlier "
                        "statement of the migration creates it",
                        "correct the table name (schema.table when it is not on the search_path), or create it "
                        "earlier in up.sql")
            return key, None
        return key, self.catalog.columns(key)

    def need_column(self, key, cols, column: str, location, what: str, missing_ok: bool = False) -> bool:
        if cols is None or column in cols or missing_ok:
            return True
        if self.c.resumed and self.phase != "backfill" and key == self.c.table and column in self._removed():
            return True
        provided = "neither the table nor up.sql provides it" if self.phase != "expand" else \
            "and no earlier statement adds it"
        self.report(location, f"{'.'.join(key)} has no column '{column}' ({what}; {provided}; "
                    f"{self.c.columns_hint(key)})",
                    "correct the column name, or add the column first: ALTER TABLE ... ADD COLUMN IF NOT EXISTS "
                    "in up.sql (or an add_column operation)")
        return False

    def _removed(self) -> set[str]:
        removed = set()
        for op in self.c.migration.spec.operations:
            removed |= {op.column} if op.op in ("rename_column", "drop_column") else set()
            removed |= set(op.columns) if op.op == "split_table" else set()
        return removed

    def check(self, node) -> None:
        handler = getattr(self, f"_{type(node).__name__}", None)
        if handler is not None:
            handler(node)

    # CREATE TABLE
    def _CreateStmt(self, node) -> None:
        key = self.catalog.key(node.relation.schemaname, node.relation.relname)
        if self.catalog.columns(key) is not None:
            if not node.if_not_exists and not self.c.resumed:
                self.report(node.relation.location, f"table {'.'.join(key)} already exists in the target",
                            "choose another name, or write CREATE TABLE IF NOT EXISTS when the existing table is "
                            "meant")
            return
        cols = {}
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                cols[element.colname] = self.column_type(element) or ""
        self.catalog.tables[key] = cols

    def column_type(self, coldef: ast.ColumnDef) -> str | None:
        if coldef.typeName is None:
            return None
        typename = RawStream()(coldef.typeName)
        if typename.split("(")[0].strip().lower() in ("serial", "bigserial", "smallserial", "serial4", "serial8",
                                                      "serial2"):
            return typename
        canonical, why = self.catalog.canonical_type(typename)
        if canonical is None:
            self.report(coldef.location, f"column {coldef.colname}: {why}",
                        "use a type the target has, or create it first (CREATE TYPE / CREATE DOMAIN earlier in "
                        "up.sql, or an earlier migration)")
        return canonical

    # ALTER TABLE
    def _AlterTableStmt(self, node) -> None:
        if _enum(node.objtype) not in ("OBJECT_TABLE", None):
            return
        key, cols = self.table(node.relation, missing_ok=bool(node.missing_ok))
        if cols is None:
            return
        for cmd in node.cmds or ():
            kind = _enum(cmd.subtype)
            if kind == "AT_AddColumn":
                coldef = cmd.def_
                canonical = self.column_type(coldef)
                if coldef.colname in cols:
                    existing = cols[coldef.colname]
                    if not cmd.missing_ok and not self.c.resumed:
                        self.report(coldef.location, f"{'.'.join(key)} already has a column '{coldef.colname}'",
                                    "choose another name, or write ADD COLUMN IF NOT EXISTS when the existing "
                                    "column is meant")
                    elif canonical and existing and existing != canonical:
                        self.report(coldef.location, f"{'.'.join(key)} already has a column '{coldef.colname}' of "
                                    f"type {existing}, not {canonical}; ADD COLUMN IF NOT EXISTS would keep the old "
                                    "one", f"choose another column name, or write the type {existing}")
                else:
                    cols[coldef.colname] = canonical or ""
                    if key == self.c.table and self.phase == "expand":
                        self.c.up_columns.add(coldef.colname)
            elif kind == "AT_DropColumn":
                if self.need_column(key, cols, cmd.name, _location(cmd, node), "ALTER TABLE ... DROP COLUMN drops it",
                                    missing_ok=bool(cmd.missing_ok)):
                    cols.pop(cmd.name, None)
            elif kind in ("AT_AlterColumnType", "AT_SetNotNull", "AT_DropNotNull", "AT_ColumnDefault",
                          "AT_SetStatistics", "AT_SetStorage", "AT_SetCompression", "AT_DropExpression",
                          "AT_AddIdentity", "AT_DropIdentity", "AT_SetIdentity"):
                self.need_column(key, cols, cmd.name, _location(cmd, node), "ALTER COLUMN changes it")
                if kind == "AT_AlterColumnType" and cmd.def_ is not None and cmd.def_.typeName is not None:
                    canonical = self.column_type(cmd.def_)
                    if canonical and cmd.name in cols:
                        cols[cmd.name] = canonical
            elif kind == "AT_AddConstraint" and cmd.def_ is not None:
                name = getattr(cmd.def_, "conname", None)
                if name:
                    if self.catalog.constraint_exists(key, name) and not self.c.resumed:
                        self.report(_location(cmd.def_, node), f"constraint {name} already exists on "
                                    f"{'.'.join(key)}", "choose another constraint name")
                    self.catalog.constraints[(*key, name)] = True
                for column in _strings(getattr(cmd.def_, "keys", None)) + _strings(getattr(cmd.def_, "fk_attrs", None)):
                    self.need_column(key, cols, column, _location(cmd.def_, node), "the constraint covers it")

    # ALTER TABLE ... RENAME COLUMN / RENAME TO
    def _RenameStmt(self, node) -> None:
        if node.relation is None or _enum(node.renameType) not in ("OBJECT_COLUMN", "OBJECT_TABLE"):
            return
        key, cols = self.table(node.relation, missing_ok=bool(node.missing_ok))
        if cols is None:
            return
        if _enum(node.renameType) == "OBJECT_COLUMN":
            if self.need_column(key, cols, node.subname, node.relation.location, "RENAME COLUMN renames it"):
                if node.newname in cols and not self.c.resumed:
                    self.report(node.relation.location, f"{'.'.join(key)} already has a column '{node.newname}'",
                                "choose another new name")
                cols[node.newname] = cols.pop(node.subname, "")
        else:
            self.catalog.tables[(key[0], node.newname)] = cols
            self.catalog.tables[key] = None

    # CREATE INDEX
    def _IndexStmt(self, node) -> None:
        key, cols = self.table(node.relation)
        if cols is None:
            return
        for elem in node.indexParams or ():
            if isinstance(elem, ast.IndexElem) and elem.name:
                self.need_column(key, cols, elem.name, node.relation.location, "the index covers it")
        for ref in _column_refs(node.whereClause):
            name = _ref_column(ref, {key[1]})
            if name:
                self.need_column(key, cols, name, ref.location, "the index predicate reads it")
        if node.idxname:
            exists = self.catalog.relation_exists(key[0], node.idxname)
            if exists and not node.if_not_exists and not self.c.resumed:
                self.report(node.relation.location, f"index {key[0]}.{node.idxname} already exists",
                            "choose another index name, or write CREATE INDEX ... IF NOT EXISTS when the existing "
                            "index is meant")
            self.catalog.relations[(key[0], node.idxname)] = True

    # UPDATE (backfill.sql, and any UPDATE in up.sql / cleanup.sql)
    def _UpdateStmt(self, node) -> None:
        key, cols = self.table(node.relation)
        if cols is None:
            return
        for target in node.targetList or ():
            if isinstance(target, ast.ResTarget) and target.name:
                self.need_column(key, cols, target.name, target.location, "UPDATE ... SET writes it")
        names = {key[1]} | ({node.relation.alias.aliasname} if node.relation.alias else set())
        bare = not node.fromClause  # with FROM, an unqualified name may belong to another table
        exprs = [t.val for t in node.targetList or () if isinstance(t, ast.ResTarget)] + [node.whereClause]
        for ref in _column_refs(exprs):
            name = _ref_column(ref, names, bare)
            if name:
                self.need_column(key, cols, name, ref.location, "the UPDATE reads it")

    def _DeleteStmt(self, node) -> None:
        self.table(node.relation)

    def _InsertStmt(self, node) -> None:
        key, cols = self.table(node.relation)
        for target in node.cols or ():
            if isinstance(target, ast.ResTarget) and target.name:
                self.need_column(key, cols, target.name, target.location, "the INSERT writes it")
