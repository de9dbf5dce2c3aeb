"""The preflight's refusals before Airflow starts.

`airmigrate run` used to start Airflow (`dag.test`: 10-40 s of start-up) only for the preflight task to
refuse an applied no-op, an order violation, a typo in a column or a changed applied migration. Flyway and
Alembic answer those in about a second, and so do we now: the CLI runs the preflight's own checks
(:func:`airmigrate.stages.preflight.run_checks`: history and drift, table and key, order, references,
lint) against the target first, and starts Airflow only when they pass. The preflight task still runs
them (a run triggered from the UI has no CLI in front of it, and the target may change in between).

Nothing here imports Airflow; the messages are the preflight task's own, in the lines `run` printed for
a refused or no-op run, and the exit codes are the same (0 for an applied no-op, 1 for a refusal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airmigrate import engines, state
from airmigrate.db import Target, connect
from airmigrate.errors import PreflightError
from airmigrate.order import check_order
from airmigrate.spec import Migration
from airmigrate.stages.preflight import check_history, check_lint, check_table, run_checks
from airmigrate.stages.references import check_references


@dataclass
class Verdict:
    """What the checks said: `code` None means "go on and run it"; else the exit code and the lines to print.
    `error` is the refusal as the migrate summary shows a failed task's error."""

    code: int | None
    lines: list[str] = field(default_factory=list)
    error: str | None = None


def before_airflow(target: Target, migration: Migration) -> Verdict:
    """Run the preflight's checks for a forward run of `migration`; writes nothing to the target."""
    head = f"{migration.id} on {target.describe()}"
    with connect(target, autocommit=True) as conn:
        try:
            applied, _ = run_checks(conn, migration)
        except PreflightError as exc:
            error = f"PreflightError: {exc}"
            return Verdict(1, [f"{head}: refused before Airflow started (nothing was run)",
                               "  this run changed nothing in the target (the preflight checks refused it)",
                               *_indented("error in preflight", error), *_history_line(conn, migration)], error)
    if applied:
        when = f"{applied['applied_at']:%Y-%m-%d %H:%M}" if applied["applied_at"] else "?"
        return Verdict(0, [f"{head}: success (Airflow not started: nothing to run)",
                           f"  this run changed nothing in the target (already applied: nothing to do; applied on "
                           f"{when} by {applied['applied_by']})", "  history: applied"])
    return Verdict(None)


def _history_line(conn, migration: Migration) -> list[str]:
    if not engines.of(conn).state_sql().state_table_exists(conn, "history"):
        return []
    hist = state.history(conn, migration.id)
    return [f"  history: {hist['status']}"] if hist else []


def _indented(label: str, text: str) -> list[str]:
    """A multi-line error under its label, as the run report prints a failed task's error."""
    first, *rest = str(text).strip().splitlines() or [""]
    return [f"  {label}: {first}"] + [f"    {line}" for line in rest]


@dataclass
class Findings:
    """Every check's answer, for `plan` and `lint` (which report all they can, not the first problem):
    `blocking` means a plan of these files would mislead (drift, a missing table or key, a column or object
    the target does not have); `order` and `lint` that `run` would refuse now, though the plan stands. When
    the order check refuses, references are not checked: they hold only once the earlier migrations ran."""

    applied: dict | None = None
    changed: bool = False  # applied, and its files changed since (the first of `blocking`)
    blocking: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    lint: list[str] = field(default_factory=list)


def findings(conn, migration: Migration, lint: bool = True) -> Findings:
    """The preflight's checks in its order, each problem collected; nothing written."""
    spec, out = migration.spec, Findings()
    try:
        out.applied = check_history(conn, migration)
        if out.applied:
            return out
    except PreflightError as exc:
        out.changed = True
        out.blocking.append(str(exc))
        return out
    try:
        check_table(conn, spec.schema_name, spec.table_name, spec.key_columns)
    except PreflightError as exc:
        out.blocking.append(str(exc))
        return out
    for check, bucket in ((lambda: check_order(conn, migration), out.order),
                          (lambda: None if out.order else check_references(conn, migration), out.blocking),
                          (lambda: check_lint(migration, conn.info.server_version) if lint else None, out.lint)):
        try:
            check()
        except PreflightError as exc:
            bucket.append(str(exc))
    return out
