"""The MySQL / MariaDB engine object: each method hands over to the module that holds that knowledge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airmigrate.engines.base import ONLINE, PT_OSC, BatchWrite, Engine
from airmigrate.engines.mysql import (
    backup,
    bulk,
    catalog,
    clients,
    connection,
    console_sql,
    ddl,
    demo,
    dialect,
    leases,
    lint_rules,
    maintenance,
    online,
    op_columns,
    op_constraints,
    op_rows,
    op_split,
    operations,
    pacing_sql,
    parsing,
    replication,
    rewrite,
    state_sql,
)
from airmigrate.engines.operation_sql import RowsJob, SplitJob
from airmigrate.engines.sql import Composable
from airmigrate.engines.target import Target
from airmigrate.findings import Finding
from airmigrate.locks import Analysis


class MySQLEngine(Engine):
    name = "mysql"

    def parse_url(self, url: str) -> dict[str, Any]:
        return connection.parse_url(url)

    def default_target(self) -> dict[str, Any]:
        return dict(connection.DEFAULTS)

    def conninfo(self, target: Target) -> str:
        return connection.conninfo(target)

    def client_env(self, target: Target) -> dict[str, str]:
        """mysqldump and the mysql client read the host, the port and the password from the environment (the
        password never goes on a command line); they have no variable for the user: it goes on theirs (-u)."""
        env = {"MYSQL_HOST": target.host, "MYSQL_TCP_PORT": str(target.port)}
        if target.password:
            env["MYSQL_PWD"] = target.password
        return env

    def connect(self, target: Target, autocommit: bool = False, application_name: str | None = None) -> Any:
        return connection.connect(target, autocommit=autocommit, application_name=application_name)

    def sqlalchemy_url(self, url: str) -> str:
        return "mysql+pymysql://" + url.split("://", 1)[1]

    def render(self, piece: Composable, context: Any = None) -> str:
        return connection.render(piece, context)

    def is_transient(self, exc: BaseException) -> bool:
        return connection.is_transient(exc)

    def error_kind(self, exc: BaseException) -> str | None:
        return connection.error_kind(exc)

    def split_statements(self, text: str) -> list[str]:
        return parsing.split_statements(text)

    def group_statements(self, statements: list[str]) -> list[tuple[bool, list[str]]]:
        return parsing.group_statements(statements)

    def needs_autocommit(self, statement: str) -> bool:
        return parsing.needs_autocommit(statement)

    def run_ddl(self, target: Target, sql_text: str, **options: Any) -> list[str]:
        return ddl.run_ddl(target, sql_text, **options)

    def run_group(self, target: Target, group: list[str], autocommit: bool, **options: Any) -> None:
        ddl.run_group(target, group, autocommit, **options)

    def as_run(self, statements: list[str], conn: Any = None) -> list[str]:
        return [shown for statement in statements for shown in dialect.shown(statement, conn)]

    def set_timeouts(self, cur: Any, lock_timeout_ms: int, statement_timeout_ms: int, local: bool) -> None:
        ddl.set_timeouts(cur, lock_timeout_ms, statement_timeout_ms, local)

    def estimate_rows(self, conn: Any, schema: str, table: str) -> int:
        return ddl.estimate_rows(conn, schema, table)

    def syntax_error(self, text: str) -> tuple[int, str] | None:
        return parsing.syntax_error(text)

    def one_select(self, text: str) -> str:
        return parsing.one_select(text)

    def check_type(self, text: str) -> str:
        return parsing.check_type(text)

    def check_expression(self, text: str) -> str:
        return parsing.check_expression(text)

    def on_record(self, expression: str, record: str) -> str:
        return parsing.on_record(expression, record)

    def mirror_index(self, definition: str, old: str, new: str, name: str,
                     relation: tuple[str, str] | None = None) -> str:
        return rewrite.mirror_index(definition, old, new, name, relation)

    def constraint_not_valid(self, add_constraint: str, old: str, new: str) -> str:
        return rewrite.constraint_not_valid(add_constraint, old, new)

    def foreign_key_not_valid(self, add_constraint: str, referenced_old: str, referenced_new: str) -> str:
        return rewrite.foreign_key_not_valid(add_constraint, referenced_old, referenced_new)

    def index_on(self, definition: str, name: str, table: str) -> str:
        return rewrite.index_on(definition, name, table)

    def drops_anything(self, text: str) -> bool:
        return rewrite.drops_anything(text)

    def data_losing_statements(self, text: str) -> list[str]:
        return rewrite.data_losing_statements(text)

    def reference_problems(self, conn: Any, migration: Any, resumed: bool) -> list:
        return catalog.find_problems(conn, migration, resumed)

    def sql_touched(self, text: str, schema: str, table: str | None) -> set[tuple[str, str]]:
        return rewrite.sql_touched(text, schema, table)

    def columns_read(self, expression: str) -> list[str]:
        return parsing.columns_read(expression)

    def lint_sql(self, path: Path, text: str, role: str, version: str, key_columns: tuple[str, ...] | None,
                 generated: bool) -> list[Finding]:
        return lint_rules.lint_sql(path, text, role, version, key_columns, generated)

    lock_modes = online.LOCK_MODES
    write_blocking = online.WRITE_BLOCKING

    def analyze(self, statement: str, conn: Any = None) -> Analysis:
        return online.analyze(statement, conn)

    def not_null_proofs(self) -> catalog.NotNullProofs:
        return catalog.NotNullProofs()

    def dead_tuples(self, conn: Any, schema: str, table: str) -> int:
        return maintenance.dead_tuples(conn, schema, table)

    def vacuum(self, conn: Any, schema: str, table: str, lock_timeout_ms: int) -> bool:
        return maintenance.vacuum(conn, schema, table, lock_timeout_ms)

    def estimate_matching(self, conn: Any, schema: str, table: str, where: str) -> tuple[int, int]:
        return maintenance.estimate_matching(conn, schema, table, where)

    def referencing_keys(self, conn: Any, schema: str, table: str) -> list[dict]:
        return maintenance.referencing_keys(conn, schema, table)

    # -- validation
    gx_source = "sql"  # GX 1.x's generic SQLAlchemy source (mysql+pymysql://)

    def default_schema(self, target: Target) -> str:
        return target.dbname

    def table_columns(self, conn: Any, schema: str, table: str) -> list[str] | None:
        return catalog.table_columns(conn, schema, table)

    # -- backups and online schema change ------------------------------------------------------------------------
    dump_suffix = ".sql"
    executors = (ONLINE, PT_OSC)
    executor_rules = ("mysql-table-copy",)   # pt-osc copies the table online: what the rule warns about is handled

    def dump_table(self, target: Target, schema: str, table: str, path: Path) -> None:
        backup.dump_table(target, schema, table, path)

    def restore_table(self, target: Target, path: Path, schema: str) -> None:
        backup.restore_table(target, path, schema)

    def dump_binary(self) -> str:
        return clients.binary(clients.DUMP)

    def relation_bytes(self, conn: Any, schema: str, table: str) -> int:
        return backup.relation_bytes(conn, schema, table)

    def online_problems(self, conn: Any, statements: list[str], executor: str) -> list[str]:
        return ddl.online_problems(conn, statements, executor)

    # -- state tables and claims
    def state_sql(self) -> Any:
        return state_sql

    def create_state_tables(self, conn: Any) -> None:
        state_sql.create_state_tables(conn)

    def xact_lock(self, conn: Any, key: tuple[int, int]) -> None:
        state_sql.xact_lock(conn, key)

    def lease_try(self, conn: Any, key: tuple[int, int], exclusive: bool, label: str) -> bool:
        return leases.lease_try(conn, key, exclusive, label)

    def lease_release(self, conn: Any, key: tuple[int, int]) -> None:
        leases.lease_release(conn, key)

    def lease_sessions(self, conn: Any, key: tuple[int, int], exclude: set[int]) -> list[tuple]:
        return leases.lease_sessions(conn, key, exclude)

    # -- pacing signals
    def paces_by_latency(self) -> bool:
        """Yes: information_schema (the application's transactions, its lock waits on ours), performance_schema
        when it is on (its statements), the round-trip canary (see pacing_sql)."""
        return True

    def pacing_sql(self) -> Any:
        return pacing_sql

    def replication_lag_s(self, conn: Any, replicas: tuple[str, ...]) -> float | None:
        return replication.lag_s(conn, replicas)

    # -- a DDL step a crash interrupted
    def already_in_place(self, exc: BaseException) -> bool:
        return connection.already_in_place(exc)

    # -- operations
    def operation_refusal(self, op: str) -> tuple[str, str] | None:
        return operations.refusal(op)

    # -- operations: rows (delete_rows, move_rows)
    def rows_expand(self, job: RowsJob) -> list[str]:
        return op_rows.expand(job)

    def rows_batch(self, job: RowsJob) -> list[str]:
        return op_rows.batch(job)

    def rows_contract(self, job: RowsJob) -> list[str]:
        return op_rows.contract(job)

    def rows_down(self, job: RowsJob) -> list[str]:
        return op_rows.down(job)

    def rows_down_batch(self, job: RowsJob) -> list[str]:
        return op_rows.down_batch(job)

    def rows_down_contract(self, job: RowsJob) -> list[str]:
        return op_rows.down_contract(job)

    # -- operations: split_table
    def split_table_sql(self, job: SplitJob) -> dict[str, list[str]] | None:
        return op_split.steps(job)

    def split_refusals(self, structure: dict | None, columns: list[str], key: tuple[str, ...]) -> list[str]:
        return op_split.refusals(structure, columns, key)

    # -- operations: indexes, constraints, tables
    def partial_index_refusal(self) -> tuple[str, str] | None:
        return op_constraints.PARTIAL_INDEX

    def create_index_sql(self, schema: str, table: str, name: str, columns: list[str], unique: bool = False,
                         where: str | None = None) -> str:
        return op_constraints.create_index(schema, table, name, columns, unique, where)

    def drop_index_sql(self, schema: str, table: str, name: str) -> str:
        return op_constraints.drop_index(schema, table, name)

    def add_unique_sql(self, schema: str, table: str, name: str, columns: list[str]) -> list[str]:
        return op_constraints.add_unique(schema, table, name, columns)

    def drop_unique_sql(self, schema: str, table: str, name: str) -> list[str]:
        return op_constraints.drop_unique(schema, table, name)

    def add_check_sql(self, schema: str, table: str, name: str, expression: str) -> list[str]:
        return op_constraints.add_check(schema, table, name, expression)

    def drop_check_sql(self, schema: str, table: str, name: str) -> str:
        return op_constraints.drop_constraint(schema, table, name)

    def add_foreign_key_sql(self, schema: str, table: str, name: str, columns: list[str], references: tuple[str, ...],
                            references_columns: list[str], on_delete: str, key: str, key_type: str) -> list[str]:
        return op_constraints.add_foreign_key(schema, table, name, columns, references, references_columns,
                                              on_delete, key, key_type)

    def drop_foreign_key_sql(self, schema: str, table: str, name: str) -> str:
        return op_constraints.drop_foreign_key(schema, table, name)

    def rename_index_sql(self, schema: str, table: str, old: str, new: str) -> str:
        return op_constraints.rename_index(schema, table, old, new)

    def rename_constraint_sql(self, schema: str, table: str, old: str, new: str) -> str:
        return operations.rename_constraint_refused()

    def rename_table_sql(self, schema: str, table: str, to: str) -> dict[str, list[str]]:
        return op_constraints.rename_table(schema, table, to)

    def retire_table_sql(self, schema: str, table: str, retired: str) -> dict[str, list[str]]:
        return op_constraints.retire_table(schema, table, retired)

    def drop_created_table_sql(self, schema: str, table: str, retired: str) -> str:
        return op_constraints.drop_created_table(schema, table, retired)

    # -- operations: columns (triggers, column DDL)
    def computed_column_trigger(self, name: str, table: tuple[str, str], column: str, expression: str) -> list[str]:
        return op_columns.computed_column_trigger(name, table, column, expression)

    def two_way_sync_trigger(self, name: str, table: tuple[str, str], old: str, new: str) -> list[str]:
        return op_columns.two_way_sync_trigger(name, table, old, new)

    def cast_back_trigger(self, name: str, table: tuple[str, str], source: str, target: str, type_: str) -> list[str]:
        return op_columns.cast_back_trigger(name, table, source, target, type_)

    def drop_row_trigger(self, name: str, table: tuple[str, str]) -> list[str]:
        return op_columns.drop_row_trigger(name, table)

    def distinct(self, a: str, b: str) -> str:
        return op_columns.distinct(a, b)

    def cast(self, expression: str, type_: str) -> str:
        return op_columns.cast(expression, type_)

    def set_not_null(self, table: tuple[str, str], column: str, type_: str, default: str | None) -> list[str]:
        return op_columns.set_not_null(table, column, type_, default)

    def swap_columns(self, table: tuple[str, str], trigger: str, old: str, new: str, retired: str) -> list[str]:
        return op_columns.swap_columns(table, trigger, old, new, retired)

    def restore_dropped_column(self, table: tuple[str, str], column: str, type_: str, structure: dict | None
                               ) -> tuple[list[str], list[str]]:
        return op_columns.restore_dropped_column(table, column, type_, structure)

    def carry_column_sql(self, structure: dict | None, column: str, onto: str, final: str, new_type: str | None = None
                         ) -> tuple[list[str], list[str], list[str]] | None:
        return op_columns.carry_column(structure, column, onto, final, new_type)

    def type_change_probe(self, structure: dict | None, column: str, new_type: str) -> list[str] | None:
        return op_columns.type_change_probe(structure, column, new_type)

    def replacement_refusals(self, structure: dict | None, column: str) -> list[str]:
        return op_columns.replacement_refusals(structure, column)

    def fill_back_from_snapshot(self, table: tuple[str, str], key: str, back: str, column: str, original: str,
                                snapshot: tuple[str, str]) -> str:
        return op_columns.fill_back_from_snapshot(table, key, back, column, original, snapshot)

    def placed_after(self, column: str) -> str:
        return op_columns.placed_after(column)

    def drop_or_rename_back(self, table: tuple[str, str], old: str, new: str, live_columns: frozenset[str] | None
                            ) -> list[str]:
        return op_columns.drop_or_rename_back(table, old, new, live_columns)

    # -- the demo database
    def recreate_database(self, admin: Target, name: str, template: str | None = None) -> Target:
        return demo.recreate_database(admin, name, template)

    def drop_database(self, admin: Target, name: str) -> None:
        demo.drop_database(admin, name)

    def forget_state(self, conn: Any, migration_ids: tuple[str, ...]) -> None:
        demo.forget_state(conn, migration_ids)

    def seed_users(self, conn: Any, rows: int) -> None:
        demo.seed_users(conn, rows)

    def key_check(self, conn: Any, schema: str, table: str, key: tuple[str, ...]) -> dict | None:
        return catalog.key_check(conn, schema, table, key)

    def column_types(self, conn: Any, schema: str, table: str) -> dict[str, str]:
        return catalog.column_types(conn, schema, table)

    def read_table_structure(self, conn: Any, schema: str, table: str) -> dict | None:
        return catalog.read_table(conn, schema, table)

    def foreign_keys(self, conn: Any, schema: str, table: str) -> list[dict]:
        return catalog.foreign_keys(conn, schema, table)

    # -- the pandas path's write (one method, each engine its own way)
    def batch_write(self, table: tuple[str, str], names: list[str]) -> BatchWrite:
        return bulk.batch_write(table, names)

    # -- the rollback's snapshot restore (issue 22: rollback on MySQL as on PostgreSQL)
    def restore_from_snapshot(self, table: Composable, snapshot: Composable, keys: list[str], columns: list[str],
                              bounds: Composable) -> Composable:
        return backup.restore_from_snapshot(table, snapshot, keys, columns, bounds)

    def column_comments(self, conn: Any, schema: str, table: str) -> dict[str, str | None]:
        return catalog.column_comments(conn, schema, table)

    def comment_column_sql(self, conn: Any, schema: str, table: str, column: str, text: str) -> str:
        return catalog.comment_column_sql(conn, schema, table, column, text)

    # -- console, report, lifecycle queries
    def console_sql(self) -> Any:
        return console_sql

    def command_refusal(self, command: str) -> tuple[str, str] | None:
        return console_sql.command_refusal(command)


ENGINE = MySQLEngine()
