"""Run a migration's DAG in this process with ``dag.test()`` and summarise it.

Used by ``airmigrate run`` and ``make demo``: the same DAG the scheduler runs, executed
locally against the configured target, then a report built from Airflow's task instances
and airmigrate's state tables.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from airmigrate import settings, state
from airmigrate.db import Target, connect
from airmigrate.spec import Migration


def run_dag(dag_id: str, conf: dict | None = None, dags_folder: Path | None = None):
    """dag.test() the DAG from the configured dags folder; returns the finished DagRun."""
    from airflow.dag_processing.dagbag import DagBag

    # dag.test() imports Starlette's test client, which warns about its own httpx use: noise for our users
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    folder = Path(dags_folder or os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or settings.project_root() / "dags")
    bag = DagBag(dag_folder=str(folder))
    dag = bag.dags.get(dag_id)
    if dag is None:
        problems = "\n".join(f"{f}: {e}" for f, e in bag.import_errors.items())
        raise SystemExit(f"no DAG '{dag_id}' in {folder}. Known: {', '.join(sorted(bag.dags)) or 'none'}"
                         + (f"\nImport errors:\n{problems}" if problems else ""))
    return dag.test(run_conf=conf or {})


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
    for task_id, task_state, seconds, count in task_rows(dag_id, dagrun.run_id):
        name = task_id + (f" x{count}" if count > 1 else "")
        lines.append(f"  {name:<18} {task_state:<15} {seconds:>8.1f}s")
    with connect(target, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('airmigrate.runs')").fetchone()[0] is None:
            return "\n".join(lines + ["  (no airmigrate state in the target yet)"])
        run = state.latest_run(conn, migration.id, "down" if rollback else "up")
        hist = state.history(conn, migration.id)
        if run is None or run["dag_run_id"] != dagrun.run_id:  # what the state tables hold is an earlier run's
            why = "dry run" if (dagrun.conf or {}).get("dry_run") else "the preflight task's log above says why"
            return "\n".join(lines + [f"  this run changed nothing in the target ({why})"]
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
        lines.append(f"  history: {hist['status']}")
    if rollback and "restored_rows" in facts:
        lines.append(f"  copied back / restored from the snapshot in batches: {facts['restored_rows']:,} rows")
    if run and run.get("error"):
        lines.append(f"  error: {run['error']}")
    return "\n".join(lines)
