"""What a migration will do, before it does it: each statement with its lock, rewrite/scan, and an ETA.

The static part (statements, locks, rewrites) needs no database and feeds the DAG's docs in the
Airflow UI; the estimates (rows from ``pg_class.reltuples``, throughput measured on earlier
runs' batches) need the target and are added by ``airmigrate plan``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airmigrate import db, engines, operations
from airmigrate.app_versions import render_app_versions
from airmigrate.db import estimate_rows
from airmigrate.engines.base import ONLINE
from airmigrate.locks import Analysis, RelationLock  # noqa: F401 (plan's API)
from airmigrate.operations.base import snapshot_name
from airmigrate.operations.delete_rows import archive_name
from airmigrate.spec import Migration, bound_placeholders
from airmigrate.stages.backfill import sync_trigger_sql as backfill_sync_trigger_sql
from airmigrate.stages.backfill.transform import transform_statements
from airmigrate.stages.generated import column_types, restore_statement, runtime_steps, snapshot_columns


def analyze(statement: str, conn=None) -> Analysis:
    """Every relation lock the statement takes and whether it scans or rewrites, in the engine's rules (with
    ``conn``, the target's catalog answers what the text alone cannot: column types, volatility, domains)."""
    return engines.of(conn).analyze(statement, conn)


def classify(statement: str, conn=None) -> tuple[str, str]:
    """(lock on the statement's own table, effect) for one statement; ``analyze`` has the other relations."""
    analysis = analyze(statement, conn)
    return analysis.lock, analysis.effect


def not_null_proofs(conn=None):
    """A tracker fed the statements in run order: ``skips_scan(statement)`` says which SET NOT NULL an earlier
    validated proof makes free (PostgreSQL 12+: a validated CHECK (col IS NOT NULL))."""
    return engines.of(conn).not_null_proofs()


NotNullProofs = not_null_proofs  # its name when it was a class of this module


def __getattr__(name: str):
    """LOCK_MODES (weakest first) and WRITE_BLOCKING are the configured engine's."""
    if name == "LOCK_MODES":
        return engines.current().lock_modes
    if name == "WRITE_BLOCKING":
        return engines.current().write_blocking
    raise AttributeError(name)


@dataclass(frozen=True)
class PlannedStatement:
    stage: str
    sql: str
    lock: str
    effect: str          # "", "scan" (reads the whole table under the lock) or "rewrite"
    transactional: bool
    also: tuple[str, ...] = ()    # locks on other relations, notes ("unknown statement: ...")

    @property
    def blocks_writes(self) -> bool:
        return self.lock in engines.current().write_blocking and self.effect != ""


def sync_trigger_sql(migration: Migration) -> tuple[list[str], list[str]]:
    """The `backfill.sync` trigger's (install, drop) statements: the ones the backfill stage runs."""
    return backfill_sync_trigger_sql(migration)


def static_plan(migration: Migration, conn=None) -> list[PlannedStatement]:
    """Every statement in run order, with the lock it takes and whether it scans or rewrites. With ``conn``
    (the target) column types, function volatility and domains are looked up instead of assumed, and the
    operations' statements are generated with the target's column types and the structure they carry over,
    exactly as the stages run them."""
    steps = _steps(migration, conn)
    install, drop = sync_trigger_sql(migration)
    parts = [("schema_change", db.split_statements(migration.up_sql) + steps.expand),
             ("backfill.plan", install),
             ("backfill (per batch)", [_unbound(s) for s in db.split_statements(bound_placeholders(
                 "\n;".join(_backfill_sql(migration, steps, conn))))]),
             ("cleanup", drop + db.split_statements(migration.cleanup_sql or "") + steps.contract)]
    planned, proven = [], not_null_proofs(conn)
    for stage, statements in parts:
        for statement in statements:
            analysis = analyze(statement, conn)
            effect = "" if proven.skips_scan(statement) else analysis.effect
            also = _elsewhere(analysis, migration.spec.table_name) + analysis.notes
            lock = analysis.lock
            if _executor_takes(migration, statement, conn):
                lock = engines.of(conn).lock_modes[0]
                also += (f"executor: {migration.spec.executor} runs it instead: a shadow copy kept in sync by "
                         f"triggers, {migration.spec.chunk_time:g} s chunks, then an atomic swap (writes go on)",)
            planned.append(PlannedStatement(stage, as_run(statement, conn), lock, effect,
                                            not db.needs_autocommit(bound_placeholders(statement)), also))
    return planned


def as_run(statement: str, conn=None) -> str:
    """The statement as the executor sends it to this server (MySQL 8: MariaDB's forms rendered in MySQL's, maybe
    several statements); the locks are the original's."""
    return ";\n".join(engines.of(conn).as_run([statement], conn))


def _executor_takes(migration: Migration, statement: str, conn) -> bool:
    """Does the migration's executor (pt-osc) run this statement instead of the server, which could only copy?
    Only the target can say (conn)."""
    if conn is None or migration.spec.executor == ONLINE:
        return False
    engine = engines.of(conn)
    return bool(engine.online_problems(conn, [statement], ONLINE)) and \
        not engine.online_problems(conn, [statement], migration.spec.executor)


def _elsewhere(analysis: Analysis, table: str) -> tuple[str, ...]:
    """The locks besides the headline one, and any lock on another table than the migration's, said so."""
    out = []
    for i, lock in enumerate(analysis.locks):
        other = bool(lock.relation) and lock.relation.split(".")[-1].strip('"`').lower() != table.lower()
        if i == 0 and not other:
            continue
        out.append(f"{lock}" + (f" (another table than {table})" if other and lock.what != "index" else ""))
    return tuple(out)


def estimate(conn, migration: Migration) -> dict:
    """Rows (planner estimate), batches, and rows/s measured on this target's earlier batches."""
    spec = migration.spec

    rows = estimate_rows(conn, spec.schema_name, spec.table_name)
    measured = None
    if engines.of(conn).state_sql().state_table_exists(conn, "batches"):
        # this migration's own recent batches when it has any (a re-plan after a rollback), else the target's
        measured = engines.of(conn).console_sql().measured_rate(conn, migration.id)
    backfills = bool(spec.backfill or operations.for_migration(migration).backfill)
    batches = -(-rows // spec.batch_size) if backfills else 0
    rate = float(measured) * spec.shards if measured else None
    return {"rows": rows, "batches": batches, "rows_per_s": rate, "eta_s": (rows / rate) if rate and backfills else None,
            "backfills": backfills, "deletes": _deletes(conn, migration)}


def _deletes(conn, migration: Migration) -> list[dict]:
    """delete_rows: the rows `where` matches (the planner's estimate) and the WAL they write, roughly: each
    deleted row's tuple header change plus, with an archive, the row written again with its key."""
    spec, out = migration.spec, []
    for op in spec.operations:
        if op.op in ("delete_rows", "move_rows"):
            matching, width = engines.of(conn).estimate_matching(conn, spec.schema_name, spec.table_name, op.where)
            archive = getattr(op, "archive", "table")
            per_row = 60 + (width + 60 if archive == "table" else 0) + (width + 60 if op.op == "move_rows" else 0)
            out.append({"op": op.op, "where": op.where, "matching": matching, "archive": archive,
                        "to": getattr(op, "to", None), "wal_bytes": matching * per_row})
    return out


def render(migration: Migration, planned: list[PlannedStatement], est: dict | None = None) -> str:
    spec = migration.spec
    lines = [f"plan for {migration.id} on {spec.table} (lock_timeout {spec.lock_timeout_ms} ms, "
             f"statement_timeout {spec.statement_timeout_ms} ms, up to {spec.ddl_attempts} attempts)"]
    for i, p in enumerate(planned, 1):
        where = "own transaction (autocommit)" if not p.transactional else "transaction"
        effect = {"scan": "scans the table", "rewrite": "REWRITES the table", "": "no scan"}[p.effect]
        warn = "  <-- blocks writes while it runs" if p.blocks_writes else ""
        lines.append(f"{i:>3}. [{p.stage}] {_one_line(p.sql)}\n       lock {p.lock}; {effect}; {where}{warn}")
        lines += [f"       also: {extra}" for extra in p.also]
    if est and not est.get("backfills", True):
        lines.append(f"rows ~{est['rows']:,} (planner estimate); no backfill: nothing is written row by row")
    elif est:
        eta = f"{est['eta_s'] / 60:.1f} min at {est['rows_per_s']:,.0f} rows/s measured" if est["eta_s"] \
            else "no throughput measured on this target yet"
        lines.append(f"rows ~{est['rows']:,} (planner estimate); {est['batches']:,} batches of "
                     f"{spec.batch_size:,} on {spec.shards} shards; backfill ETA: {eta}")
    for d in (est or {}).get("deletes", []):
        lines.append(f"{d['op']}: ~{d['matching']:,} rows match `{d['where']}` (planner estimate), "
                     + (f"moved into {d['to']}" if d["to"] else "deleted")
                     + (" and kept in airmigrate." + archive_name(migration.id) if d["archive"] == "table" else
                        " WITHOUT an archive (the backup's pg_dump keeps them)")
                     + f" batch by batch; WAL ~{d['wal_bytes'] / 2**20:,.0f} MB; VACUUM between batches as "
                       "dead tuples pile up")

    lines += render_app_versions(migration)
    return "\n".join(lines)


def render_sql(migration: Migration, conn=None) -> str:
    """Exactly the SQL that will run, with its timeouts and transaction boundaries (like Alembic --sql). With
    ``conn`` (the target) the generated statements carry the column types read from it, as at run time;
    without it they show `text` where the type comes from the target."""
    spec = migration.spec
    steps = _steps(migration, conn)
    out = [f"-- {migration.id}: SQL as airmigrate runs it"
           + ("" if conn is not None or not spec.operations else
              " (offline: generated columns whose type comes from the target show `text`)")]
    install, drop = sync_trigger_sql(migration)
    for stage, statements in (("schema_change", db.split_statements(migration.up_sql) + steps.expand),
                              ("cleanup", drop + db.split_statements(migration.cleanup_sql or "") + steps.contract)):
        out.append(f"\n-- stage {stage}")
        for autocommit, group in db.group_statements(statements):
            timeouts = engines.of(conn).console_sql().timeout_settings(spec.lock_timeout_ms,
                                                                       spec.statement_timeout_ms, not autocommit,
                                                                       conn=conn)
            body = [s + ";" for s in engines.of(conn).as_run(group, conn)]
            out += (timeouts + body) if autocommit else (["BEGIN;"] + timeouts + body + ["COMMIT;"])
        if stage == "schema_change" and install:  # installed with the backfill's cursor, before the first batch
            out += ["\n-- stage backfill.plan: the sync trigger keeps rows written meanwhile right", "BEGIN;"] + \
                [i + ";" for i in install] + ["COMMIT;"]
        if stage == "schema_change" and (backfill := _backfill_sql(migration, steps, conn)):
            out.append("\n-- stage backfill: once per batch, each in its own transaction with its state row")
            out += ["BEGIN;"] + [b + ";" for b in backfill] + ["COMMIT;"]
    return "\n".join(out) + "\n"


def _steps(migration: Migration, conn=None, live_columns: frozenset[str] | None = None):
    """The operations' steps: resolved against the target like the stages do, or static without it."""
    if conn is None:
        return operations.for_migration(migration)

    return runtime_steps(conn, migration, live_columns)


def rollback_phases(migration: Migration, conn=None) -> list[tuple[str, list[str]]]:
    """The rollback DAG's statements by phase, as stages.rollback runs them: down DDL, the per-batch copy-back
    (the operations' copy-back, then the snapshot restore of overwritten values), the finishing DDL. With
    ``conn`` the table's shape now picks each operation's path (before or after the contract); without it the
    longer, after-the-contract path is shown."""
    spec = migration.spec
    live = frozenset(column_types(conn, spec.schema_name, spec.table_name)) if conn is not None else None
    steps = _steps(migration, conn, live)
    copy_back = list(steps.down_backfill)
    if conn is not None and engines.of(conn).state_sql().state_table_exists(conn, "history"):
        row = conn.execute("SELECT snapshot_table FROM airmigrate.history WHERE migration_id = %s",
                           (migration.id,)).fetchone()
        snapshot = row[0] if row else None
        restore = restore_statement(migration, snapshot, [c for c in snapshot_columns(conn, migration, snapshot)
                                                          if c not in steps.self_restored]) if snapshot else None
        copy_back += [restore] if restore else []
    elif spec.backfill or steps.backfill_columns or steps.dropped_columns:
        columns = [c for c in [*(spec.backfill.columns if spec.backfill else []), *steps.backfill_columns,
                               *steps.dropped_columns] if c not in steps.self_restored]
        restore = restore_statement(migration, snapshot_name(migration.id), list(dict.fromkeys(columns)))
        copy_back += [restore] if restore else []
    return [("down", sync_trigger_sql(migration)[1] + db.split_statements(migration.down_sql or "") + steps.down),
            ("copy-back (per batch)", copy_back),
            ("finish", list(steps.down_contract))]


def render_rollback(migration: Migration, conn=None, sql: bool = False) -> str:
    """The rollback plan: each phase's statements with the lock each takes (``sql``: as a runnable script with
    its timeouts and transaction boundaries, the locks as comments)."""
    spec = migration.spec
    note = "" if conn is not None else " (offline: the path after the contract is shown; types show `text`)"
    out = [f"-- rollback of {migration.id} ({migration.rollback_dag_id}){note}" if sql else
           f"rollback plan for {migration.id} ({migration.rollback_dag_id}) on {spec.table}{note}"]
    number = 0
    for phase, statements in rollback_phases(migration, conn):
        batch = phase.startswith("copy-back")
        out.append(f"\n-- phase {phase}" if sql else f"phase {phase}:")
        if not statements:
            out.append("-- (nothing)" if sql else "       (nothing)")
            continue
        groups = [(False, statements)] if batch else db.group_statements(statements)
        for autocommit, group in groups:
            if sql:
                out += ([] if autocommit else ["BEGIN;"]) + ([] if batch else engines.of(conn).console_sql(
                    ).timeout_settings(spec.lock_timeout_ms, spec.statement_timeout_ms, not autocommit, conn=conn))
            for statement in group:
                analysis = analyze(statement, conn)
                effect = {"scan": "scans the table", "rewrite": "REWRITES the table", "": "no scan"}[analysis.effect]
                lock = f"lock {analysis.lock}; {effect}"
                also = [str(x) for x in _elsewhere(analysis, spec.table_name) + analysis.notes]
                if sql:
                    out += [f"-- {lock}"] + [f"--   also: {x}" for x in also] + [
                        shown + ";" for shown in engines.of(conn).as_run([statement], conn)]
                else:
                    number += 1
                    where = "each batch its own transaction" if batch else \
                        ("own transaction (autocommit)" if autocommit else "transaction")
                    warn = "  <-- blocks writes while it runs" if analysis.lock in engines.current().write_blocking and \
                        analysis.effect else ""
                    out.append(f"{number:>3}. [{phase}] {_one_line(as_run(statement, conn))}\n       {lock}; {where}{warn}")
                    out += [f"       also: {x}" for x in also]
            if sql and not autocommit:
                out.append("COMMIT;")
    return "\n".join(out) + "\n"


def _unbound(statement: str) -> str:
    """Back from the quoted form the parser needed to the placeholders that run (for display)."""
    return re.sub(r"'(%\((?:lo|hi)(?:_\d+)?\)s)'", r"\1", statement)


def _backfill_sql(migration: Migration, steps, conn=None) -> list[str]:
    """The per-batch statements: the user's UPDATE, or the pandas path's SQL around transform(df)."""
    if migration.transform_file:
        pandas = transform_statements(migration)
        write = [(f"-- ({note})\n" if note else "") + statement.as_string()
                 for note, statement in pandas["write"].statements]
        write[0] = f"-- transform(df) from {migration.transform_file.name}, in the worker\n{write[0]}"
        return [pandas["read"].as_string(), *write] + steps.backfill
    user = [migration.backfill_sql.strip().rstrip(";")] if migration.backfill_sql else []
    return user + steps.backfill


def _one_line(statement: str) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= 110 else text[:107] + "..."
