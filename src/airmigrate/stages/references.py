"""Preflight: every table, column, type and index the migration refers to exists (or does not, for what it
creates), before the backup and before any change.

The migration is replayed against a model of the target's catalog in the order it runs: up.sql, the declared
operations' expand, backfill.sql and the backfill spec, the operations' contract, cleanup.sql. A column that
up.sql (or an operation) adds is therefore known to backfill.sql, and only what neither the table nor an
earlier step provides is reported. Each finding names ``<file>:<line>`` (migration.yaml with the field, e.g.
``operations[0].column``) and the fix; all of them are reported at once.

A resumed run (history running, failed or expanded) has already created part of what the migration creates:
"must not exist yet" checks are skipped then, and so are "must exist" checks of what its contract removes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pglast
import psycopg
import yaml
from pglast import ast
from pglast.stream import RawStream

from airmigrate import state
from airmigrate.errors import PreflightError
from airmigrate.spec import SPEC_FILE, Migration, bound_placeholders

RESUMABLE = ("running", "failed", "expanded")


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int | None
    field: str | None
    problem: str
    fix: str

    def __str__(self) -> str:
        where = f"{_shown(self.file)}:{self.line}" if self.line else f"{_shown(self.file)}"
        return f"{where}: {self.field + ': ' if self.field else ''}{self.problem}. Fix: {self.fix}"


def check_references(conn, migration: Migration) -> None:
    """Raise PreflightError naming the file, the line and the missing (or already existing) object."""
    problems = find_problems(conn, migration)
    if problems:
        raise PreflightError(
            f"{migration.id} refers to {len(problems)} object(s) the target does not have (or already has); "
            "nothing was changed:\n" + "\n".join(f"  {p}" for p in problems))


def resumed_run(conn, migration: Migration) -> bool:
    """Has an earlier run of this migration already started changing the target?"""
    if conn.execute("SELECT to_regclass('airmigrate.history')").fetchone()[0] is None:
        return False
    hist = state.history(conn, migration.id)
    return bool(hist and hist["status"] in RESUMABLE)


def find_problems(conn, migration: Migration, resumed: bool | None = None) -> list[Problem]:
    resumed = resumed_run(conn, migration) if resumed is None else resumed
    checker = _Checker(conn, migration, resumed)
    spec = migration.spec
    checker.sql_file(spec.up or "up.sql", migration.up_sql, "expand")
    checker.operations_expand()
    if migration.backfill_sql:
        checker.sql_file(spec.backfill.sql, migration.backfill_sql, "backfill")
    checker.backfill_spec()
    checker.operations_contract()
    if migration.cleanup_sql:
        checker.sql_file(spec.cleanup, migration.cleanup_sql, "cleanup")
    seen, problems = set(), []
    for problem in checker.problems:  # one line per mistake: a name misspelt twice in a file is reported once
        if (problem.file, problem.field, problem.problem) not in seen:
            seen.add((problem.file, problem.field, problem.problem))
            problems.append(problem)
    return problems


# ---------------------------------------------------------------------------------------------------------------

def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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


class _Checker:
    def __init__(self, conn, migration: Migration, resumed: bool):
        self.migration, self.resumed = migration, resumed
        self.catalog = _Catalog(conn)
        self.problems: list[Problem] = []
        spec = migration.spec
        self.table = (spec.schema_name, spec.table_name)
        self.spec_path = migration.folder / SPEC_FILE
        self._yaml = None
        self.up_columns: set[str] = set()    # columns up.sql adds to the migration's table (for the hints)

    # -- reporting -------------------------------------------------------------------------------------------

    def spec_problem(self, path: list, problem: str, fix: str) -> None:
        field = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))
        self.problems.append(Problem(self.spec_path, self._spec_line(path), field, problem, fix))

    def _spec_line(self, path: list) -> int | None:
        if self._yaml is None:
            try:
                self._yaml = yaml.compose(self.spec_path.read_text())
            except (OSError, yaml.YAMLError):
                return None
        node, line = self._yaml, None
        for part in path:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                match = next(((k, v) for k, v in node.value if k.value == part), None)
                if match is None:
                    return line
                line, node = match[0].start_mark.line + 1, match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    # -- helpers ---------------------------------------------------------------------------------------------

    @property
    def table_name(self) -> str:
        return ".".join(self.table)

    def live(self) -> dict[str, str]:
        return self.catalog.columns(self.table) or {}

    def check_type(self, typename: str, report) -> str | None:
        canonical, why = self.catalog.canonical_type(typename)
        if canonical is None:
            report(why, f"use a type the target has (e.g. text, bigint, numeric(12,2)), or create the type "
                        f"first (CREATE TYPE / CREATE DOMAIN in up.sql, or an earlier migration)")
        return canonical

    def missing_column(self, column: str, table: tuple[str, str] | None = None) -> bool:
        cols = self.catalog.columns(table or self.table)
        return cols is not None and column not in cols

    def columns_hint(self, table: tuple[str, str] | None = None) -> str:
        table = table or self.table
        if self.catalog.columns(table) is None:
            return "no such table"
        if table not in self.catalog.original:
            return f"created by the migration with: {', '.join(self.catalog.columns(table)) or 'none'}"
        return f"its columns in the target: {', '.join(self.catalog.original[table]) or 'none'}"

    def expression_columns(self, expression: str, where: list, role: str) -> None:
        """Columns a row expression (backfill, default, using, where, check) reads must exist."""
        try:
            tree = pglast.parse_sql(f"SELECT {expression}")[0].stmt.targetList[0].val
        except Exception:  # noqa: BLE001  (the spec checked it parses; nothing to add here)
            return
        for ref in _column_refs(tree):
            name = _ref_column(ref, {self.table[1]})
            if name and self.missing_column(name):
                self.spec_problem(where, f"the {role} `{expression}` reads column '{name}', which {self.table_name} "
                                  f"does not have ({self.columns_hint()})",
                                  "correct the column name, or add the column first (up.sql or an earlier "
                                  "add_column)")

    # -- the declared operations -----------------------------------------------------------------------------

    def operations_expand(self) -> None:
        for i, op in enumerate(self.migration.spec.operations):
            getattr(self, f"_op_{op.op}", lambda *a: None)(i, op)

    def _need_column(self, where: list, column: str, what: str, removed_by_contract: bool = False,
                     table: tuple[str, str] | None = None) -> bool:
        table = table or self.table
        if not self.missing_column(column, table):
            return True
        if removed_by_contract and self.resumed:  # an earlier run's contract may have removed it already
            return False
        self.spec_problem(where, f"{'.'.join(table)} has no column '{column}' ({self.columns_hint(table)}), which "
                          f"{what}", "correct the column name (PostgreSQL folds unquoted names to lowercase)")
        return False

    def _new_name(self, where: list, thing: str, exists: bool) -> None:
        """What the migration creates must not be there yet (unless an earlier run of it made it)."""
        if exists and not self.resumed:
            self.spec_problem(where, f"{thing} already exists in the target",
                              "choose another name; if it is a leftover of something else, drop it first")

    def _op_add_column(self, i, op) -> None:
        where = ["operations", i]
        canonical = self.check_type(op.type, lambda why, fix: self.spec_problem(where + ["type"], why, fix))
        existing = self.live().get(op.column)
        if existing is not None and canonical is not None and existing != canonical:
            self.spec_problem(where + ["column"], f"{self.table_name} already has a column '{op.column}' of type "
                              f"{existing}, not {canonical}; ADD COLUMN IF NOT EXISTS would keep the old one",
                              f"choose another column name, or set `type: {existing}` if that column is this "
                              "migration's own from an earlier run")
        for field, role in (("default", "default"), ("backfill", "backfill expression")):
            if getattr(op, field):
                self.expression_columns(getattr(op, field), where + [field], role)
        if existing is None and self.catalog.columns(self.table) is not None:
            self.live()[op.column] = canonical or op.type

    def _op_rename_column(self, i, op) -> None:
        where = ["operations", i]
        self._need_column(where + ["column"], op.column, "rename_column renames", removed_by_contract=True)
        self._new_name(where + ["to"], f"column {self.table_name}.{op.to}", op.to in self.live())
        cols = self.catalog.columns(self.table)
        if cols is not None:
            cols.setdefault(op.to, cols.get(op.column, "text"))

    def _op_change_column_type(self, i, op) -> None:
        where = ["operations", i]
        self.check_type(op.type, lambda why, fix: self.spec_problem(where + ["type"], why, fix))
        self._need_column(where + ["column"], op.column, "change_column_type converts")
        if op.using:
            self.expression_columns(op.using, where + ["using"], "`using` expression")
        new = f"{op.column}__new"[:63]
        self._new_name(where + ["column"], f"the helper column {self.table_name}.{new}", new in self.live())
        cols = self.catalog.columns(self.table)
        if cols is not None:
            cols.setdefault(new, op.type)

    def _op_drop_column(self, i, op) -> None:
        self._need_column(["operations", i, "column"], op.column, "drop_column drops", removed_by_contract=True)

    def _op_split_table(self, i, op) -> None:
        where = ["operations", i]
        for j, column in enumerate(op.columns):
            self._need_column(where + ["columns", j], column, "split_table moves", removed_by_contract=True)
        target = (self.table[0], op.new_table)
        self._new_name(where + ["new_table"], f"table {target[0]}.{op.new_table}",
                       self.catalog.relation_exists(*target))
        if self.catalog.tables.get(target) is None:
            self.catalog.tables[target] = {self.migration.spec.key_columns[0]: "", **{c: "" for c in op.columns}}

    def _index_like(self, where: list, name: str, columns: list[str], what: str) -> None:
        for j, column in enumerate(columns):
            self._need_column(where + ["columns", j], column, f"{what} '{name}' covers")
        exists = self.catalog.relation_exists(self.table[0], name) or self.catalog.constraint_exists(self.table, name)
        self._new_name(where + ["name"], f"an index or constraint named {name}", exists)
        self.catalog.relations[(self.table[0], name)] = True

    def _op_add_index(self, i, op) -> None:
        self._index_like(["operations", i], op.name, op.columns, "index")
        if op.where:
            self.expression_columns(op.where, ["operations", i, "where"], "`where` predicate")

    def _op_add_unique(self, i, op) -> None:
        self._index_like(["operations", i], op.name, op.columns, "unique constraint")
        self.catalog.constraints[(*self.table, op.name)] = True

    def _op_add_check(self, i, op) -> None:
        where = ["operations", i]
        self.expression_columns(op.expression, where + ["expression"], "check expression")
        self._new_name(where + ["name"], f"constraint {op.name} on {self.table_name}",
                       self.catalog.constraint_exists(self.table, op.name))
        self.catalog.constraints[(*self.table, op.name)] = True

    def _op_add_foreign_key(self, i, op) -> None:
        where = ["operations", i]
        for j, column in enumerate(op.columns):
            self._need_column(where + ["columns", j], column, f"foreign key '{op.name}' covers")
        schema, _, name = op.references_table.rpartition(".")
        referenced = self.catalog.key(schema or None, name)
        if self.catalog.columns(referenced) is None:
            self.spec_problem(where + ["references_table"], f"table {op.references_table} does not exist in the "
                              "target", "correct the table name (schema.table when it is not on the search_path), "
                              "or create the table first")
        else:
            for j, column in enumerate(op.references_columns):
                self._need_column(where + ["references_columns", j], column, f"foreign key '{op.name}' references",
                                  table=referenced)
        self._new_name(where + ["name"], f"constraint {op.name} on {self.table_name}",
                       self.catalog.constraint_exists(self.table, op.name))
        self.catalog.constraints[(*self.table, op.name)] = True

    def _op_drop_table(self, i, op) -> None:
        table = (self.table[0], op.table)
        if self.catalog.columns(table) is None and not self.resumed:
            self.spec_problem(["operations", i, "table"], f"table {'.'.join(table)} does not exist in the target",
                              "correct the table name (drop_table works in the migration's schema)")

    def operations_contract(self) -> None:
        cols = self.catalog.columns(self.table)
        if cols is None:
            return
        for op in self.migration.spec.operations:
            if op.op == "rename_column":
                cols.pop(op.column, None)
            elif op.op == "drop_column":
                cols.pop(op.column, None)
            elif op.op == "split_table":
                for column in op.columns:
                    cols.pop(column, None)
            elif op.op == "change_column_type":
                cols.pop(f"{op.column}__new"[:63], None)

    # -- the backfill spec -----------------------------------------------------------------------------------

    def backfill_spec(self) -> None:
        backfill = self.migration.spec.backfill
        if backfill is None:
            return
        fix = ("add the column first: ALTER TABLE ... ADD COLUMN IF NOT EXISTS in up.sql, or an add_column "
               "operation; or correct the name")
        for field, names, role in (("columns", backfill.columns, "the backfill writes"),
                                   ("reads", backfill.reads, "the transform reads")):
            for j, column in enumerate(names):
                if self.missing_column(column):
                    self.spec_problem(["backfill", field, j], f"{self.table_name} has no column '{column}' "
                                      f"({self.columns_hint()}) and neither up.sql nor an operation adds it; {role} "
                                      "it", fix)
        for column, expression in backfill.sync.items():
            if self.missing_column(column):
                self.spec_problem(["backfill", "sync", column], f"{self.table_name} has no column '{column}' "
                                  "for the sync trigger to keep up to date", fix)
            self.expression_columns(expression, ["backfill", "sync", column], "sync expression")

    # -- SQL files -------------------------------------------------------------------------------------------

    def sql_file(self, name: str, text: str, phase: str) -> None:
        path = self.migration.folder / name
        parsable = bound_placeholders(text)
        try:
            statements = pglast.parse_sql(parsable)
        except pglast.parser.ParseError:
            return  # load_migration already refused it
        for raw in statements:
            _SqlStatement(self, path, parsable, phase).check(raw.stmt)


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
