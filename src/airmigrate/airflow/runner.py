"""Run a migration's DAG in this process with ``dag.test()`` and summarise it.

Used by ``airmigrate run`` and ``make demo``: the same DAG the scheduler runs, executed
locally against the configured target, then a report built from Airflow's task instances
and airmigrate's state tables.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

from airmigrate import engines, settings, state
from airmigrate.db import Target, connect
from airmigrate.order import dependents
from airmigrate.spec import Migration
from airmigrate.stages.generated import column_types
from airmigrate.stages.rollback import rollback_sql

# (dag_id, run_id) -> {task_id: the error of its last failed attempt}, filled by run_dag for report()
_TASK_ERRORS: dict[tuple[str, str], dict[str, str]] = {}


def log_file_for(dag_id: str) -> Path:
    """Where `airmigrate run` writes a run's Airflow task logs: var/logs/<dag_id>/<UTC timestamp>.log."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return settings.var_dir() / "logs" / dag_id / f"{stamp}.log"


def run_dag(dag_id: str, conf: dict | None = None, dags_folder: Path | None = None, log_file: Path | None = None,
            secrets: tuple[str | None, ...] = ()):
    """dag.test() the DAG from the configured dags folder; returns the finished DagRun.

    With `log_file`, everything Airflow and the tasks log (and print) during the run goes to that file
    instead of the console, with `secrets` (and any password in a connection URL) masked. The error each
    failed task raised is kept for report()."""
    from airflow.dag_processing.dagbag import DagBag

    # dag.test() imports Starlette's test client, which warns about its own httpx use: noise for our users
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    folder = Path(dags_folder or os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or settings.project_root() / "dags")
    with _logs_to(log_file, secrets), _task_errors() as errors:
        bag = DagBag(dag_folder=str(folder))
        dag = bag.dags.get(dag_id)
        if dag is None:
            problems = "\n".join(f"{f}: {e}" for f, e in bag.import_errors.items())
            raise SystemExit(f"no DAG '{dag_id}' in {folder}. Known: {', '.join(sorted(bag.dags)) or 'none'}"
                             + (f"\nImport errors:\n{problems}" if problems else ""))
        dagrun = dag.test(run_conf=conf or {})
    _TASK_ERRORS[(dag_id, dagrun.run_id)] = errors
    return dagrun


def task_errors(dagrun) -> dict[str, str]:
    """task_id -> the error its last failed attempt raised, for a DagRun run_dag returned."""
    return _TASK_ERRORS.get((dagrun.dag_id, dagrun.run_id), {})


@contextlib.contextmanager
def _task_errors():
    """Record the exception of every task attempt dag.test() runs (it logs them, but returns only states)."""
    from airflow.sdk.execution_time import supervisor

    errors: dict[str, str] = {}
    original = supervisor.run_task_in_process

    def recording(ti, task, *args, **kwargs):
        result = original(ti, task, *args, **kwargs)
        error = getattr(result, "error", None)
        if error is not None:
            text = str(error).strip()
            errors[ti.task_id] = text if text.startswith(type(error).__name__) or ": " in text.split("\n")[0] \
                else f"{type(error).__name__}: {text}"
        return result

    supervisor.run_task_in_process = recording  # dag.test() imports it from the module at each task
    try:
        yield errors
    finally:
        supervisor.run_task_in_process = original


URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)


class _LogStream:
    """A text stream that writes to the log file while a run is going on and to the console otherwise: loggers
    structlog caches during a run keep it, so a later run (`make demo` runs two) or the summary is not lost.
    Masks the secrets it was given and the password of any connection URL."""

    def __init__(self, console):
        self.console, self.target, self.secrets = console, console, ()

    def write(self, text: str) -> int:
        if self.target is not self.console:
            text = URL_PASSWORD.sub(r"\1***@", text)
            for secret in self.secrets:
                text = text.replace(secret, "***")
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(self.target, name)


_STREAMS: dict[str, _LogStream] = {}


@contextlib.contextmanager
def _logs_to(path: Path | None, secrets: tuple[str | None, ...] = ()):
    """Python logging (root handler and any console handler), stdout and stderr into `path` for the duration."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    consoles = {"stdout": sys.stdout, "stderr": sys.stderr}
    with open(path, "a", encoding="utf-8", buffering=1) as file:
        streams = {}
        for name, console in consoles.items():
            stream = _STREAMS.setdefault(name, _LogStream(console))
            if not isinstance(console, _LogStream):
                stream.console = console  # e.g. pytest's capture, replaced between tests
            stream.target, stream.secrets = file, tuple(s for s in secrets if s and len(s) >= 3)
            streams[name] = stream
        repointed = []
        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
            for handler in getattr(logger, "handlers", ()):
                if type(handler) is logging.StreamHandler and handler.stream in (
                        sys.__stdout__, sys.__stderr__, consoles["stdout"], consoles["stderr"]):
                    repointed.append((handler, handler.stream))
                    handler.setStream(streams["stderr" if handler.stream in (sys.__stderr__, consoles["stderr"])
                                              else "stdout"])
        if not any(handler in logging.getLogger().handlers for handler, _ in repointed):
            fallback = logging.StreamHandler(streams["stdout"])
            fallback.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(fallback)
            repointed.append((fallback, None))
        sys.stdout, sys.stderr = streams["stdout"], streams["stderr"]
        try:
            yield
        finally:
            for stream in streams.values():
                stream.flush()
                stream.target, stream.secrets = stream.console, ()
            sys.stdout, sys.stderr = consoles["stdout"], consoles["stderr"]
            for handler, stream in repointed:
                if stream is None:
                    logging.getLogger().removeHandler(handler)
                else:
                    handler.setStream(stream)


def task_rows(dag_id: str, run_id: str) -> list[tuple[str, str, float, int]]:
    """(task_id, state, seconds, map count) per task in DAG order, mapped shards folded into one row."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id).all()
        rows: dict[str, list] = {}
        for ti in sorted(tis, key=lambda t: (t.start_date is None, t.start_date or 0)):
            seconds = (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else 0.0
            row = rows.setdefault(ti.task_id, [ti.task_id, str(ti.state), 0.0, 0, ti.start_date, ti.end_date])
            row[3] += 1
            if str(ti.state) != "success":
                row[1] = str(ti.state)
            starts = [d for d in (row[4], ti.start_date) if d]
            ends = [d for d in (row[5], ti.end_date) if d]
            row[4], row[5] = (min(starts) if starts else None), (max(ends) if ends else None)
            row[2] = (row[5] - row[4]).total_seconds() if row[4] and row[5] else seconds
    return [(r[0], r[1], r[2], r[3]) for r in rows.values()]


def report(dagrun, migration: Migration, target: Target, rollback: bool = False) -> str:
    """The lines `airmigrate run` and `make demo` print."""
    dag_id = migration.rollback_dag_id if rollback else migration.id
    lines = [f"{dag_id} on {target.describe()}: {dagrun.state}"]
    lines.append(f"  {'stage':<18} {'status':<15} {'duration':>9}")
    rows = task_rows(dag_id, dagrun.run_id)
    for task_id, task_state, seconds, count in rows:
        name = task_id + (f" x{count}" if count > 1 else "")
        lines.append(f"  {name:<18} {task_state:<15} {seconds:>8.1f}s")
    errors = task_errors(dagrun)
    failed = [(task_id, errors.get(task_id)) for task_id, task_state, _, _ in rows if task_state == "failed"]
    with connect(target, autocommit=True) as conn:
        if not engines.of(conn).state_sql().state_table_exists(conn, "runs"):
            return "\n".join(lines + ["  (no airmigrate state in the target yet)"] + _error_lines(failed))
        run = state.latest_run(conn, migration.id, "down" if rollback else "up")
        hist = state.history(conn, migration.id)
        if run is None or run["dag_run_id"] != dagrun.run_id:  # what the state tables hold is an earlier run's
            dry_run = bool((dagrun.conf or {}).get("dry_run"))
            why = "dry run" if dry_run else "the preflight task's log says why"
            if failed:
                why = f"the {failed[0][0]} task refused it"
            if dry_run and rollback and not failed:
                return "\n".join(lines + ["  dry run: nothing was changed; the rollback would run:"]
                                 + _dry_run_rollback(conn, migration)
                                 + ([f"  history: {hist['status']}"] if hist else []))
            if hist and hist["status"] == "applied" and str(dagrun.state) == "success" and not dry_run:
                when = f"{hist['applied_at']:%Y-%m-%d %H:%M}" if hist["applied_at"] else "?"
                why = f"already applied: nothing to do; applied on {when} by {hist['applied_by']}"
            return "\n".join(lines + [f"  this run changed nothing in the target ({why})"] + _error_lines(failed)
                             + ([f"  history: {hist['status']}"] if hist else []))
        up_run = run if not rollback else state.latest_run(conn, migration.id, "up")
        batches = state.batch_summary(conn, up_run["run_id"]) if up_run else None
    facts = (run or {}).get("facts", {})
    if not rollback and batches and batches["total"]:
        rate = batches["rows"] / batches["seconds"] if batches["seconds"] else 0
        lines.append(f"  backfill: {batches['rows']:,} rows written in {batches['total']} batches "
                     f"({batches['failed']} failed, {batches['pending']} pending), {rate:,.0f} rows/s")
    if not rollback and "validation" in facts:
        docs = facts.get("data_docs")
        lines.append(f"  validation: {facts['validation']} ({facts.get('expectations', 0)} expectations)"
                     + (f"; Data Docs: {docs}" if docs else ""))
        for failure in facts.get("failed_expectations") or []:
            lines.append(f"    failed: {failure}")
    if hist:
        lines.append(f"  backup: {hist['backup_path'] or 'none'}; rollback snapshot: "
                     f"{('airmigrate.' + hist['snapshot_table']) if hist['snapshot_table'] else 'none needed'}")
        lines.append(f"  history: {hist['status']}" + (
            f" (the contract waits: `airmigrate complete {migration.id}` once the new application version is "
            "deployed)" if hist["status"] == "expanded" and not rollback else ""))
    if rollback and "restored_rows" in facts:
        lines.append(f"  copied back / restored from the snapshot in batches: {facts['restored_rows']:,} rows")
    if run and run.get("error"):
        lines += _indented("error", run["error"])
    elif failed:
        lines += _error_lines(failed)
    return "\n".join(lines)


def _dry_run_rollback(conn, migration: Migration) -> list[str]:
    """The SQL of a rollback dry run, and the refusal a real rollback would meet (a later migration needing it)."""
    spec = migration.spec
    text = rollback_sql(conn, migration, frozenset(column_types(conn, spec.schema_name, spec.table_name)))
    out = [f"    {line}" for line in text.splitlines()]
    found = dependents(conn, migration)
    if found:
        out.append("  the rollback would be refused while " + "; ".join(f"{other.id} ({why})" for other, why in found)
                   + f" is in the database: `airmigrate run {migration.id} --rollback --cascade` rolls "
                   "those back first")
    return out


def _error_lines(failed: list[tuple[str, str | None]]) -> list[str]:
    """The failing tasks' own errors, so nobody has to dig through the task logs for them."""
    out = []
    for task_id, error in failed[:3]:
        out += _indented(f"error in {task_id}", error or "(no exception recorded: see the task log)")
    return out


def _indented(label: str, text: str) -> list[str]:
    first, *rest = str(text).strip().splitlines() or [""]
    return [f"  {label}: {first}"] + [f"    {line}" for line in rest]
