"""Run an imported migration (a Flyway script, an Alembic revision) the way airmigrate runs its own SQL:
under the tool's lock, after lint and the order check, statement groups through the safe DDL executor
(lock_timeout with retries, CONCURRENTLY outside a transaction, each group recorded as done in the same
transaction as its change), marked UPDATE/DELETE statements through the batched engine, and the tool's own
history row written in the transaction of the last statements, so the tool's table never says more or
less than what is in the database.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from airmigrate import db, state
from airmigrate.db import Target, connect
from airmigrate.errors import PreflightError
from airmigrate.lint import Finding, lint_file, unacknowledged
from airmigrate.sources.batching import RECIPE, Batched, located, marker_of, run_batched
from airmigrate.sources.model import Imported

log = logging.getLogger(__name__)

UNBATCHED = ("unbatched-update", "unbatched-delete")


@dataclass(frozen=True)
class Step:
    """One transaction (or one CONCURRENTLY statement), or one marked statement run in batches."""

    autocommit: bool
    statements: tuple[str, ...] = ()
    batched: Batched | None = None


def plan_steps(sql_text: str, where, schema: str = "public") -> list[Step]:
    """The script's statements grouped as the executor runs them; a marked statement is a step of its own."""
    steps, plain = [], []

    def flush():
        steps.extend(Step(auto, tuple(group)) for auto, group in db.group_statements(plain))
        plain.clear()

    for statement, marker, _, _ in located(sql_text or ""):
        batched = marker_of(statement, marker, where, schema)
        if batched is None:
            plain.append(statement)
        else:
            flush()
            steps.append(Step(False, batched=batched))
    flush()
    return steps


def lint(migration: Imported, acknowledged: dict[str, str], pg_version: str = "15.0", down: bool = False,
         view=None) -> list[Finding]:
    """squawk + airmigrate's rules over the script as it runs (placeholders replaced). An UPDATE or DELETE with
    a batch marker is not reported (it runs in batches); one without says how to add the marker. `view` hides
    the tool's own bookkeeping (Alembic's version-table statements)."""
    text = migration.down_sql if down else migration.up_sql
    if not text:
        return []
    text = view(text) if view else text
    findings = lint_file(migration.file, "down" if down else "up", pg_version, acknowledged, text=text)
    marked = _marked_lines(text)
    out = []
    for finding in findings:
        if finding.rule in UNBATCHED:
            if finding.line in marked:
                continue
            finding = dataclasses.replace(finding, recipe=RECIPE)
        out.append(finding)
    return out


def _marked_lines(text: str) -> set[int]:
    return {line for _, marker, first, last in located(text) if marker for line in range(first, last + 1)}


def check_lint(migration: Imported, acknowledged: dict[str, str], server_version: int, down: bool = False,
               view=None) -> None:
    version = f"{server_version // 10000}.{server_version % 10000}"
    refused = unacknowledged(lint(migration, acknowledged, version, down, view))
    if refused:
        raise PreflightError(
            f"{len(refused)} unsafe statement(s) in {migration.file}:\n" + "\n".join(str(f) for f in refused)
            + "\nUse the safe recipe (the script stays valid for its tool), or acknowledge the rule in the source's "
              "settings: acknowledge: {" + migration.file.name + ": [{rule: <rule>, reason: <why it is safe here>}]}")


def _mark_sql(run_id: int, step: str) -> str:
    """The step's record, in the same transaction as its statements: a resumed run never runs it twice."""
    return (f"UPDATE airmigrate.runs SET completed_stages = array_append(completed_stages, '{step}') "
            f"WHERE run_id = {int(run_id)}")


def execute(target: Target, settings, migration: Imported, run_id: int, sql_text: str, finish_sql: list[str],
            direction: str = "up", dag_run_id: str | None = None, schema: str = "public") -> int:
    """Run the steps not yet done, then `finish_sql` (the tool's history row) in the last transaction. Returns
    how many steps were committed in this call."""
    timeouts = {"lock_timeout_ms": settings.lock_timeout_ms, "statement_timeout_ms": settings.statement_timeout_ms,
                "attempts": 8, "table": None}
    steps = plan_steps(sql_text, migration.file, schema)
    # Flyway runs a script with its defaultSchema first on the search_path (changeCurrentSchemaTo)
    prefix = [] if schema == "public" else [
        "SELECT set_config('search_path', '\"" + schema.replace("'", "''").replace('"', '""')
        + "\",' || current_setting('search_path'), false)"]
    committed, finished = 0, False
    with connect(target, autocommit=True) as conn:
        for index, step in enumerate(steps):
            tag = f"{direction}:{index}"
            if state.stage_done(conn, run_id, tag):
                log.info("%s step %d already done in an earlier attempt; skipping", migration.id, index)
                continue
            last = index == len(steps) - 1
            if step.batched:
                result = run_batched(target, f"{migration.id}#{index}", step.batched, dag_run_id)
                state.mark_stage_done(conn, run_id, tag, **{f"batched_{index}": {k: result.get(k) for k in (
                    "batches", "rows", "seconds")}})
            else:
                statements = prefix + list(step.statements)
                if not step.autocommit:
                    statements.append(_mark_sql(run_id, tag))
                    if last:
                        statements += finish_sql
                        finished = True
                db.run_group(target, statements, step.autocommit, **timeouts,
                             still_needed=lambda tag=tag: not state.stage_done(conn, run_id, tag))
                if step.autocommit:
                    state.mark_stage_done(conn, run_id, tag)
            committed += 1
    if not finished:
        db.run_group(target, [*finish_sql, _mark_sql(run_id, f"{direction}:finish")], False, **timeouts)
    return committed
