"""preflight: is the target ready, and is this migration allowed to (re)start?"""

from __future__ import annotations

import logging
from typing import Any, Callable

from airmigrate import db, engines, operations, state, structure
from airmigrate.db import Target, connect
from airmigrate.engines import sql
from airmigrate.errors import PreflightError
from airmigrate.lint import lint_migration, unacknowledged
from airmigrate.order import check_order
from airmigrate.spec import Migration, file_checksums
from airmigrate.stages.generated import runtime_steps
from airmigrate.stages.references import check_references

log = logging.getLogger(__name__)


def preflight(target: Target, migration: Migration, dag_run_id: str | None = None, dry_run: bool = False,
              sql_of: Callable[[Any], str] | None = None) -> dict:
    """Check reachability, table and key, history (not applied, files unchanged), then open or resume the run.
    A dry run checks only and writes nothing; `sql_of(conn)` (the plan's rendering, from the caller: the plan
    sits above the stages) gives the SQL it shows."""
    spec = migration.spec
    with connect(target, autocommit=True) as conn:
        if not dry_run:
            state.ensure_schema(conn)
        applied, estimated_rows = run_checks(conn, migration)
        if applied:
            log.info("%s already applied on %s by %s; nothing to do", migration.id,
                     f"{applied['applied_at']:%Y-%m-%d %H:%M}" if applied["applied_at"] else "?", applied["applied_by"])
            return {"already_applied": True, "applied_at": applied["applied_at"], "applied_by": applied["applied_by"]}
        if dry_run:  # the whole SQL the run would execute, here in one place (the log and the task's XCom)
            text = sql_of(conn) if sql_of else ""
            log.info("dry_run: checks passed; %s has ~%s rows; nothing written. The run would execute:\n%s",
                     spec.table, f"{estimated_rows:,}", text)
            return {"dry_run": True, "estimated_rows": estimated_rows, "sql": text}
        run_id, resumed = state.begin_run(conn, migration.id, "up", dag_run_id)
        if not resumed:
            state.start_history(conn, migration.id, migration.checksum, file_checksums(migration))
        else:  # a fixed migration resumes with the fixed files: what it finishes with is what history keeps
            state.resume_history(conn, migration.id, migration.checksum, file_checksums(migration))
        version = conn.info.server_version
    log.info("target %s (server %s): %s has ~%s rows; run %d %s", target.describe(), version, spec.table,
             f"{estimated_rows:,}", run_id, "resumed" if resumed else "started")
    return {"run_id": run_id, "resumed": resumed, "estimated_rows": estimated_rows, "server_version": version}


def run_checks(conn, migration: Migration) -> tuple[dict | None, int]:
    """Every refusal of the preflight, in its order, writing nothing: (the history row of an applied migration
    with unchanged files: nothing to do, 0) or (None, the row estimate); PreflightError otherwise. One function
    so the CLI can run the very same checks before it starts Airflow (a refusal in a second, not after
    dag.test's start-up) and the preflight task still runs them for runs triggered from the UI."""
    spec = migration.spec
    applied = check_history(conn, migration)  # before the table check: a contract may have dropped it
    if applied:
        return applied, 0
    if creates_table(migration) and structure.read_table(conn, spec.schema_name, spec.table_name) is None:
        estimated_rows = 0  # create_table makes it in the expand
    else:
        estimated_rows = check_table(conn, spec.schema_name, spec.table_name, spec.key_columns)
    check_order(conn, migration)
    check_references(conn, migration)  # first: it names the yaml field of a column that is not there
    check_online(conn, migration)
    check_structure(conn, migration)
    check_referencing_rows(conn, migration)
    check_lint(migration, conn.info.server_version)
    return None, estimated_rows


def check_online(conn, migration: Migration) -> None:
    """Refuse, before anything runs, a schema change the server could only do by copying the table with the
    application's writes blocked (the engine asks the server on an empty copy), unless the migration's `executor`
    takes it over; each refusal quotes the server and names the fix."""
    spec = migration.spec
    statements = db.split_statements(migration.up_sql or "")
    if spec.operations:
        statements += runtime_steps(conn, migration).expand
    problems = engines.of(conn).online_problems(conn, statements, spec.executor)
    if problems:
        raise PreflightError(f"{migration.id} would block {spec.table}'s writes; nothing was changed:\n- "
                             + "\n- ".join(problems))


def creates_table(migration: Migration) -> bool:
    return any(op.op == "create_table" for op in migration.spec.operations)


def check_structure(conn, migration: Migration) -> None:
    """Refuse an operation that would lose part of the table's structure (a primary key, another table's
    foreign key, a view...) because it cannot carry it over to the replacement column or table safely:
    each reason with its fix. Never drop silently what the application relies on."""
    if not migration.spec.operations:
        return
    spec = migration.spec  # the table as it is now (a resumed run past its contract: what is left of it)
    info = structure.read_table(conn, spec.schema_name, spec.table_name)
    problems = operations.refusals(migration, info)
    for what, statements in operations.probes(migration, info):
        try:
            with conn.transaction(force_rollback=True):  # an empty temporary copy: nothing of the target changes
                for statement in statements:
                    conn.execute(statement)
        except Exception as exc:
            if engines.of(conn).error_kind(exc) is None:
                raise
            problems.append(f"{what}: what {spec.table} has on the column cannot be built on the new type "
                            f"({str(exc).splitlines()[0]}). Drop or change that default, CHECK or index first "
                            "(in an earlier migration), or pick a type it works with")
    if problems:
        raise PreflightError(
            f"{migration.id} cannot keep the structure of {migration.spec.table}; nothing was changed:\n- "
            + "\n- ".join(problems))


def check_referencing_rows(conn, migration: Migration) -> None:
    """delete_rows, move_rows: rows of other tables that reference rows it would delete are named now, never found by a
    batch failing half-way (ON DELETE NO ACTION / RESTRICT) or changed without an archive (CASCADE, SET NULL)."""
    spec, engine = migration.spec, engines.of(conn)
    problems = []
    for op in spec.operations:
        if op.op not in ("delete_rows", "move_rows"):
            continue
        for fk in engine.referencing_keys(conn, spec.schema_name, spec.table_name):
            if (fk["schema"], fk["table"]) == (spec.schema_name, spec.table_name):
                log.warning("%s references itself (%s): rows pointing at deleted ones must match `where` too",
                            spec.table, fk["name"])
                continue
            join = sql.SQL(" AND ").join(sql.SQL("p.{} = c.{}").format(sql.Identifier(r), sql.Identifier(c))
                                         for r, c in zip(fk["referenced"], fk["columns"]))
            found = conn.execute(sql.SQL(
                "SELECT count(*) FROM (SELECT 1 FROM {child} c WHERE EXISTS (SELECT 1 FROM {parent} p WHERE {join} "
                "AND (" + op.where + ")) LIMIT 1000) x").format(
                child=sql.Identifier(fk["schema"], fk["table"]), parent=sql.Identifier(spec.schema_name,
                                                                                      spec.table_name),
                join=join)).fetchone()[0]
            if not found:
                continue
            child = f"{fk['schema']}.{fk['table']}"
            what = ("every batch holding them would fail" if fk["on_delete"] in ("NO ACTION", "RESTRICT") else
                    f"they would be {'deleted' if fk['on_delete'] == 'CASCADE' else 'changed'} with them, "
                    "outside the archive, and a rollback could not bring them back")
            problems.append(f"{'1000+' if found >= 1000 else found} row(s) of {child} reference rows `where` "
                            f"matches, through {fk['name']} ({', '.join(fk['columns'])}; ON DELETE "
                            f"{fk['on_delete']}): {what}. Delete or re-point those rows first (a delete_rows "
                            f"migration on {child} before this one), or narrow `where`")
    if problems:
        raise PreflightError(f"{migration.id} would delete rows other tables still reference; nothing was "
                             "changed:\n- " + "\n- ".join(problems))


def check_lint(migration: Migration, server_version: int | str) -> None:
    """Refuse unsafe SQL (squawk + our rules) unless migration.yaml acknowledges the rule with a reason."""
    version = server_version if isinstance(server_version, str) else (  # MySQL's driver says "10.11.6-MariaDB"
        f"{server_version // 10000}.{server_version % 10000}")
    findings = lint_migration(migration, version)
    for finding in findings:
        if finding.acknowledged:
            log.warning("acknowledged lint finding: %s", finding)
    refused = unacknowledged(findings)
    if refused:
        raise PreflightError(
            f"{len(refused)} unsafe statement(s) in {migration.id}:\n" + "\n".join(str(f) for f in refused)
            + "\nUse the safe recipe, or acknowledge the rule in migration.yaml: "
              "acknowledge: [{rule: <rule>, reason: <why it is safe here>}]")


def check_table(conn, schema: str, table: str, key: tuple[str, ...]) -> int:
    """The table exists and `key` is a unique NOT NULL key (a valid, non-partial unique index on exactly
    those columns, all NOT NULL); returns the planner's row estimate (never count(*)). The engine reads its
    catalog (Engine.key_check)."""
    name = f"{schema}.{table}"
    found = engines.of(conn).key_check(conn, schema, table, key)
    if found is None:
        raise PreflightError(f"table {name} does not exist in the target database; "
                             "check `table` in migration.yaml and the connection it uses")
    columns = found["columns"]
    missing = [k for k in key if k not in columns]
    if missing:
        raise PreflightError(
            f"{name} has no column {', '.join(missing)} (its columns: {', '.join(columns) or 'none'}); `key` in "
            f"migration.yaml (default id) names the batching key. Set `key` to {_keys_hint(found['candidates'])}")
    if not found["unique"]:
        raise PreflightError(
            f"{name} ({', '.join(key)}) is not a primary key or unique NOT NULL key; batches need one. Set `key` "
            f"in migration.yaml to {_keys_hint(found['candidates'])}")
    estimate = found["estimate"]
    if estimate == 0:  # never analyzed: reltuples is -1 (clamped to 0); an index-only estimate is cheap
        estimate = conn.execute(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1000000) s").format(
            sql.Identifier(schema, table))).fetchone()[0]
    return int(estimate)


def _keys_hint(keys: list[list[str]]) -> str:
    if not keys:
        return ("a primary key or unique NOT NULL column(s); the table has none: add a unique index on NOT NULL "
                "column(s) first (CREATE UNIQUE INDEX CONCURRENTLY)")
    shown = [k[0] if len(k) == 1 else "[" + ", ".join(k) + "]" for k in keys]
    return "one of its primary or unique NOT NULL keys: " + "; ".join(f"key: {k}" for k in shown)


def check_history(conn, migration: Migration) -> dict | None:
    """Applied means done: an applied migration whose files are unchanged returns its history row (the caller
    does nothing); one whose files changed since is refused, naming the files (Flyway's checksum rule).
    None when the migration is to run (no history, rolled back) or to resume (running, failed, expanded)."""
    if not engines.of(conn).state_sql().state_table_exists(conn, "history"):
        return None
    hist = state.history(conn, migration.id)
    if hist is None or hist["status"] not in ("applied",):
        if hist and hist["checksum"] != migration.checksum:
            log.warning("%s: files changed since the unfinished run started; resuming with the new files",
                        migration.id)
        return None
    if hist["checksum"] == migration.checksum:
        return hist
    changed = ""
    if hist.get("files"):
        now, then = file_checksums(migration), hist["files"]
        names = sorted(n for n in set(now) | set(then) if now.get(n) != then.get(n))
        changed = " (" + ", ".join(f"{n} {'added' if n not in then else 'removed' if n not in now else 'changed'}"
                                   for n in names) + ")" if names else ""
    when = f"{hist['applied_at']:%Y-%m-%d %H:%M}" if hist["applied_at"] else "an unknown date"
    raise PreflightError(
        f"{migration.id} was applied on {when} by {hist['applied_by']}, and its files have changed since"
        f"{changed} (checksum {hist['checksum'][:12]} -> {migration.checksum[:12]}). "
        "Restore the applied files and put the change in a new migration folder")
