"""Imported migrations (Flyway scripts, Alembic revisions) -> Airflow DAGs, pure like dag_factory: parsing
reads the team's folder, never the database.

Per migration: ``<id>``: preflight (the tool's history, order, lint; dry_run prints the SQL) -> apply -> validate
(expectations/<id>.json when there is one), and
``<id>__rollback``: down (U script / downgrade()). Per source: ``<source>__migrate``, every migration of the
project in the tool's order, each through its own DAG (as airmigrate__migrate does for native folders).
"""

from __future__ import annotations

import logging

from airflow.sdk import DAG, BaseHook, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from airmigrate import lease, settings
from airmigrate.airflow.dag_factory import (
    DEFAULT_ARGS,
    MANUAL_DAG,
    START,
    WAIT_FOR_LEASE,
    FoldersDoNotLoad,
    _deferrable,
    _poke_interval,
    raise_spec_errors,
)
from airmigrate.airflow.tasks import target_from_connection
from airmigrate.db import is_transient
from airmigrate.report import imported as imported_report
from airmigrate.sources import find_or_fail, lifecycle, load_sources_safely

log = logging.getLogger(__name__)


def _run(migration_id: str, direction: str, dry_run_only: bool = False, validate_only: bool = False):
    """Load the migration, hold its lease, run the lifecycle step; transient errors retry, others fail."""
    source, migration = find_or_fail(settings.migrations_dir(), migration_id)
    target = target_from_connection(BaseHook.get_connection(source.file.settings.connection_id))
    context = get_current_context()
    params, dag_run_id = dict(context["params"]), context["dag_run"].run_id
    try:
        with lease.hold_for_task(target, migration.id, dag_run_id, float(params.get("wait_for_lease") or 0)):
            if direction == "down":
                return _reported(target, source, migration, "down", dag_run_id,
                                 lambda: lifecycle.rollback(target, source, migration, dag_run_id))
            if validate_only:
                if params.get("dry_run"):
                    raise AirflowSkipException("dry_run: nothing to validate")
                return lifecycle.validate(target, migration)
            if dry_run_only or params.get("dry_run"):
                result = lifecycle.apply(target, source, migration, dag_run_id, dry_run=True)
                log.info("%s (%s): checks passed; it runs:\n%s", migration.id, migration.title,
                         result.get("sql") or "(Python: run by the tool)")
                if params.get("dry_run") and not dry_run_only:
                    raise AirflowSkipException("dry_run: nothing run")
                return {k: v for k, v in result.items() if k != "sql"}
            return _reported(target, source, migration, "up", dag_run_id,
                             lambda: lifecycle.apply(target, source, migration, dag_run_id))
    except (AirflowSkipException, AirflowFailException):
        raise
    except Exception as exc:
        if is_transient(exc):
            raise AirflowException(f"{type(exc).__name__}: {exc} (transient: Airflow retries)") from exc
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def _reported(target, source, migration, direction: str, dag_run_id: str, step):
    """Run the step, then write the run's report (a failed run's too), its path the task's last log line."""
    try:
        result = step()
    except Exception:
        imported_report.write_report_safely(target, source, migration, direction, dag_run_id)
        raise
    if not (isinstance(result, dict) and result.get("already_applied")):
        imported_report.write_report_safely(target, source, migration, direction, dag_run_id)
    return result


def preflight_task(migration_id: str):
    """The tool's history, the order and lint, nothing written (a refusal fails here, before anything runs)."""
    return _run(migration_id, "up", dry_run_only=True)


def apply_task(migration_id: str):
    return _run(migration_id, "up")


def validate_task(migration_id: str):
    """expectations/<id>.json, when there is one (Great Expectations, as the native validate stage)."""
    return _run(migration_id, "up", validate_only=True)


def down_task(migration_id: str):
    return _run(migration_id, "down")


def build_imported_dag(migration) -> DAG:
    doc = [f"# {migration.id}", f"{migration.title}, from `{migration.file}` (imported, run in place: the file is "
           "never rewritten; the tool's own history table is kept as the tool writes it).", "",
           f"```sql\n{(migration.up_sql or '(Python revision: run through the tool inside the task)').strip()}\n```"]
    with DAG(dag_id=migration.id, description=migration.title[:500], doc_md="\n".join(doc), schedule=None,
             start_date=START, catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS,
             tags=["airmigrate", "imported", migration.source],
             params={"dry_run": Param(False, type="boolean", description="Only check and print the SQL"),
                     "wait_for_lease": WAIT_FOR_LEASE}) as dag:
        task(preflight_task, task_id="preflight", retries=0)(migration.id) >> \
            task(apply_task, task_id="apply")(migration.id) >> task(validate_task, task_id="validate", retries=0)(
                migration.id)
    return dag


def build_imported_rollback_dag(migration) -> DAG:
    down = migration.down_sql or "(downgrade(): run through the tool inside the task)"
    with DAG(dag_id=f"{migration.id}__rollback", description=f"Roll back {migration.title}"[:500],
             doc_md=f"# Rollback of {migration.id}\n\n```sql\n{down.strip()}\n```", **MANUAL_DAG,
             tags=["airmigrate", "imported", "rollback"], params={"wait_for_lease": WAIT_FOR_LEASE}) as dag:
        task(down_task, task_id="down", retries=0)(migration.id)
    return dag


def build_source_migrate_dag(source) -> DAG:
    """<source>__migrate: every migration of the project in the tool's order, each waiting for its own run."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    with DAG(dag_id=f"{source.name}__migrate", description=f"Every pending {source.kind} migration of "
             f"{source.name}, in {source.kind}'s order", schedule=None, start_date=START, catchup=False,
             max_active_runs=1, default_args={"owner": "airmigrate", "retries": 0},
             tags=["airmigrate", "imported", source.name]) as dag:
        previous = None
        for migration in source.migrations():
            trigger = TriggerDagRunOperator(task_id=migration.id, trigger_dag_id=migration.id, logical_date=None,
                                            wait_for_completion=True, poke_interval=_poke_interval(), allowed_states=["success"],
                                            failed_states=["failed"], deferrable=_deferrable(),
                                            fail_when_dag_is_paused=True)
            if previous is not None:
                previous >> trigger
            previous = trigger
    return dag


def loaded_sources(migrations_dir=None) -> tuple[list, list[str]]:
    """The imported projects that load, and the errors of those that do not (no DAG built)."""
    sources, broken = load_sources_safely(migrations_dir or settings.migrations_dir())
    return sources, [error for _, error in broken]


def build_source_dags(migrations_dir=None) -> tuple[dict, list[str]]:
    """Every imported migration's DAGs and each source's chain, plus the errors of sources that do not load."""
    dags = {}
    sources, errors = loaded_sources(migrations_dir)
    for source in sources:
        for migration in source.migrations():
            dags[migration.id] = build_imported_dag(migration)
            dags[f"{migration.id}__rollback"] = build_imported_rollback_dag(migration)
        dags[f"{source.name}__migrate"] = build_source_migrate_dag(source)
    return dags, errors


def raise_all_errors() -> None:
    """Native folders and imported projects that do not load, as one import error (dags/airmigrate_errors.py)."""
    problems = loaded_sources()[1]  # no DAG built here: one made in this file would be this file's too (Airflow
    # registers every DAG made during a file's parse), a duplicate of airmigrate_dags.py's
    try:
        raise_spec_errors()
    except FoldersDoNotLoad as exc:
        if not problems:
            raise
        raise FoldersDoNotLoad(f"{exc}\n" + "\n".join(f"- {p}" for p in problems)) from None
    if problems:
        raise FoldersDoNotLoad(f"{len(problems)} imported project(s) do not load (the other DAGs do):\n"
                               + "\n".join(f"- {p}" for p in problems))
