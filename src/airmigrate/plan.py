"""What a migration will do, before it does it: each statement with its lock, rewrite/scan, and an ETA.

The static part (statements, locks, rewrites) needs no database and feeds the DAG's docs in the
Airflow UI; the estimates (rows from ``pg_class.reltuples``, throughput measured on earlier
runs' batches) need the target and are added by ``airmigrate plan``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pglast

from airmigrate import db, operations
from airmigrate.spec import Migration, bound_placeholders

# Lock taken by ALTER TABLE subcommands (PostgreSQL docs, "ALTER TABLE"), and whether they read or rewrite.
ALTER_LOCKS = {
    "AT_ValidateConstraint": ("SHARE UPDATE EXCLUSIVE", "scan"),
    "AT_SetStatistics": ("SHARE UPDATE EXCLUSIVE", ""),
    "AT_SetRelOptions": ("SHARE UPDATE EXCLUSIVE", ""),
    "AT_AlterColumnType": ("ACCESS EXCLUSIVE", "rewrite"),
    "AT_SetNotNull": ("ACCESS EXCLUSIVE", "scan"),
    "AT_AddIndex": ("SHARE", "scan"),
}
WRITE_BLOCKING = {"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}


@dataclass(frozen=True)
class PlannedStatement:
    stage: str
    sql: str
    lock: str
    effect: str          # "", "scan" (reads the whole table under the lock) or "rewrite"
    transactional: bool

    @property
    def blocks_writes(self) -> bool:
        return self.lock in WRITE_BLOCKING and self.effect != ""


def classify(statement: str) -> tuple[str, str]:
    """(lock, effect) for one statement, from pglast's parse tree."""
    node = pglast.parse_sql(bound_placeholders(statement))[0].stmt
    kind = type(node).__name__
    if kind == "AlterTableStmt":
        return _alter_table(node)
    if kind == "IndexStmt":
        return ("SHARE UPDATE EXCLUSIVE", "scan") if node.concurrent else ("SHARE", "scan")
    if kind == "DropStmt":
        return ("SHARE UPDATE EXCLUSIVE", "") if node.concurrent else ("ACCESS EXCLUSIVE", "")
    if kind in ("UpdateStmt", "DeleteStmt", "InsertStmt"):
        return "ROW EXCLUSIVE", "" if getattr(node, "whereClause", None) is not None or kind == "InsertStmt" else "scan"
    if kind in ("RenameStmt", "TruncateStmt", "ClusterStmt", "LockStmt"):
        return "ACCESS EXCLUSIVE", "rewrite" if kind in ("TruncateStmt", "ClusterStmt") else ""
    if kind in ("SelectStmt", "CreateTableAsStmt"):  # reads (the pandas path's batch read, its temp table)
        return "ACCESS SHARE", ""
    if kind == "CopyStmt":
        return "ROW EXCLUSIVE", ""
    if kind == "CreateTrigStmt":
        return "SHARE ROW EXCLUSIVE", ""
    if kind in ("CreateStmt", "CreateFunctionStmt", "CommentStmt", "ViewStmt", "CreateSeqStmt", "VariableSetStmt"):
        return "none on existing tables", ""
    return "see PostgreSQL docs", ""


def _alter_table(node) -> tuple[str, str]:
    lock, effect = "SHARE UPDATE EXCLUSIVE", ""
    rank = ["SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE", "ACCESS EXCLUSIVE"]
    for cmd in node.cmds or ():
        name = getattr(cmd.subtype, "name", str(cmd.subtype))
        sub_lock, sub_effect = ALTER_LOCKS.get(name, ("ACCESS EXCLUSIVE", ""))
        if name == "AT_AddConstraint":
            sub_lock, sub_effect = _constraint(cmd.def_)
        if name == "AT_AddColumn" and _volatile_default(cmd.def_):
            sub_effect = "rewrite"
        if rank.index(sub_lock) > rank.index(lock):
            lock = sub_lock
        if sub_effect == "rewrite" or (sub_effect and not effect):
            effect = sub_effect
    return lock, effect


def _constraint(constraint) -> tuple[str, str]:
    contype = getattr(constraint.contype, "name", str(constraint.contype))
    not_valid = bool(getattr(constraint, "skip_validation", False))
    if contype == "CONSTR_FOREIGN":
        return "SHARE ROW EXCLUSIVE", "" if not_valid else "scan"
    if contype in ("CONSTR_UNIQUE", "CONSTR_PRIMARY"):
        return "ACCESS EXCLUSIVE", "" if getattr(constraint, "indexname", None) else "scan"
    return "ACCESS EXCLUSIVE", "" if not_valid else "scan"


def _volatile_default(column) -> bool:
    """A default calling a function (other than now()) may be volatile: the table is rewritten."""
    for constraint in getattr(column, "constraints", None) or ():
        if getattr(constraint.contype, "name", "") == "CONSTR_DEFAULT":
            expr = constraint.raw_expr
            if type(expr).__name__ == "FuncCall":
                name = ".".join(getattr(n, "sval", "") for n in expr.funcname)
                return name.split(".")[-1] not in ("now", "current_timestamp", "transaction_timestamp")
        if getattr(constraint.contype, "name", "") in ("CONSTR_GENERATED", "CONSTR_IDENTITY"):
            return True
    return False


class NotNullProofs:
    """SET NOT NULL scans the table unless a validated CHECK (col IS NOT NULL) proves it (PostgreSQL 12+): the
    recipe add_column's contract follows. Fed the statements in run order, it tells which SET NOT NULL is free."""

    def __init__(self):
        self.checks: dict[str, str] = {}   # constraint name -> column it proves NOT NULL once validated
        self.validated: set[str] = set()

    def skips_scan(self, statement: str) -> bool:
        node = pglast.parse_sql(bound_placeholders(statement))[0].stmt
        if type(node).__name__ != "AlterTableStmt":
            return False
        free = False
        for cmd in node.cmds or ():
            kind = cmd.subtype.name
            if kind == "AT_AddConstraint" and cmd.def_.contype.name == "CONSTR_CHECK":
                expr = cmd.def_.raw_expr
                if type(expr).__name__ == "NullTest" and expr.nulltesttype.name == "IS_NOT_NULL" \
                        and type(expr.arg).__name__ == "ColumnRef":
                    self.checks[cmd.def_.conname] = expr.arg.fields[-1].sval
            elif kind == "AT_ValidateConstraint" and cmd.name in self.checks:
                self.validated.add(self.checks[cmd.name])
            elif kind == "AT_SetNotNull":
                free = cmd.name in self.validated
        return free


def static_plan(migration: Migration) -> list[PlannedStatement]:
    """Every statement in run order, with the lock it takes and whether it scans or rewrites."""
    steps = operations.for_migration(migration)
    parts = [("schema_change", db.split_statements(migration.up_sql) + steps.expand),
             ("backfill (per batch)", [_unbound(s) for s in db.split_statements(bound_placeholders(
                 "\n;".join(_backfill_sql(migration, steps))))]),
             ("cleanup", steps.contract + db.split_statements(migration.cleanup_sql or ""))]
    planned, proven = [], NotNullProofs()
    for stage, statements in parts:
        for statement in statements:
            lock, effect = classify(statement)
            if proven.skips_scan(statement):
                effect = ""
            planned.append(PlannedStatement(stage, statement, lock, effect,
                                            not db.needs_autocommit(bound_placeholders(statement))))
    return planned


def estimate(conn, migration: Migration) -> dict:
    """Rows (planner estimate), batches, and rows/s measured on this target's earlier batches."""
    spec = migration.spec
    rows = conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                        (f'"{spec.schema_name}"."{spec.table_name}"',)).fetchone()
    rows = rows[0] if rows else 0
    measured = None
    if conn.execute("SELECT to_regclass('airmigrate.batches')").fetchone()[0]:
        # this migration's own recent batches when it has any (a re-plan after a rollback), else the target's
        measured = conn.execute(
            "SELECT sum(rows) / nullif(sum(extract(epoch FROM finished_at - started_at)), 0) FROM "
            "(SELECT b.rows, b.started_at, b.finished_at FROM airmigrate.batches b JOIN airmigrate.runs r "
            "USING (run_id) WHERE b.status = 'succeeded' AND b.rows > 0 "
            "ORDER BY r.migration_id = %s DESC, b.finished_at DESC LIMIT 200) recent", (migration.id,)).fetchone()[0]
    backfills = bool(spec.backfill or operations.for_migration(migration).backfill)
    batches = -(-rows // spec.batch_size) if backfills else 0
    rate = float(measured) * spec.shards if measured else None
    return {"rows": rows, "batches": batches, "rows_per_s": rate, "eta_s": (rows / rate) if rate and backfills else None}


def render(migration: Migration, planned: list[PlannedStatement], est: dict | None = None) -> str:
    spec = migration.spec
    lines = [f"plan for {migration.id} on {spec.table} (lock_timeout {spec.lock_timeout_ms} ms, "
             f"statement_timeout {spec.statement_timeout_ms} ms, up to {spec.ddl_attempts} attempts)"]
    for i, p in enumerate(planned, 1):
        where = "own transaction (autocommit)" if not p.transactional else "transaction"
        effect = {"scan": "scans the table", "rewrite": "REWRITES the table", "": "no scan"}[p.effect]
        warn = "  <-- blocks writes while it runs" if p.blocks_writes else ""
        lines.append(f"{i:>3}. [{p.stage}] {_one_line(p.sql)}\n       lock {p.lock}; {effect}; {where}{warn}")
    if est:
        eta = f"{est['eta_s'] / 60:.1f} min at {est['rows_per_s']:,.0f} rows/s measured" if est["eta_s"] \
            else "no throughput measured on this target yet"
        lines.append(f"rows ~{est['rows']:,} (pg_class.reltuples); {est['batches']:,} batches of "
                     f"{spec.batch_size:,} on {spec.shards} shards; backfill ETA: {eta}")
    return "\n".join(lines)


def render_sql(migration: Migration) -> str:
    """Exactly the SQL that will run, with its timeouts and transaction boundaries (like Alembic --sql)."""
    spec = migration.spec
    steps = operations.for_migration(migration)
    out = [f"-- {migration.id}: SQL as airmigrate runs it"]
    for stage, statements in (("schema_change", db.split_statements(migration.up_sql) + steps.expand),
                              ("cleanup", steps.contract + db.split_statements(migration.cleanup_sql or ""))):
        out.append(f"\n-- stage {stage}")
        for autocommit, group in db.group_statements(statements):
            timeouts = [f"SET {'' if autocommit else 'LOCAL '}lock_timeout = '{spec.lock_timeout_ms}ms';",
                        f"SET {'' if autocommit else 'LOCAL '}statement_timeout = '{spec.statement_timeout_ms}ms';"]
            body = [s + ";" for s in group]
            out += (timeouts + body) if autocommit else (["BEGIN;"] + timeouts + body + ["COMMIT;"])
        if stage == "schema_change" and (backfill := _backfill_sql(migration, steps)):
            out.append("\n-- stage backfill: once per batch, each in its own transaction with its state row")
            out += ["BEGIN;"] + [b + ";" for b in backfill] + ["COMMIT;"]
    return "\n".join(out) + "\n"


def _unbound(statement: str) -> str:
    """Back from the quoted form the parser needed to the placeholders that run (for display)."""
    return re.sub(r"'(%\((?:lo|hi)(?:_\d+)?\)s)'", r"\1", statement)


def _backfill_sql(migration: Migration, steps) -> list[str]:
    """The per-batch statements: the user's UPDATE, or the pandas path's SQL around transform(df)."""
    if migration.transform_file:
        from airmigrate.stages.backfill.transform import transform_statements

        pandas = {name: statement.as_string() for name, statement in transform_statements(migration).items()}
        return [pandas["read"], f"-- transform(df) from {migration.transform_file.name}, in the worker\n{pandas['temp']}",
                pandas["copy"], f"-- (the transformed rows, streamed by COPY)\n{pandas['update']}"] + steps.backfill
    user = [migration.backfill_sql.strip().rstrip(";")] if migration.backfill_sql else []
    return user + steps.backfill


def _one_line(statement: str) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= 110 else text[:107] + "..."
