"""Airflow task callables: resolve the target and the run, call the stage, map errors to retry or fail.

A :class:`~airmigrate.errors.TransientError` becomes an ``AirflowException`` (Airflow retries);
any other airmigrate error becomes ``AirflowFailException`` (no retry: it would fail the same way)
and the run is marked failed in ``airmigrate.runs`` with the message.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import BaseHook, get_current_context
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSkipException,
)

from airmigrate import engines, interrupt, lease, plan, report, settings, state
from airmigrate.control import RunControl, cancel_message
from airmigrate.db import Target, connect, is_transient
from airmigrate.errors import AirmigrateError, PreflightError
from airmigrate.gates import needs_approval, needs_rollback_approval
from airmigrate.lifecycle.migrate import load_all, validate_history
from airmigrate.rehearsal import RehearsalError, rehearse
from airmigrate.report.rehearsal_summary import render
from airmigrate.sources import load_sources_safely
from airmigrate.spec import Migration, load_migration, setting_problem
from airmigrate.stages import backfill, backup, cleanup, preflight, schema_change, validate

log = logging.getLogger(__name__)


def target_for(migration: Migration) -> Target:
    """The target database from the migration's Airflow connection (AIRFLOW_CONN_* works too)."""
    return target_from_connection(BaseHook.get_connection(migration.spec.connection_id))


def target_from_connection(conn) -> Target:
    """Airflow Connection -> Target: the engine from the connection's type, the host possibly a Unix socket
    directory, what it leaves out the engine's defaults."""
    engine = engines.named(engines.name_for_scheme(conn.conn_type or engines.DEFAULT))
    defaults = engine.default_target()
    return Target(host=conn.host or defaults["host"], port=int(conn.port or defaults["port"]),
                  user=conn.login or defaults["user"], password=conn.password or None,
                  dbname=conn.schema or defaults["dbname"], engine=engine.name)


def _load(migration_dir: str) -> Migration:
    return load_migration(migration_dir, settings.expectations_dir())


def _params() -> dict:
    return dict(get_current_context()["params"])


class RunCancelled(AirflowFailException):
    """Cancelled from the console: the task ends (Airflow shows it failed) but the run is recorded as cancelled,
    by whom and what next, not as a failure to fix."""


def stage_task(direction: str = "up"):
    """Decorator: load migration + target + current run, run the stage, translate errors."""

    def wrap(fn):
        def run(migration_dir: str, shard: int | None = None):
            migration = _load(migration_dir)
            target = target_for(migration)
            interrupt.reinstall()  # Airflow's task runner has just set its own SIGTERM handler
            try:
                interrupt.check(fn.__name__.removesuffix("_task"))
                with lease.hold_for_task(target, migration.id, dag_run_id(), _lease_wait(fn)):
                    return fn(target, migration) if shard is None else fn(target, migration, shard)
            except (AirflowSkipException, AirflowRescheduleException, RunCancelled):
                raise
            except interrupt.Interrupted as exc:
                raise AirflowFailException(_mark_interrupted(target, migration, direction, str(exc))) from exc
            except Exception as exc:
                if is_transient(exc) and not _last_try():
                    raise AirflowException(f"{type(exc).__name__}: {exc} (transient: Airflow retries)") from exc
                message = f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, PreflightError):
                    message = _mark_failed(target, migration, direction, message) or message
                raise AirflowFailException(message) from exc

        run.__name__, run.__qualname__, run.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        return run  # not functools.wraps: Airflow would bind arguments against the stage's own signature

    return wrap


def dag_run_id() -> str | None:
    """The DAG run this task belongs to: the owner of the migration's run (None outside a task)."""
    try:
        return get_current_context()["dag_run"].run_id
    except Exception:  # outside a task (tests calling the wrapper directly)
        return None


def _lease_wait(fn) -> float:
    """How long the first task of a run waits for another runner to finish (the wait_for_lease param);
    later tasks never wait: their run is theirs, or they stop."""
    if fn.__name__ not in ("preflight_task", "rollback_preflight_task"):
        return 0.0
    try:
        return float(_params().get("wait_for_lease") or 0)
    except Exception:
        return 0.0


def _last_try() -> bool:
    """Is this the task's last attempt (so a transient error will not be retried any more)?"""
    try:
        ti = get_current_context()["ti"]
        return ti.try_number > (ti.max_tries or 0)
    except Exception:  # outside a task (tests calling the wrapper directly)
        return False


def _mark_failed(target: Target, migration: Migration, direction: str, message: str) -> str | None:
    """The run and the history say failed, with the error and, once the schema was touched, how to roll
    back. Returns the message with that hint added (None when nothing was recorded)."""
    try:
        with connect(target, autocommit=True) as conn:
            run_id = state.owned_run(conn, migration.id, direction, dag_run_id())  # only the owner writes it
            if not run_id:
                return None
            if direction == "up" and _schema_touched(conn, run_id):
                message += (f". The schema is expanded: fix the cause and clear the failed task (it resumes), or "
                            f"roll back with `airmigrate run {migration.id} --rollback` / the DAG "
                            f"{migration.rollback_dag_id}")
            with conn.transaction():
                state.finish_run(conn, run_id, "failed", message[:2000])
                if direction == "up":
                    state.mark_history_failed(conn, migration.id, message[:2000])
        report.write_report_safely(target, migration, direction, run_id)  # a failed run's report (issue 11)
        return message
    except lease.LeaseLost as exc:
        log.warning("%s", exc)
    except Exception:  # recording is best effort; the task fails with the original error regardless
        log.exception("could not record the failure in airmigrate.runs")
    return None


def _mark_interrupted(target: Target, migration: Migration, direction: str, why: str) -> str:
    """Ctrl-C / SIGTERM: the run is paused (resumable, not failed), the history says why; the message says
    how to go on."""
    resume = f"`airmigrate run {migration.id}" + (" --rollback`" if direction == "down" else "`")
    message = (f"interrupted ({why}); the run is paused and resumes where it stopped: {resume}"
               + ("" if direction == "down" else f", or roll back with `airmigrate run {migration.id} --rollback"
                  + (" --approve`" if needs_rollback_approval(migration) else "`")))
    try:
        with connect(target, autocommit=True) as conn, conn.transaction():
            run_id = state.owned_run(conn, migration.id, direction, dag_run_id())
            if run_id:
                conn.execute("UPDATE airmigrate.runs SET status = 'paused', error = %s WHERE run_id = %s",
                             (message[:2000], run_id))
                if direction == "up":
                    state.mark_history_failed(conn, migration.id, message[:2000])
    except Exception:  # the run stops regardless; a later runner resumes it either way
        log.exception("could not record the interruption in airmigrate.runs")
    return message


def _schema_touched(conn, run_id: int) -> bool:
    """Has the run finished a schema_change stage (read in Python: completed_stages is an array or JSON)?"""
    row = conn.execute("SELECT completed_stages FROM airmigrate.runs WHERE run_id = %s", (run_id,)).fetchone()
    stages = json.loads(row[0]) if row and isinstance(row[0], (str, bytes)) else (row[0] if row else None)
    return any(str(s).startswith("schema_change") for s in stages or [])


def pause_run(migration_id: str, direction: str = "up", who: str | None = None) -> None:
    """Approval rejected: keep the run open as `paused` (expanded schema stays); a new trigger resumes it. The
    rejection is recorded as an action (who, when), so the console and the report show why the Airflow run is
    green while nothing was contracted."""
    what = "contract" if direction == "up" else "rollback"
    record_approval(migration_id, direction, False, who, f"{what} rejected: the schema stays as it is; trigger the "
                    "DAG again to be asked again", pause=True)
    log.info("%s rejected: %s stays as it is; trigger the DAG again to be asked again", what, migration_id)


def record_approval(migration_id: str, direction: str, approved: bool, who: str | None, detail: str,
                    pause: bool = False) -> None:
    """An approval step's answer in airmigrate.actions (approve_/reject_ contract or rollback, who, when), where
    the console and the run's report read it; with ``pause`` the run is kept open as `paused` (a rejection)."""
    migration = _load(str(settings.migrations_dir() / migration_id))
    what = "contract" if direction == "up" else "rollback"
    with connect(target_for(migration), autocommit=True) as conn:
        run_id = state.active_run(conn, migration.id, direction)
        if not run_id:
            return
        if pause:
            conn.execute("UPDATE airmigrate.runs SET status = 'paused' WHERE run_id = %s", (run_id,))
        conn.execute("INSERT INTO airmigrate.actions (migration_id, run_id, action, detail, actor) VALUES "
                     "(%s, %s, %s, %s, %s)", (migration.id, run_id, f"{'approve' if approved else 'reject'}_{what}",
                                              detail, who or "unknown"))


APPROVAL_LEASE = timedelta(hours=24)  # a human may take a while; past that, another runner may take the run over


def keep_lease_while_waiting(migration_id: str, why: str) -> None:
    """Before the approval task parks (no process, no lock while it waits), the run's lease outlasts it, so a
    second runner is refused rather than taking the run over under the human's feet."""
    migration = _load(str(settings.migrations_dir() / migration_id))
    _keep_lease(target_for(migration), migration, datetime.now(timezone.utc) + APPROVAL_LEASE, why)


def current_run(target: Target, migration: Migration, direction: str = "up") -> int:
    """The open run this task's DAG run owns (LeaseLost when another runner took it over)."""
    with connect(target, autocommit=True) as conn:
        run_id = state.owned_run(conn, migration.id, direction, dag_run_id())
    if run_id is None:
        raise PreflightError(f"no active {direction} run of {migration.id}: the preflight task starts one; "
                             "clear the whole DAG run rather than a single task")
    return run_id


def _skip_if_dry_run(migration: Migration, what: str) -> None:
    if _params().get("dry_run"):
        raise AirflowSkipException(f"dry_run: {what} of {migration.id} not executed")


def _skip_if_applied(migration: Migration, what: str) -> None:
    """Applied means done: the preflight task found the migration applied with unchanged files and returned
    {"already_applied": True}; every later task skips, so the run is green and changes nothing."""
    marker = get_current_context()["ti"].xcom_pull(task_ids="preflight")
    if isinstance(marker, dict) and marker.get("already_applied"):
        raise AirflowSkipException(f"{migration.id} is already applied: {what} skipped, nothing to do")


def _until_expand() -> bool:
    """The run's `until` param: "expand" stops after validate (the contract waits for `airmigrate complete`)."""
    return _params().get("until") == "expand"


@stage_task()
def preflight_task(target, migration):
    params = _params()
    check_run_params(params)
    if params.get("dry_run"):
        return preflight.preflight(target, migration, dry_run=True,
                                   sql_of=lambda conn: plan.render_sql(migration, conn))
    result = preflight.preflight(target, migration, get_current_context()["dag_run"].run_id)
    report.capture_before_safely(target, migration, result)  # the report's "schema before" (issue 11)
    return result


@stage_task()
def backup_task(target, migration):
    if _params().get("dry_run"):
        log.info("dry_run: the SQL this migration would run:\n-- up\n%s\n-- backfill\n%s\n-- cleanup\n%s",
                 migration.up_sql, migration.backfill_sql or f"(pandas {migration.transform_file})",
                 migration.cleanup_sql or "(none)")
    _skip_if_dry_run(migration, "backup and every later stage")
    _skip_if_applied(migration, "backup")
    return backup.backup(target, migration, current_run(target, migration))


@stage_task()
def schema_change_task(target, migration):
    _skip_if_applied(migration, "schema_change")
    return schema_change.schema_change(target, migration, current_run(target, migration))


@stage_task()
def plan_backfill_task(target, migration):
    _skip_if_applied(migration, "the backfill")
    params = _params()
    shards = int(params.get("shards") or migration.spec.shards)
    backfill.start_backfill(target, migration, current_run(target, migration), params.get("batch_size"),
                            shards=shards, **_pacing_override(params))
    return list(range(shards))


@stage_task()
def backfill_shard_task(target, migration, shard: int):
    """A cleared (re-run) shard task also retries the batches that failed: `clear` is the retry button.
    Outside the migration's window the shard is rescheduled to the next opening: it holds no worker slot
    while it waits, and resumes from the cursor."""
    context, window = get_current_context(), migration.spec.window
    if window and not window.contains():
        _wait_for_window(window, "outside the off-peak window", target, migration)
    _obey_console(target, migration, None)
    result = backfill.run_shard(target, migration, current_run(target, migration), shard,
                                retry_failed=bool(context["params"].get("retry_failed")) or context["ti"].try_number > 1,
                                metrics=_airflow_metrics(migration.id),
                                should_stop=_stop_when(window),
                                shards=int(context["params"].get("shards") or migration.spec.shards),
                                **_pacing_override(context["params"]))
    if interrupt.requested():
        raise interrupt.Interrupted(f"{interrupt.requested()}: shard {shard} stopped after {result['batches']} "
                                    f"batch(es), {result['rows']:,} rows in this attempt")
    _obey_console(target, migration, result.get("stopped"))
    if result.get("stopped") == "window":
        _wait_for_window(window, "the off-peak window closed", target, migration)
    return result


def _stop_when(window):
    """The shard's batch loop stops when the window closes or this process was asked to stop (Ctrl-C)."""
    if window:
        return lambda: bool(interrupt.requested()) or not window.contains()
    return lambda: bool(interrupt.requested())


PAUSED_POKE_S = 15  # a paused shard looks again this often (rescheduled: no worker slot held meanwhile)


def _obey_console(target, migration, stopped: str | None) -> None:
    """Paused from the console: reschedule (no slot held) until resumed. Cancelled: fail, schema left expanded."""
    if stopped is None:
        with connect(target) as conn:
            stopped = RunControl(current_run(target, migration)).refresh(conn).stop_reason
    if stopped == "paused":
        log.info("paused from the console: looking again in %d s (no worker slot held meanwhile)", PAUSED_POKE_S)
        wake = datetime.now(timezone.utc) + timedelta(seconds=PAUSED_POKE_S)
        _keep_lease(target, migration, wake, "paused from the console")
        raise AirflowRescheduleException(reschedule_date=wake)
    if stopped == "cancelled":
        raise RunCancelled(record_cancel(target, migration))


def record_cancel(target, migration, direction: str = "up") -> str:
    """A cancelled run's record: who cancelled it and when, and the two ways on (resume or roll back), as the
    run's error (the run stays resumable: a new trigger continues from the cursor); its report is written once,
    by the first shard that stops."""
    with connect(target, autocommit=True) as conn:
        run_id = state.owned_run(conn, migration.id, direction, dag_run_id())  # only the owner writes its run
        if run_id is None:
            return f"{migration.id}: cancelled from the console"
        row = conn.execute("SELECT actor, at FROM airmigrate.actions WHERE run_id = %s AND action = 'cancel' "
                           "ORDER BY at DESC LIMIT 1", (run_id,)).fetchone()
        message = cancel_message(migration.id, migration.rollback_dag_id, *(row or (None, None)))
        with conn.transaction():
            first = conn.execute("UPDATE airmigrate.runs SET status = 'failed', finished_at = now(), error = %s "
                                 "WHERE run_id = %s AND status <> 'failed'", (message, run_id)).rowcount
            if direction == "up":
                state.mark_history_failed(conn, migration.id, message)
    if first:
        report.write_report_safely(target, migration, direction, run_id)
    return message


def _pacing_override(params) -> dict:
    """The trigger form's app_latency_ratio, when the DAG has that param (null there means full speed)."""
    return {"app_latency_ratio": params["app_latency_ratio"]} if "app_latency_ratio" in params else {}


def check_run_params(params: dict) -> None:
    """The trigger form's numbers, refused with the reason before anything runs (never quietly clamped)."""
    for name in ("batch_size", "shards", "app_latency_ratio"):
        if name in params and params[name] is not None and (problem := setting_problem(name, params[name])):
            raise PreflightError(f"param {name}={params[name]!r}: {problem}. Nothing was run")


@stage_task()
def window_task(target, migration):
    """The off-peak window gates the whole run: before the preflight touches the target, the run waits for the
    window, rescheduled to its opening (no worker slot held meanwhile)."""
    window = migration.spec.window
    if window and not window.contains():
        _wait_for_window(window, "outside the off-peak window: the run waits before touching the target")
    log.info("inside the off-peak window (%s-%s %s)", window.start, window.end, window.timezone)


def _wait_for_window(window, why: str, target=None, migration=None):
    opens = window.next_open()
    log.info("%s: rescheduled to %s (no worker slot held meanwhile)", why, opens.isoformat())
    if target is not None:
        _keep_lease(target, migration, opens, f"waiting for the off-peak window ({opens:%Y-%m-%d %H:%M %Z})")
    raise AirflowRescheduleException(reschedule_date=opens)


def _keep_lease(target: Target, migration: Migration, until, why: str) -> None:
    """A rescheduled task holds no lock while it waits: its run's lease says the DAG run is still there."""
    try:
        with connect(target, autocommit=True) as conn:
            lease.extend_until(conn, migration.id, dag_run_id(), until, why)
    except Exception:  # the wait goes on; at worst another runner may take the run over meanwhile
        log.exception("could not extend the run's lease")


def _airflow_metrics(migration_id: str):
    """Rows and batches as Airflow Stats counters, batch durations as timers (StatsD/OTel when configured)."""
    from airflow.sdk.observability.stats import Stats

    def emit(name: str, value: float) -> None:
        if name == "batch_seconds":
            Stats.timing(f"airmigrate.batch_duration.{migration_id}", value * 1000)
        else:
            Stats.incr(f"airmigrate.{name}.{migration_id}", count=int(value))

    return emit


@stage_task()
def validate_task(target, migration):
    """With until=expand, a passed validation ends the way up for now: history `expanded`, the run `paused`
    (open: the next trigger, e.g. `airmigrate complete`, resumes it and runs the contract)."""
    _skip_if_applied(migration, "validate")
    run_id = current_run(target, migration)
    result = validate.validate(target, migration, run_id)
    if _until_expand():
        with connect(target, autocommit=True) as conn, conn.transaction():
            state.mark_expanded(conn, migration.id)
            conn.execute("UPDATE airmigrate.runs SET status = 'paused' WHERE run_id = %s", (run_id,))
        log.info("until=expand: %s is expanded and validated; the contract waits: `airmigrate complete %s` "
                 "(or trigger the DAG with until=contract) once the new application version is deployed",
                 migration.id, migration.id)
        report.write_report_safely(target, migration, "up", run_id)  # this run ends here (issue 11)
    return result


@stage_task()
def cleanup_task(target, migration):
    _skip_if_applied(migration, "cleanup")
    if _until_expand():
        raise AirflowSkipException(f"until=expand: the contract of {migration.id} waits for `airmigrate complete "
                                   f"{migration.id}`")
    _record_who_triggered()
    window = migration.spec.window
    if window and not window.contains() and not needs_approval(migration):
        # a contract a human approves runs when approved (they chose the moment); one that needs none keeps
        # to the window like every other stage that touches the target
        _wait_for_window(window, "the contract waits for the off-peak window", target, migration)
    run_id = current_run(target, migration)
    result = cleanup.cleanup(target, migration, run_id)
    report.write_report_safely(target, migration, "up", run_id)  # logs the report's path last (issue 11)
    return result


def _record_who_triggered() -> None:
    """The history's applied_by / rolled_back_by: the Airflow user who triggered the run, when known.

    dag.test() (`airmigrate run`, `airflow dags test`) names its runs' user "dag_test": no person, so it is
    ignored and state.who() falls back to AIRMIGRATE_USER or the OS user who ran the command."""
    user = getattr(get_current_context()["dag_run"], "triggering_user_name", None)
    if user and user != "dag_test":  # what airflow.sdk's DAG.test() puts into DagRun.triggering_user_name
        os.environ["AIRMIGRATE_USER"] = user


def validate_history_task():
    """airmigrate__migrate's first task: like `airmigrate migrate`, refuse while the target's history holds a
    migration whose folder is missing or whose applied files changed (unless the params say to go on)."""
    params, migrations = _params(), load_all()
    if not migrations:
        return []
    try:
        notes = validate_history(target_for(migrations[0]), migrations, bool(params.get("ignore_missing")),
                                 bool(params.get("allow_drift")), who=_triggering_user(), imported=_imported_ids())
    except AirmigrateError as exc:  # a refusal: retrying would refuse the same way
        raise AirflowFailException(str(exc)) from exc
    for note in notes:
        log.warning("%s", note)
    return notes


def _imported_ids() -> set[str]:
    """The imported projects' migration ids (their airmigrate.history rows are theirs, not lost folders)."""
    return {m.id for source in load_sources_safely(settings.migrations_dir())[0] for m in source.migrations()}


def _triggering_user() -> str | None:
    user = getattr(get_current_context()["dag_run"], "triggering_user_name", None)
    return user if user and user != "dag_test" else None


def rehearse_task(migration_dir: str):
    """<id>__rehearsal: the whole rehearsal in one task. It works on its own copy, so a failure marks nothing
    on the target (not a stage_task)."""
    migration, params = _load(migration_dir), _params()
    try:
        results = rehearse(target_for(migration), migration, sample=params.get("sample"),
                           keep=bool(params.get("keep")), dag_run_id=get_current_context()["dag_run"].run_id)
    except RehearsalError as exc:
        raise AirflowFailException(str(exc)) from exc
    for line in render(results).splitlines():
        log.info("%s", line)
    return {"status": results["status"], "seconds": results.get("seconds")}
