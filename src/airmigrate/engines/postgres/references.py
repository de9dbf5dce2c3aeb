"""PostgreSQL's reference check (the preflight's airmigrate.stages.references): every table, column, type and index the migration refers to exists (or does not, for what it
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

from typing import TYPE_CHECKING

import pglast
import yaml

from airmigrate.engines.postgres.references_catalog import Problem, _Catalog, _column_refs, _ref_column
from airmigrate.engines.postgres.references_sql import _SqlStatement
from airmigrate.sqlfiles import bound_placeholders

if TYPE_CHECKING:  # the migration is read as data; the spec package sits above the engines
    from airmigrate.spec import Migration


def find_problems(conn, migration: Migration, resumed: bool) -> list[Problem]:
    """Every reference problem of the migration replayed against the target's catalog (see the module's doc)."""
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


class _Checker:
    def __init__(self, conn, migration: Migration, resumed: bool):
        self.migration, self.resumed = migration, resumed
        self.catalog = _Catalog(conn)
        self.problems: list[Problem] = []
        spec = migration.spec
        self.table = (spec.schema_name, spec.table_name)
        self.spec_path = migration.spec_path
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

    def _op_delete_rows(self, i, op) -> None:
        self.expression_columns(op.where, ["operations", i, "where"], "delete_rows condition")

    def _op_move_rows(self, i, op) -> None:
        self.expression_columns(op.where, ["operations", i, "where"], "move_rows condition")
        for column, expression in op.columns.items():
            self.expression_columns(expression, ["operations", i, "columns", column], f"the expression of {column}")
        destination = (self.table[0], op.to)
        if self.catalog.columns(destination) is None:
            if not op.create and not self.resumed:
                self.spec_problem(["operations", i, "to"], f"table {'.'.join(destination)} does not exist in the "
                                  "target", "correct the name, create it in an earlier migration, or set "
                                  "`create: true` to make it LIKE the table")
            return
        for column in (op.columns or {}).keys() | {self.migration.spec.key}:
            self._need_column(["operations", i, "columns" if op.columns else "to"], column,
                              f"move_rows into {op.to} writes", table=destination)

    def _op_create_table(self, i, op) -> None:
        self._new_name(["table"], f"table {'.'.join(self.table)}", self.catalog.columns(self.table) is not None)
        missing = [k for k in self.migration.spec.key_columns if k not in op.columns]
        if missing and not op.primary_key:
            self.spec_problem(["operations", i, "columns"], f"the key {', '.join(missing)} is not among the new "
                              f"table's columns ({', '.join(op.columns)})", "add it to `columns`, or set `key` "
                              "(and `primary_key`) to one of them")

    def _op_rename_table(self, i, op) -> None:
        self._new_name(["operations", i, "to"], f"table or view {op.to}", self.catalog.relation_exists(self.table[0], op.to))

    def _op_rename_index(self, i, op) -> None:
        where = ["operations", i]
        if not self.catalog.relation_exists(self.table[0], op.name) and not self.resumed:
            self.spec_problem(where + ["name"], f"index {self.table[0]}.{op.name} does not exist in the target",
                              "correct the index name (`\\di` in psql lists them)")
        self._new_name(where + ["to"], f"index {op.to}", self.catalog.relation_exists(self.table[0], op.to))

    def _op_rename_constraint(self, i, op) -> None:
        where = ["operations", i]
        if not self.catalog.constraint_exists(self.table, op.name) and not self.resumed:
            self.spec_problem(where + ["name"], f"constraint {op.name} does not exist on {self.table_name}",
                              "correct the constraint name (`\\d <table>` in psql lists them)")
        self._new_name(where + ["to"], f"constraint {op.to} on {self.table_name}",
                       self.catalog.constraint_exists(self.table, op.to))

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
