"""`airmigrate run`, `complete`, `migrate` and `baseline`: a migration's DAG run here with dag.test(), under the
migration's lease, and what it did printed."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from airmigrate import interrupt, lease
from airmigrate.cli import imports
from airmigrate.cli.common import configured_target as _configured_target, load_named, prepare_airflow_env
from airmigrate.db import Target
from airmigrate.errors import AirmigrateError


def cmd_run(args) -> int:
    OUTPUT["verbose"], OUTPUT["wait"] = args.verbose, args.wait
    target = _configured_target()
    conf = _params(args.param)
    if args.approve:
        conf["approve_rollback" if args.rollback else "approve_contract"] = True
    if args.until and not args.rollback:
        conf["until"] = args.until
    if args.cascade and not args.rollback:
        raise AirmigrateError("--cascade goes with --rollback: `airmigrate run <id> --rollback --cascade`")
    if (code := imports.run_imported(args.migration, target, args.rollback, conf)) is not None:
        return code  # a Flyway script or Alembic revision (airmigrate import)
    if args.cascade:  # the dependents first, latest first, each like a rollback of its own; stop at a failure
        from airmigrate.db import connect
        from airmigrate.gates import needs_rollback_approval
        from airmigrate.order import cascade

        migration = load_named(args.migration)
        with connect(target, autocommit=True) as conn:
            first = cascade(conn, migration)
        waiting = [m.id for m in [*first, migration] if needs_rollback_approval(m)]
        if waiting and not (conf.get("approve_rollback") or conf.get("dry_run")):
            raise AirmigrateError(f"the rollback of {', '.join(waiting)} drops a column or a table and waits for a "
                                  "human approval, which a local run cannot give: look at it with --param "
                                  "dry_run=true, then re-run with --approve. Nothing was run")
        if first:
            print(f"cascade: rolling back {', '.join(m.id for m in first)} first, then {migration.id}", flush=True)
        for dependent in first:
            code = run_and_report(dependent.id, target, rollback=True, conf=dict(conf))
            if code:
                print(f"cascade stopped: the rollback of {dependent.id} failed; {migration.id} was not rolled back",
                      file=sys.stderr, flush=True)
                return code
    return run_and_report(args.migration, target, rollback=args.rollback, conf=conf)


def cmd_migrate(args) -> int:
    from airmigrate.lifecycle.migrate import migrate

    OUTPUT["wait"] = args.wait
    prepare_airflow_env()
    target = _configured_target()
    if args.source:
        return imports.migrate_source(args.source, target)
    code = imports.migrate_sources_first(target)  # imported projects before the native folders (README)
    if code:
        print("migrate: stopped before the native folders (an imported project comes first)", flush=True)
        return code
    errors: dict[str, str] = {}
    code = migrate(target, lambda migration_id, conf: run_and_report(migration_id, target, conf=conf, errors=errors,
                                                                     what="migrate"),
                   to=args.to, approve=args.approve, errors=errors, ignore_missing=args.ignore_missing,
                   allow_drift=args.allow_drift, wait_s=args.wait, imported=imports.imported_ids())
    for line in imports.pending_note(target):
        print(line)
    return interrupt.EXIT_INTERRUPTED if interrupt.requested() else code


def cmd_baseline(args) -> int:
    from airmigrate.lifecycle.migrate import baseline

    prepare_airflow_env()
    target = _configured_target()
    if (code := imports.baseline_imported(args.to, target)) is not None:
        return code  # the tool's own baseline (Flyway's BASELINE row, Alembic's stamp)
    ids = baseline(target, args.to)
    for migration_id in ids:
        print(f"{migration_id}: recorded as applied (not run)")
    print(f"baseline: {len(ids)} migration(s) recorded as applied on {target.describe()}")
    return 0


def cmd_complete(args) -> int:
    from airmigrate.lifecycle.migrate import check_expanded

    OUTPUT["wait"] = args.wait
    prepare_airflow_env()
    target = _configured_target()
    check_expanded(target, load_named(args.migration))
    conf = {"until": "contract", **({"approve_contract": True} if args.approve else {})}
    return run_and_report(args.migration, target, conf=conf)


OUTPUT = {"verbose": False, "wait": 0.0}  # --verbose: Airflow's task logs on the console; --wait: for a lease


def run_and_report(migration_id: str, target: Target, rollback: bool = False, conf: dict | None = None,
                   errors: dict[str, str] | None = None, what: str = "run") -> int:
    """Run the DAG through Airflow and print its report; a forward run the preflight would refuse (or an
    applied no-op) is answered before Airflow starts (airmigrate.precheck). The run holds the migration's
    lease (airmigrate.lease) and stops at a batch boundary on Ctrl-C (airmigrate.interrupt)."""
    from airmigrate.gates import needs_approval, needs_rollback_approval

    migration = load_named(migration_id)
    conf = conf or {}
    if not rollback and needs_approval(migration) and not (conf.get("approve_contract") or conf.get("dry_run")
                                                           or conf.get("until") == "expand"):
        raise AirmigrateError(f"{migration.id}'s contract step waits for a human approval (it drops something), "
                              "and a local run has no UI to answer it: re-run with --approve to approve it up front, "
                              "or trigger the DAG from the Airflow UI (`make airflow`). Nothing was run")
    if rollback and needs_rollback_approval(migration) and not (conf.get("approve_rollback") or conf.get("dry_run")):
        raise AirmigrateError(f"the rollback of {migration.id} drops a column or a table and waits for a human "
                              "approval, which a local run cannot give: look at it with --param dry_run=true, then "
                              "re-run with --approve, or trigger the rollback DAG from the Airflow UI. Nothing was run")
    if not rollback:
        from airmigrate.precheck import before_airflow

        verdict = before_airflow(target, migration)
        if verdict.code is not None:
            print("\n".join(verdict.lines), flush=True)
            if errors is not None and verdict.error:
                errors[migration.id] = verdict.error
            return verdict.code
    prepare_airflow_env()
    from airmigrate.airflow.runner import log_file_for, report, run_dag

    dag_id = migration.rollback_dag_id if rollback else migration.id
    log_file = None if OUTPUT["verbose"] else log_file_for(dag_id)
    interrupt.install()  # Ctrl-C / SIGTERM: stop at the next batch boundary, resumable (exit 130)
    with lease.hold_for_cli(target, migration.id, f"{what} {dag_id}", wait_s=OUTPUT["wait"]):
        print(f"running {dag_id} through Airflow (dag.test) ..." + (f" task logs: {_shown_path(log_file)}"
                                                                    if log_file else ""), flush=True)
        dagrun = run_dag(dag_id, conf, log_file=log_file, secrets=(target.password,))
    print(report(dagrun, migration, target, rollback=rollback), flush=True)
    if not rollback:  # shards: 2 and one shard did it all: why (dag.test runs mapped tasks one by one)
        _print_shard_note(migration, target, dagrun.run_id)
    _print_run_report(migration, target, dag_id, dagrun.run_id, rollback)
    if log_file:
        print(f"  task logs: {_shown_path(log_file)} (--verbose shows them here)", flush=True)
    if errors is not None and str(dagrun.state) != "success":
        from airmigrate.airflow.runner import task_errors

        first = next(iter(task_errors(dagrun).values()), None)
        if first:
            errors[migration.id] = first
    if interrupt.requested():
        print(f"interrupted by {interrupt.requested()}: the run stopped at a batch boundary and is paused (nothing "
              f"half-done). Resume: `airmigrate run {migration.id}{' --rollback' if rollback else ''}`"
              + ("" if rollback else f"; or roll back: `airmigrate run {migration.id} --rollback"
                 + (" --approve`" if needs_rollback_approval(migration) else "`")), flush=True)
        return interrupt.EXIT_INTERRUPTED
    return 0 if str(dagrun.state) == "success" else 1


def _print_shard_note(migration, target: Target, dag_run_id: str) -> None:
    from airmigrate.db import connect
    from airmigrate.stages.backfill.shares import run_note

    with connect(target, autocommit=True) as conn:
        note = run_note(conn, migration, dag_run_id)
    if note:
        print(f"  {note}", flush=True)


def _print_run_report(migration, target: Target, dag_id: str, dag_run_id: str, rollback: bool) -> None:
    """The run's report (issue 11), written again here with Airflow's task timings; its path printed. Nothing
    for a run that changed nothing (dry run, already applied)."""
    from airmigrate.airflow.runs import dag_run_stages
    from airmigrate.report import write_report

    try:
        path = write_report(target, migration, "down" if rollback else "up", dag_run_id=dag_run_id,
                            stages=dag_run_stages(dag_id, dag_run_id))
    except Exception as exc:  # the run's outcome stands; the report is its paperwork
        print(f"  report: not written ({type(exc).__name__}: {exc})", flush=True)
        return
    if path is not None:
        print(f"  report: {_shown_path(path)} (and {_shown_path(path.with_suffix('.md'))})", flush=True)


def newest_report(migration_id: str) -> str | None:
    from airmigrate.report import reports_dir

    reports = sorted(reports_dir(migration_id).glob("*.html"), key=lambda p: p.stat().st_mtime)
    return _shown_path(reports[-1]) if reports else None


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _params(pairs: list[str]) -> dict:
    """--param KEY=VALUE pairs as the trigger form's conf: a value that reads as a JSON number, true, false or null
    is that (`app_latency_ratio=1.5` a number, `app_latency_ratio=null` full speed: as strings the DAG's params
    refused them), anything else a string (`until=expand`)."""
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise AirmigrateError(f"--param {pair!r}: expected KEY=VALUE, e.g. --param batch_size=5000")
        conf[key] = _scalar(value)
    return conf


def _scalar(value: str):
    """JSON's null, booleans and finite numbers; the rest (NaN and Infinity too: a ratio of NaN compares false
    with every limit, so it would pass the DAG's checks and pace nothing) stays the string it was."""
    try:
        parsed = json.loads(value.lower() if value.lower() in ("true", "false", "null") else value)
    except ValueError:
        return value
    if isinstance(parsed, float) and not math.isfinite(parsed):
        return value
    return parsed if parsed is None or isinstance(parsed, (bool, int, float)) else value
