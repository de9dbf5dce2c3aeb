"""`airmigrate status [<id>]` and `airmigrate history`: where migrations stand in the target, read from its state
tables (no Airflow run needed)."""

from __future__ import annotations

import math

from airmigrate import engines, lease, settings
from airmigrate.cli.common import configured_target, load_named, prepare_airflow_env
from airmigrate.cli.imports import history_entries


def cmd_status(args) -> int:
    from airmigrate import state
    from airmigrate.db import connect

    if args.migration is None:
        return cmd_history(args)
    args.migration = load_named(args.migration).id  # an unknown name gets the list of the ones there are
    prepare_airflow_env()
    target = configured_target()
    with connect(target, autocommit=True) as conn:
        if not engines.of(conn).state_sql().state_table_exists(conn, "history"):
            print(f"{args.migration}: never run on {target.describe()} (no airmigrate state there)")
            return 0
        hist = state.history(conn, args.migration)
        run = state.latest_run(conn, args.migration)
        if hist is None and run is None:
            print(f"{args.migration}: never run on {target.describe()}")
            return 0
        print(f"{args.migration}: {hist['status'] if hist else 'no history'}")
        if run:
            summary = state.batch_summary(conn, run["run_id"])
            stages = [s for s in run["completed_stages"] if ":" not in s]  # not each stage's statement groups
            print(f"  run {run['run_id']}: {run['status']}, stages done: {', '.join(stages) or '-'}")
            busy = lease.live_foreign_run(conn, args.migration, dag_run_id=None)
            if busy:
                print(f"  owner: {busy}")
            print(f"  batches: {summary['succeeded']}/{summary['total']} done, {summary['failed']} failed, "
                  f"{summary['pending']} pending; {summary['rows']:,} rows written")
            progress = state.progress_now(conn, run["run_id"])
            if progress:
                print("  backfill: " + progress_line(progress, summary))
            for batch_no, lo, hi, attempts, error in state.failed_batches(conn, run["run_id"]):
                print(f"  failed batch {batch_no} [{lo}..{hi}] after {attempts} attempts: {error}")
            if summary["failed"]:
                print(f"  retry the failed batches: trigger {args.migration} with retry_failed=true, or clear its "
                      "backfill.shard task in the Airflow UI")
            if run["error"]:
                print(f"  error: {run['error']}")
    return 0


def cmd_history(args) -> int:
    """Every migration folder in order (and applied ones whose folder is gone) with its state in the target.
    Exit 1 when an applied migration changed since, its folder is missing, a run failed or a folder does not
    load (like `flyway validate`): CI can gate on it."""
    from airmigrate.db import connect
    from airmigrate.lifecycle import history

    prepare_airflow_env()
    target = configured_target()
    with connect(target, autocommit=True) as conn:
        imported = history_entries(conn)  # imported Flyway scripts / Alembic revisions, from their tool's history
        entries = history.listing(conn, settings.migrations_dir(), settings.expectations_dir(),
                                  {e.id for e in imported}) + imported
    for line in history.render(entries):
        print(line)
    return 1 if history.has_problems(entries) else 0


def progress_line(progress: dict, summary: dict) -> str:
    """Covered share, rate and what is left. A failed batch's keys are not covered: never 100% or "done" then."""
    failed, pending = summary["failed"], summary["pending"]
    percent = progress["percent"]
    if failed:  # progress_now says 100% once nothing is pending, failed batches or not
        percent = min(percent, 99.9, 100 * progress["covered"] / max(progress["estimated"], 1))
    shown = "100" if percent >= 100 else f"{math.floor(percent)}"  # 99.6% is not "100%"
    line = f"{shown}% of ~{progress['estimated']:,} rows covered, {progress['rate']:,.0f} rows/s, "
    if progress["exhausted"] and not pending:
        line += "all ranges handed out, none pending"
        if failed:
            line += f"; NOT complete: {failed} failed batch{'es' if failed != 1 else ''} to retry"
        return line
    line += f"ETA {progress['eta_s'] / 60:.1f} min" + (" (all ranges handed out)" if progress["exhausted"] else "")
    if failed:
        line += f", {failed} failed batch{'es' if failed != 1 else ''} to retry"
    return line
