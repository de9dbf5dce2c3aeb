"""Migration folder -> Airflow DAGs. Pure: parsing a DAG never opens a database connection."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param, TaskGroup, task

from airmigrate import settings
from airmigrate.airflow import rollback_tasks, tasks
from airmigrate.airflow.approval import approval_task, needs_approval, needs_rollback_approval, rollback_approval_task
from airmigrate.errors import SpecError
from airmigrate.plan import render, static_plan
from airmigrate.spec import BATCH_SIZE_MAX, RATIO_MAX, SHARDS_MAX, Migration, Throttle, discover, load_migration

START = datetime(2024, 1, 1)
DEFAULT_ARGS = {"owner": "airmigrate", "retries": 2, "retry_delay": timedelta(seconds=15),
                "retry_exponential_backoff": True}


WAIT_FOR_LEASE = Param(0, type="integer", minimum=0, maximum=86_400,
                       description="Seconds to wait when another runner (a CLI or another Airflow) is running this "
                                   "migration; 0 refuses at once (one runner per migration)")


def build_dag(migration: Migration) -> DAG:
    """preflight -> backup -> schema_change -> backfill (plan, mapped shards) -> validate -> cleanup."""
    spec, folder = migration.spec, str(migration.folder.resolve())
    with DAG(
        dag_id=migration.id,
        description=_description(spec.description),
        doc_md=_doc(migration),
        schedule=_schedule(spec),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["airmigrate", spec.table],
        params={
            "batch_size": Param(spec.batch_size, type="integer", minimum=1, maximum=BATCH_SIZE_MAX,
                                description="Rows per backfill batch"),
            "shards": Param(spec.shards, type="integer", minimum=1, maximum=SHARDS_MAX,
                            description="Parallel backfill tasks"),
            "dry_run": Param(False, type="boolean", description="Only check and print the SQL; change nothing"),
            "retry_failed": Param(False, type="boolean", description="Run the failed batches of the last run again"),
            "approve_contract": Param(False, type="boolean",
                                      description="Approve the destructive contract step up front (no UI prompt)"),
            "app_latency_ratio": _pacing_param(migration),
            "until": Param("contract", type="string", enum=["contract", "expand"],
                           description="expand: stop after validate (history `expanded`, the contract waits for "
                                       "`airmigrate complete` or a trigger with contract); contract: the whole way"),
            "wait_for_lease": WAIT_FOR_LEASE,
        },
    ) as dag:
        pre = _task("preflight", tasks.preflight_task)(folder)
        if spec.window:  # the window gates every stage that touches the target
            _task("window", tasks.window_task, retries=0)(folder) >> pre
        bak = _task("backup", tasks.backup_task)(folder)
        ddl = _task("schema_change", tasks.schema_change_task)(folder)
        with TaskGroup("backfill", tooltip="Key-range batches, resumable; shards share the batch table"):
            plan = _task("plan", tasks.plan_backfill_task)(folder)
            shards = _task("shard", tasks.backfill_shard_task, retries=3).partial(migration_dir=folder).expand(
                shard=plan)
        val = _task("validate", tasks.validate_task, retries=0)(folder)
        clean = _task("cleanup", tasks.cleanup_task)(folder)
        pre >> bak >> ddl >> plan
        if needs_approval(migration):
            shards >> val >> approval_task(migration) >> clean
        else:
            shards >> val >> clean
    return dag


def _pacing_param(migration: Migration) -> Param:
    """The pacer's target for this run; the spec's by default (backfill.throttle.app_latency_ratio)."""
    throttle = (migration.spec.backfill.throttle if migration.spec.backfill else Throttle())
    return Param(throttle.app_latency_ratio if throttle else None, type=["null", "number"], exclusiveMinimum=1,
                 maximum=RATIO_MAX, description="Keep the application's statement latency within this multiple of its "
                                          "own while the backfill runs (pacing); empty: full speed")


# Rollback and rehearsal DAGs run when someone triggers them, one at a time
MANUAL_DAG = {"schedule": None, "start_date": START, "catchup": False, "max_active_runs": 1,
              "default_args": DEFAULT_ARGS}


def build_rollback_dag(migration: Migration) -> DAG:
    """preflight -> [approve_rollback] -> down -> restore (plan, mapped shards) -> finish: the way up in
    reverse, with data copied back by the batched engine between two short DDL steps."""
    spec, folder = migration.spec, str(migration.folder.resolve())
    with DAG(
        dag_id=migration.rollback_dag_id,
        description=f"Roll back {migration.id}: short DDL, data copied back in batches, short DDL",
        doc_md=f"Rollback of **{migration.id}**: `{spec.down}` and the operations' down DDL in short "
               "transactions, then the data copied back and the values the backfill overwrote restored in "
               "key-range batches (resumable, throttled), then the last short DDL. `dry_run` prints the SQL "
               "and changes nothing.\n\n" + _doc(migration),
        **MANUAL_DAG,
        tags=["airmigrate", "rollback"],
        params={
            "batch_size": Param(spec.batch_size, type="integer", minimum=1, maximum=BATCH_SIZE_MAX,
                                description="Rows per copy-back batch"),
            "shards": Param(spec.shards, type="integer", minimum=1, maximum=SHARDS_MAX, description="Parallel copy-back tasks"),
            "dry_run": Param(False, type="boolean", description="Only check and print the rollback's SQL; change nothing"),
            "retry_failed": Param(False, type="boolean", description="Run the failed copy-back batches again"),
            "app_latency_ratio": _pacing_param(migration),
            "approve_rollback": Param(False, type="boolean",
                                      description="Approve a rollback that drops a column or table up front"),
            "wait_for_lease": WAIT_FOR_LEASE,
        },
    ) as dag:
        pre = _task("preflight", rollback_tasks.rollback_preflight_task)(folder)
        down = _task("down", rollback_tasks.down_task)(folder)
        with TaskGroup("restore", tooltip="Data copied back in key-range batches, resumable"):
            plan = _task("plan", rollback_tasks.restore_plan_task)(folder)
            shards = _task("shard", rollback_tasks.restore_shard_task, retries=3).partial(migration_dir=folder).expand(
                shard=plan)
        finish = _task("finish", rollback_tasks.finish_rollback_task)(folder)
        if needs_rollback_approval(migration):
            pre >> rollback_approval_task(migration) >> down
        else:
            pre >> down
        down >> plan
        shards >> finish
    return dag


def build_rehearsal_dag(migration: Migration) -> DAG:
    """<id>__rehearsal: the migration and its rollback on a copy of the touched tables; the target is only read."""
    with DAG(
        dag_id=f"{migration.id}__rehearsal",
        description=f"Rehearse {migration.id} and its rollback on a copy; the target is only read",
        doc_md=f"Rehearsal of **{migration.id}**: copies the tables it touches (or `sample` percent of the rows, by "
               "key ranges) into a scratch database, runs the migration (expand, backfill, validation, contract) "
               "and its rollback there, checks the copy is identical to before and that the application's "
               "statements work, measures durations, locks, WAL and sizes, and drops the copy (unless `keep`). "
               "Results: the task log and var/rehearsals/.\n\n" + _doc(migration),
        **MANUAL_DAG,
        tags=["airmigrate", "rehearsal"],
        params={
            "sample": Param(None, type=["null", "number"], exclusiveMinimum=0, maximum=100,
                            description="Copy this percentage of the rows (whole key ranges); empty: all"),
            "keep": Param(False, type="boolean", description="Keep the copy database afterwards"),
        },
    ) as dag:
        _task("rehearse", tasks.rehearse_task, retries=0)(str(migration.folder.resolve()))
    return dag


MIGRATE_DAG_ID = "airmigrate__migrate"


def build_migrate_dag(migrations: list[Migration], stopped_at: str | None = None,
                      imported_first: tuple[str, ...] = ()) -> DAG:
    """airmigrate__migrate: one TriggerDagRunOperator per migration, chained in folder order. Each waits for its
    migration's own run (own logs, own UI), the first failure stops the chain, and an applied migration's run
    is a quick green no-op (its preflight says so and every later task skips). ``imported_first``: the chains
    of imported projects (``<source>__migrate``), run before every native folder (README: the order between
    native folders and imported projects)."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    doc = ["# airmigrate__migrate", "Every migration in folder order, each as its own DAG run; the chain stops at the "
           "first failure. Applied migrations finish at once (nothing to do). Same as `airmigrate migrate`.", ""]
    doc += [f"{i}. `{dag_id}` (an imported project, all of it)" for i, dag_id in enumerate(imported_first, 1)]
    doc += [f"{i}. `{m.id}`" for i, m in enumerate(migrations, len(imported_first) + 1)]
    if stopped_at:
        doc += ["", f"**Stops before {stopped_at}**: its folder does not load (see the import errors)."]
    with DAG(
        dag_id=MIGRATE_DAG_ID,
        description="Every pending migration in order, each through its own DAG",
        doc_md="\n".join(doc),
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args={"owner": "airmigrate", "retries": 0},
        tags=["airmigrate"],
        render_template_as_native_obj=True,  # the conf's booleans stay booleans
        params={"approve_contract": Param(False, type="boolean",
                                          description="Approve destructive contract steps up front (no UI prompt)"),
                "ignore_missing": Param(False, type="boolean", description="Go on although a migration in the "
                                        "target's history has no folder any more (recorded)"),
                "allow_drift": Param(False, type="boolean", description="Go on although an applied migration's "
                                     "files changed since (recorded)")},
    ) as dag:
        previous = _task("validate_history", tasks.validate_history_task, retries=0)()
        for dag_id in imported_first:
            trigger = TriggerDagRunOperator(task_id=dag_id, trigger_dag_id=dag_id, logical_date=None,
                                            wait_for_completion=True, poke_interval=_poke_interval(), allowed_states=["success"],
                                            failed_states=["failed"], deferrable=_deferrable(),
                                            fail_when_dag_is_paused=True)
            previous >> trigger
            previous = trigger
        for migration in migrations:
            trigger = TriggerDagRunOperator(
                task_id=migration.id,
                trigger_dag_id=migration.id,
                conf={"approve_contract": "{{ params.approve_contract }}"},
                logical_date=None,
                reset_dag_run=False,
                wait_for_completion=True,
                poke_interval=_poke_interval(),
                allowed_states=["success"],
                failed_states=["failed"],
                deferrable=_deferrable(),
                fail_when_dag_is_paused=True,  # a paused migration DAG's run would wait forever: say so instead
            )
            if previous is not None:
                previous >> trigger
            previous = trigger
    return dag


def _deferrable() -> bool:
    """Wait in the triggerer (no worker slot held while a migration runs). The approval gates need a triggerer
    anyway; AIRMIGRATE_DEFERRABLE=false waits in a worker for setups without one."""
    return os.environ.get("AIRMIGRATE_DEFERRABLE", "true").lower() not in ("0", "false", "no")


def _poke_interval() -> float:
    """How often the migrate chain looks whether the run it triggered has finished: every 10 s, light on the metadata
    database. AIRMIGRATE_MIGRATE_POKE_S sets another (the test suite's short-lived Airflows use 1 s: a chain of
    four then waits ~4 s for its polls, not ~40)."""
    return settings.seconds("AIRMIGRATE_MIGRATE_POKE_S", 10.0)


def build_all(migrations_dir: Path | None = None, expectations_dir: Path | None = None,
              imported_first: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """Every folder's three DAGs (up, rollback, rehearsal) and the migrate DAG, plus the error messages of the folders that did not parse.
    The migrate chain ends before the first folder that does not parse: what follows it must not run first."""
    dags, errors, chain, stopped_at = {}, [], [], None
    exp_dir = expectations_dir or settings.expectations_dir()
    for folder in discover(migrations_dir or settings.migrations_dir()):
        try:
            migration = load_migration(folder, exp_dir)
        except SpecError as exc:
            errors.append(str(exc))
            stopped_at = stopped_at or folder.name
            continue
        for dag in (build_dag(migration), build_rollback_dag(migration), build_rehearsal_dag(migration)):
            dags[dag.dag_id] = dag
        if stopped_at is None:
            chain.append(migration)
    if chain:
        dags[MIGRATE_DAG_ID] = build_migrate_dag(chain, stopped_at, imported_first)
    return dags, errors


def _description(text: str) -> str:
    """The first paragraph, whole (Airflow shows it in the DAG list), not cut mid-sentence."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    return paragraph if len(paragraph) <= 500 else paragraph[:paragraph.rfind(" ", 0, 497)] + " ..."


def _schedule(spec):
    """The cron read in the window's time zone (so "0 1 * * 1-5" with a Europe/Berlin window starts at 01:00
    Berlin time, when the window opens), else as Airflow reads it (UTC)."""
    if spec.schedule and spec.window and spec.window.timezone != "UTC":
        from airflow.sdk import CronTriggerTimetable

        return CronTriggerTimetable(spec.schedule, timezone=spec.window.timezone)
    return spec.schedule


def _task(task_id: str, fn, **kwargs):
    return task(fn, task_id=task_id, **kwargs)


def _doc(migration: Migration) -> str:
    spec = migration.spec
    parts = [f"# {migration.id}", spec.description.strip(), "",
             f"* table: `{spec.table}`, key `{spec.key}`, batches of {spec.batch_size:,} rows, {spec.shards} shards",
             f"* connection: `{spec.connection_id}`; lock_timeout {spec.lock_timeout_ms} ms",
             f"* checksum: `{migration.checksum[:16]}`", *_window_doc(spec), "", "## up",
             f"```sql\n{migration.up_sql.strip()}\n```"]
    if migration.backfill_sql:
        parts += ["## backfill (per batch)", f"```sql\n{migration.backfill_sql.strip()}\n```"]
    elif migration.transform_file:
        parts += ["## backfill", f"pandas transform `{migration.transform_file.name}`"]
    if migration.cleanup_sql:
        parts += ["## cleanup", f"```sql\n{migration.cleanup_sql.strip()}\n```"]
    parts += ["## down", f"```sql\n{migration.down_sql.strip()}\n```"]
    parts += ["## plan (locks and effects)", f"```\n{render(migration, static_plan(migration))}\n```",
              "`airmigrate plan " + migration.id + "` adds rows, batches and an ETA from the target."]
    return "\n".join(parts)


def _window_doc(spec) -> list[str]:
    if not spec.window:
        return []
    window = spec.window
    opens = window.next_open()
    return [f"* off-peak window: {window.start}-{window.end} {window.timezone} ({', '.join(window.days)}); every "
            f"stage that touches the target waits for it; next opening {opens:%Y-%m-%d %H:%M} UTC (as of this parse)"
            + (f"; schedule `{spec.schedule}` read in {window.timezone}" if spec.schedule else "")]


class FoldersDoNotLoad(Exception):
    """One clean message per broken folder (each already says file, field and fix)."""


def raise_spec_errors(migrations_dir: Path | None = None) -> None:
    """Raise one error listing every folder that does not parse (Airflow shows it as an import error)."""
    errors = []
    for folder in discover(migrations_dir or settings.migrations_dir()):
        try:
            load_migration(folder, settings.expectations_dir())
        except SpecError as exc:
            errors.append(str(exc))
    if errors:
        raise FoldersDoNotLoad(f"{len(errors)} migration folder(s) do not load (the other migrations' DAGs do):\n"
                               + "\n".join(f"- {error}" for error in errors))
