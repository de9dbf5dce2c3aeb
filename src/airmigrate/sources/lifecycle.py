"""The way up, the way back, baseline and the history listing of imported migrations.

Every step runs under the tool's own lock (Flyway's advisory lock; for Alembic, which takes none, an advisory lock
per version table), and the tool's history table is the authority: airmigrate.runs holds the run (its owner, the
steps done, the batches) and airmigrate.history mirrors it (record.py: the tool's checksum, written in the same
transaction as the tool's row), so the listing, the console and the report show imported runs as native ones
without a second history that could disagree with the first.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from airmigrate import settings, state
from airmigrate.db import Target, connect, refuse_unsupported
from airmigrate.errors import PreflightError, SpecError, ValidationFailed
from airmigrate.sources import record
from airmigrate.sources.backup import backup
from airmigrate.sources.model import Imported, Status
from airmigrate.sources.runner import check_lint, execute
from airmigrate.validation import run_suite

log = logging.getLogger(__name__)


def _begin(conn, migration: Imported, direction: str, dag_run_id: str | None) -> tuple[int, str]:
    """Open (or resume) the run, and for the way up airmigrate.history's row (running, the tool's checksum);
    the time it first started, for the tool's execution_time."""
    run_id, resumed = state.begin_run(conn, migration.id, direction, dag_run_id)
    if not resumed:
        started = conn.execute("SELECT clock_timestamp()::text").fetchone()[0]
        state.add_facts(conn, run_id, started_at=started, title=migration.title, source=migration.source,
                        file=str(migration.file), checksum=migration.checksum, imported=True)
    if direction == "up":
        record.start(conn, migration, resumed)
    facts = conn.execute("SELECT facts FROM airmigrate.runs WHERE run_id = %s", (run_id,)).fetchone()[0]
    return run_id, facts.get("started_at")


def apply(target: Target, source, migration: Imported, dag_run_id: str | None = None, dry_run: bool = False) -> dict:
    """Run one imported migration (or say it is applied already). PreflightError for a refusal, nothing run."""
    refuse_unsupported(target, "import")
    settings = source.file.settings
    with source.lock(target):
        with connect(target, autocommit=True) as conn:
            if not dry_run:
                state.ensure_schema(conn)
                source.prepare(conn)
            status = source.statuses(conn)[migration.id]
            if status.done:
                if not dry_run:
                    record.reconcile(conn, migration, status)
                log.info("%s (%s) is %s: nothing to do", migration.id, migration.title, status.state)
                return {"already_applied": True, "state": status.state}
            if status.problem and status.state != "failed":
                raise PreflightError(f"{migration.id}: {status.detail}")
            source.check_order(migration, source.statuses(conn))
            migration = runnable(conn, source, migration, up=True)
            check_lint(migration, source.file.acknowledged(migration), conn.info.server_version,
                       view=getattr(source, "lint_view", None))
            if dry_run:
                return {"dry_run": True, "sql": migration.up_sql}
            run_id, started = _begin(conn, migration, "up", dag_run_id)
        try:
            backup(target, migration, run_id, migration.up_sql, "up")
            if migration.up_sql is None:  # a Python-only revision: the tool runs it, in this task
                source.run_python(target, migration, "up", started)
                steps = 1
            else:
                steps = execute(target, settings, migration, run_id, migration.up_sql,
                                [*source.finish_up_sql(migration, started), record.applied_sql(migration.id)],
                                "up", dag_run_id, _schema(source))
        except Exception as exc:
            _record_failure(target, source, migration, run_id, started, exc)
            raise
        with connect(target, autocommit=True) as conn:
            with conn.transaction():
                if migration.up_sql is None:  # Alembic committed it: our row follows
                    conn.execute(record.applied_sql(migration.id))
                state.finish_run(conn, run_id, "succeeded")
    log.info("%s (%s) applied: %d step(s) in this run", migration.id, migration.title, steps)
    return {"run_id": run_id, "steps": steps}


def _schema(source) -> str:
    """Where unqualified names go: Flyway's defaultSchema (or first of schemas); public otherwise."""
    project = getattr(source, "project", None)
    return project.schema if project is not None else "public"


def runnable(conn, source, migration: Imported, up: bool) -> Imported:
    """The migration with the SQL it runs now: Alembic's offline SQL depends on the current heads (an INSERT of a
    new branch head, an UPDATE of a moved one); Flyway's script is what it is."""
    if not hasattr(source, "sql_now"):
        return migration
    text = source.sql_now(conn, migration, up)
    return dataclasses.replace(migration, **({"up_sql": text} if up else {"down_sql": text}))


def _record_failure(target: Target, source, migration: Imported, run_id: int, started: str, exc) -> None:
    """The run says failed (resumable: the steps done stay done); when statements were committed before the
    failure, the tool's history says so too (Flyway writes success = false for such a script)."""
    try:
        with connect(target, autocommit=True) as conn:
            partial = bool(conn.execute("SELECT EXISTS (SELECT 1 FROM unnest(completed_stages) s WHERE s ~ "
                                        "'^up:[0-9]+$') FROM airmigrate.runs WHERE run_id = %s",
                                        (run_id,)).fetchone()[0])  # a statement committed (not the backup)
            with conn.transaction():
                if partial and hasattr(source, "failed_up_sql"):
                    for statement in source.failed_up_sql(migration, started):
                        conn.execute(statement)
                state.finish_run(conn, run_id, "failed", f"{type(exc).__name__}: {exc}"[:2000])
                state.mark_history_failed(conn, migration.id, f"{type(exc).__name__}: {exc}"[:2000])
    except Exception:  # the task fails with the original error regardless
        log.exception("could not record the failure of %s", migration.id)


def rollback(target: Target, source, migration: Imported, dag_run_id: str | None = None) -> dict:
    """The way back: the U script (Flyway) or downgrade() (Alembic), latest first; refused while a later
    migration of the same source is applied."""
    refuse_unsupported(target, "import")
    if migration.down_sql is None and not getattr(source, "python_down", lambda m: False)(migration):
        raise PreflightError(f"{migration.id} cannot be rolled back: {source.no_down_reason(migration)}")
    with source.lock(target):
        with connect(target, autocommit=True) as conn:
            state.ensure_schema(conn)
            statuses = source.statuses(conn)
            if statuses[migration.id].state != "applied":
                raise PreflightError(f"{migration.id} is {statuses[migration.id].state}, not applied: nothing to "
                                     "roll back")
            later = source.blocking_rollback(migration, statuses)
            if later:
                raise PreflightError(f"{later[-1].id} is applied after {migration.id}: roll it back first "
                                     f"(`airmigrate run {later[-1].id} --rollback`), latest first")
            migration = runnable(conn, source, migration, up=False)
            if migration.down_sql:
                check_lint(migration, source.file.acknowledged(migration), conn.info.server_version, down=True,
                           view=getattr(source, "lint_view", None))
            run_id, started = _begin(conn, migration, "down", dag_run_id)
        try:
            backup(target, migration, run_id, migration.down_sql, "down")
            if migration.down_sql is None:
                source.run_python(target, migration, "down", started)
            else:
                execute(target, source.file.settings, migration, run_id, migration.down_sql,
                        [*source.finish_down_sql(migration, started), record.rolled_back_sql(migration.id)],
                        "down", dag_run_id, _schema(source))
        except Exception as exc:
            with connect(target, autocommit=True) as conn:
                state.finish_run(conn, run_id, "failed", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        with connect(target, autocommit=True) as conn:
            with conn.transaction():
                if migration.down_sql is None:  # Alembic committed it: our row follows
                    conn.execute(record.rolled_back_sql(migration.id))
                state.finish_run(conn, run_id, "rolled_back")
    return {"run_id": run_id}


def baseline(target: Target, source, migration: Imported) -> list[str]:
    """`flyway baseline` / `alembic stamp`: record the project as applied up to `migration` without running it;
    refused once the tool's history holds applied migrations (as Flyway refuses)."""
    refuse_unsupported(target, "import")
    with source.lock(target):
        with connect(target, autocommit=True) as conn:
            state.ensure_schema(conn)
            source.prepare(conn)
            statuses = source.statuses(conn)
            taken = [m.id for m in source.migrations() if statuses[m.id].state not in ("pending",)]
            if taken:
                raise PreflightError(f"baseline: {', '.join(taken)} already in the history of {target.describe()}; "
                                     "a baseline only adopts a project whose history is empty. Nothing recorded")
            upto = source.migrations()
            upto = upto[:[m.id for m in upto].index(migration.id) + 1]
            with conn.transaction():
                for statement in source.baseline_sql(migration):
                    conn.execute(statement)
                record.baseline(conn, upto)  # airmigrate's row beside the tool's, as the native baseline writes
    return [m.id for m in upto]


def entries(conn, sources) -> list[tuple[Imported, Status]]:
    """Every imported migration with its state, for `airmigrate history` (no tables yet: all pending)."""
    out = []
    for source in sources:
        statuses = source.statuses(conn)
        out += [(m, statuses[m.id]) for m in source.migrations()]
    return out


def rows_backfilled(conn) -> dict[str, int]:
    """Rows written by the batched statements (runs `<id>#<step>`) of each imported migration's latest up run,
    for the listing's column (the native one counts its backfill's the same way)."""
    if not state.tables_exist(conn):
        return {}
    rows = conn.execute(
        "SELECT r.migration_id, coalesce(sum(b.rows), 0) FROM airmigrate.runs r JOIN "
        "airmigrate.batches b USING (run_id) WHERE r.migration_id LIKE '%%#%%' AND r.direction = 'up' AND "
        "b.status = 'succeeded' AND r.run_id IN (SELECT max(run_id) FROM airmigrate.runs WHERE migration_id LIKE "
        "'%%#%%' GROUP BY migration_id) GROUP BY r.migration_id").fetchall()
    out: dict[str, int] = {}
    for step, total in rows:  # `<id>#<step>` summed per id here: SQL every engine runs
        migration_id = step.split("#", 1)[0]
        out[migration_id] = out.get(migration_id, 0) + int(total)
    return out


def validate(target: Target, migration: Imported) -> dict:
    """Great Expectations on the data an imported migration changed, as the native validate stage: the suite
    `expectations/<id>.json` (optional) names its table with a top-level "table" (an imported script names none).
    A failure says how to go back; the tool's history keeps saying applied (the script did run)."""
    path = settings.expectations_dir() / f"{migration.id}.json"
    if not path.is_file():
        log.info("%s has no expectation suite (%s): nothing validated", migration.id, path)
        return {"validation": "no suite"}
    table = json.loads(path.read_text()).get("table")
    if not isinstance(table, str) or not table:
        raise SpecError(path, "table", "missing", 'name the table the expectations check: "table": "schema.table"')
    schema, _, name = table.rpartition(".")

    outcome = run_suite(target.url(), name, path, settings.data_docs_dir() / migration.id, schema=schema or "public")
    if not outcome.success:
        raise ValidationFailed(f"{len(outcome.failed)} of {outcome.evaluated} expectations failed for {migration.id}:"
                               "\n  " + "\n  ".join(outcome.failed) + f"\nData Docs: {outcome.data_docs_index}. Fix the "
                               f"data, or roll back: `airmigrate run {migration.id} --rollback`")
    log.info("validation passed: %d expectations", outcome.evaluated)
    return {"validation": "passed", "expectations": outcome.evaluated, "data_docs": str(outcome.data_docs_index)}
