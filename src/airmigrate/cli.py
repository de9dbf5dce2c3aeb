"""The ``airmigrate`` command: run a migration's DAG locally, run the demo, show status and the spec schema.

Airflow reads its configuration when first imported, so the environment is prepared
(AIRFLOW_HOME, dags folder, target connection) before anything imports airflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from airmigrate import cli_import, interrupt, lease, settings
from airmigrate.cli_common import configured_target as _configured_target, load_named, prepare_airflow_env
from airmigrate.cli_status import cmd_history, cmd_status
from airmigrate.db import Target
from airmigrate.errors import AirmigrateError, SpecError

DEMO_DB = "airmigrate_demo"
EXAMPLES = ("0001_add_user_email_verified", "0002_normalize_user_phone")


EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process killed by SIGPIPE, e.g. `... | head`


def main(argv: list[str] | None = None) -> int:
    """The command; its output may go into a pipe that closes early (`airmigrate status x | head -4`)."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here rather than at interpreter exit
        return code
    except BrokenPipeError:
        # The reader is gone: stop quietly, like a SIGPIPE-killed program. stdout now points at /dev/null
        # so the interpreter's final flush of the unwritten rest does not fail (and print) again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # platformdirs (via a dependency) warns when a root shell has no XDG_RUNTIME_DIR: noise in our output
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    try:
        return args.func(args)
    except AirmigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # 75: another runner holds the migration (lease.EXIT_BUSY)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airmigrate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True, metavar="command")
    run = sub.add_parser("run", help="run a migration's DAG locally through Airflow (dag.test) and report")
    run.add_argument("migration", help="migration folder name, e.g. 0001_add_user_email_verified")
    run.add_argument("--rollback", action="store_true", help="run the rollback DAG instead")
    run.add_argument("--approve", action="store_true",
                     help="approve the destructive contract step (or a rollback that drops a column or "
                          "table) up front (else the run waits for the UI)")
    run.add_argument("--cascade", action="store_true",
                     help="with --rollback: first roll back the migrations that depend on this one (depends_on, "
                          "or touching the same columns, indexes, tables), latest first, stopping at a failure")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="DAG param, e.g. batch_size=5000 or dry_run=true (repeatable)")
    run.add_argument("--verbose", action="store_true",
                     help="stream Airflow's task logs to the console (default: a short summary, the logs in a file "
                          "under var/logs/<dag_id>/ that the summary names)")
    run.add_argument("--until", choices=("contract", "expand"),
                     help="expand: stop after validate (history `expanded`; the contract waits for `airmigrate "
                          "complete`); contract (default): the whole way")
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="when another runner (a CLI or an Airflow DAG run) is running this migration, wait up to "
                          "SECONDS for it instead of refusing at once (exit 75)")
    run.set_defaults(func=cmd_run)
    rehearse = sub.add_parser("rehearse", help="run a migration and its rollback on a copy of the touched tables, "
                                               "check and measure it; the target is only read")
    rehearse.add_argument("migration", help="migration folder name")
    rehearse.add_argument("--sample", type=float, metavar="PERCENT",
                          help="copy this percentage of the rows (whole key ranges); durations are extrapolated")
    rehearse.add_argument("--keep", action="store_true", help="keep the copy (a database next to the target)")
    rehearse.set_defaults(func=cmd_rehearse)
    docs = sub.add_parser("docs", help="write the target's schema documentation (tables, columns, comments, indexes, "
                                       "constraints, a foreign-key diagram) next to the schema changelog")
    docs.add_argument("--out", type=Path, help="folder (default docs/schema, or AIRMIGRATE_DOCS_DIR)")
    docs.set_defaults(func=cmd_docs)
    migrate = sub.add_parser("migrate", help="run every pending migration in folder order (each through its DAG), "
                                             "stop at the first failure, print a summary; exit 0 all applied, 1 not")
    migrate.add_argument("--to", metavar="ID", help="stop after this migration (inclusive)")
    migrate.add_argument("--approve", action="store_true", help="approve destructive contract steps up front")
    migrate.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="when another runner (a CLI or an Airflow DAG run) is running a migration, wait up to "
                          "SECONDS for it instead of refusing at once (exit 75)")
    migrate.add_argument("--ignore-missing", action="store_true",
                         help="go on although a migration in the target's history has no folder any more "
                              "(recorded in airmigrate.actions)")
    migrate.add_argument("--allow-drift", action="store_true",
                         help="go on although an applied migration's files changed since (recorded)")
    migrate.add_argument("--source", metavar="NAME", help="the migrations of an imported Flyway/Alembic project instead "
                                                          "(`airmigrate import`), in that tool's order")
    migrate.set_defaults(func=cmd_migrate)
    baseline = sub.add_parser("baseline", help="record every migration up to --to as applied without running it "
                                               "(adopting airmigrate on an existing schema)")
    baseline.add_argument("--to", metavar="ID", required=True, help="the last migration the schema already has")
    baseline.set_defaults(func=cmd_baseline)
    complete = sub.add_parser("complete", help="run the contract of a migration run with --until expand (after the "
                                               "new application version is deployed)")
    complete.add_argument("migration")
    complete.add_argument("--approve", action="store_true", help="approve a destructive contract step up front")
    complete.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="when another runner (a CLI or an Airflow DAG run) is running this migration, wait up to "
                          "SECONDS for it instead of refusing at once (exit 75)")
    complete.set_defaults(func=cmd_complete)
    demo = sub.add_parser("demo", help="seed a demo database and run the example migrations end to end")
    demo.add_argument("--rows", type=int, default=int(os.environ.get("AIRMIGRATE_DEMO_ROWS", 1_000_000)))
    demo.add_argument("--verbose", action="store_true", help="show Airflow's task logs (progress per batch)")
    demo.set_defaults(func=cmd_demo)
    status = sub.add_parser("status", help="where a migration stands, from the state tables (without one: "
                                           "the history of all, like `airmigrate history`)")
    status.add_argument("migration", nargs="?")
    status.set_defaults(func=cmd_status)
    history = sub.add_parser("history", help="every migration with its state in the target, applied at/by, duration, "
                                             "rows; exit 1 when an applied one changed or a run failed")
    history.set_defaults(func=cmd_history)
    lint = sub.add_parser("lint", help="lint migration folders or SQL files (squawk + airmigrate rules; with a "
                                       "target set, also the preflight's checks of it); exit 0 clean, 1 findings, "
                                       "2 usage error")
    lint.add_argument("paths", nargs="*", help="migration folders, migrations/ itself, or .sql files")
    lint.add_argument("--pg-version", default="15.0", help="PostgreSQL version of the target (default 15.0)")
    lint.set_defaults(func=cmd_lint)
    plan = sub.add_parser("plan", help="each statement with its lock and effect, rows, batches and ETA; with the "
                                       "target, the preflight's checks first (exit 1 when `run` would refuse)")
    plan.add_argument("migration")
    plan.add_argument("--sql", action="store_true", help="print exactly the SQL that will run instead (column "
                                                         "types read from the target unless --offline)")
    plan.add_argument("--rollback", action="store_true", help="plan the rollback DAG instead: down DDL, the "
                                                              "per-batch copy-back, finish, each with its lock")
    plan.add_argument("--offline", action="store_true", help="do not connect to the target (no estimates)")
    plan.set_defaults(func=cmd_plan)
    from airmigrate.lifecycle.scaffold import OPS

    new = sub.add_parser("new", help="create the next migration folder and its expectations, lint-clean as made")
    new.add_argument("slug", help="lowercase words joined by _, e.g. add_orders_status (the number is chosen)")
    new.add_argument("--op", choices=OPS, default="sql", help="an operation, or sql (default): up/backfill/down.sql")
    new.add_argument("--table", help="the table it changes (needed for an operation)")
    new.add_argument("--column", help="the column the operation (or the sql template) changes")
    new.add_argument("--type", help="the column type for add_column, change_column_type, sql (default text)")
    new.add_argument("--to", help="the new name for rename_column")
    new.add_argument("--key", default="id", help="batching key column (default id)")
    new.set_defaults(func=cmd_new)
    schema = sub.add_parser("schema", help="print the JSON Schema of migration.yaml")
    schema.set_defaults(func=cmd_schema)
    env = sub.add_parser("target", help="start the demo target (embedded unless AIRMIGRATE_TARGET_URL) and print "
                                        "its Airflow connection URI")
    env.add_argument("--database", default=DEMO_DB)
    env.set_defaults(func=cmd_target)
    cli_import.add_parser(sub)
    return parser


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
    if (code := cli_import.run_imported(args.migration, target, args.rollback, conf)) is not None:
        return code  # a Flyway script or Alembic revision (airmigrate import)
    if args.cascade:  # the dependents first, latest first, each like a rollback of its own; stop at a failure
        from airmigrate.gates import needs_rollback_approval
        from airmigrate.db import connect
        from airmigrate.lifecycle.order import cascade

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


def cmd_rehearse(args) -> int:
    from airmigrate.rehearsal import rehearse
    from airmigrate.rehearsal.summary import render

    migration = load_named(args.migration)
    target = _configured_target()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    rehearsal_log = logging.getLogger("airmigrate.rehearsal")
    rehearsal_log.addHandler(handler)
    rehearsal_log.setLevel(logging.INFO)
    rehearsal_log.propagate = False
    results = rehearse(target, migration, sample=args.sample, keep=args.keep)
    print(render(results))
    return 0


def cmd_docs(args) -> int:
    from airmigrate.schemadocs import write_docs

    target = _configured_target()
    written = write_docs(target, args.out or settings.docs_dir())
    print(f"schema documentation of {target.describe()}: {written[0]} ({len(written) - 2} table(s), diagram "
          f"{written[1].name})")
    return 0


def cmd_migrate(args) -> int:
    from airmigrate.lifecycle.migrate import migrate

    OUTPUT["wait"] = args.wait
    prepare_airflow_env()
    target = _configured_target()
    if args.source:
        return cli_import.migrate_source(args.source, target)
    errors: dict[str, str] = {}
    code = migrate(target, lambda migration_id, conf: run_and_report(migration_id, target, conf=conf, errors=errors,
                                                                     what="migrate"),
                   to=args.to, approve=args.approve, errors=errors, ignore_missing=args.ignore_missing,
                   allow_drift=args.allow_drift, wait_s=args.wait)
    for line in cli_import.pending_note(target):
        print(line)
    return interrupt.EXIT_INTERRUPTED if interrupt.requested() else code


def cmd_baseline(args) -> int:
    from airmigrate.lifecycle.migrate import baseline

    prepare_airflow_env()
    target = _configured_target()
    if (code := cli_import.baseline_imported(args.to, target)) is not None:
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


def cmd_demo(args) -> int:
    from airmigrate import devdb

    server = devdb.server_target()
    print(f"target server: {server.describe()}")
    t0 = time.monotonic()
    target = devdb.recreate_database(server, os.environ.get("AIRMIGRATE_DEMO_DB", DEMO_DB))
    devdb.seed_users(target, args.rows)
    print(f"seeded {args.rows:,} users into {target.describe()} in {time.monotonic() - t0:.1f}s\n")
    os.environ["AIRFLOW_CONN_AIRMIGRATE_TARGET"] = target.airflow_uri()
    os.environ.setdefault("AIRMIGRATE_DOCS_DIR", str(settings.var_dir() / "docs" / "schema"))  # a throwaway db
    OUTPUT["verbose"] = args.verbose  # without it, each run's task logs go to a file its summary names
    prepare_airflow_env()
    worst = 0
    for migration_id in EXAMPLES:
        worst = max(worst, run_and_report(migration_id, target))
        print()
    print("reports (open them in a browser, from disk):")
    for migration_id in EXAMPLES:
        print(f"  {migration_id}: {_newest_report(migration_id) or 'none written'}")
    # the CLI's AIRMIGRATE_TARGET_URL names the database itself (the demo's names the server)
    url = dataclasses.replace(target, password=None).url()
    print(f"look closer: AIRMIGRATE_TARGET_URL='{url}' .venv/bin/airmigrate status {EXAMPLES[0]}"
          + ("   (put your password into the URL)" if target.password else ""))
    return worst


def cmd_lint(args) -> int:
    from airmigrate.lint import lint_file, lint_migration
    from airmigrate.spec import SPEC_FILE, discover, load_migration

    def lint_sql_file(path: Path):
        return lint_file(path, path.stem if path.stem in ("up", "down", "backfill", "cleanup") else "up",
                         args.pg_version)

    paths = [Path(p) for p in args.paths] or [settings.migrations_dir()]
    findings, broken, drifted, refused = [], 0, 0, 0
    for path in paths:
        if not path.exists():
            print(f"error: {path}: no such file or folder", file=sys.stderr)
            return 2
        if path.is_file():
            findings += lint_sql_file(path)
            continue
        folders = [path] if (path / SPEC_FILE).exists() else discover(path)
        try:  # imported Flyway / Alembic projects (migrations/_sources/)
            findings += cli_import.lint_sources(path, args.pg_version)
        except SpecError as exc:
            print(f"error: {exc}", file=sys.stderr)
            broken += 1
        for folder in folders:
            try:
                migration = load_migration(folder, settings.expectations_dir())
                findings += lint_migration(migration, args.pg_version)
                changed, problems = _changed_since_applied(migration)
                drifted, refused = drifted + changed, refused + problems
            except SpecError as exc:  # still lint its SQL files one by one: every finding at once
                print(f"error: {exc}", file=sys.stderr)
                broken += 1
                findings += [f for sql_file in sorted(folder.glob("*.sql")) for f in lint_sql_file(sql_file)]
    for finding in findings:
        print(finding)
    open_findings = [f for f in findings if not f.acknowledged]
    print(f"{len(findings)} finding(s), {len(open_findings)} not acknowledged"
          + (f", {broken} folder(s) that do not load" if broken else "")
          + (f", {drifted} applied migration(s) changed since" if drifted else "")
          + (f", {refused} problem(s) the target's checks found" if refused else ""))
    return 1 if open_findings or broken or drifted or refused else 0


def _changed_since_applied(migration) -> tuple[int, int]:
    """With a target configured, lint refuses what the preflight would (drift, table, key, references); without
    one it cannot know and says nothing."""
    from airmigrate.cli_plan import target_problems

    return target_problems(migration)


def cmd_plan(args) -> int:
    from airmigrate.cli_plan import cmd_plan as plan

    if (code := cli_import.plan_imported(args.migration)) is not None:
        return code  # a Flyway script or Alembic revision (airmigrate import)
    return plan(args)


def cmd_new(args) -> int:
    from airmigrate.lifecycle.scaffold import new_migration

    print(new_migration(args.slug, op=args.op, table=args.table, column=args.column, type_=args.type, to=args.to,
                        key=args.key).report())
    return 0


def cmd_schema(args) -> int:
    from airmigrate.spec import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_target(args) -> int:
    from airmigrate import devdb

    server = devdb.server_target()
    print(server.with_dbname(args.database).airflow_uri())
    return 0


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


def _newest_report(migration_id: str) -> str | None:
    from airmigrate.report import reports_dir

    reports = sorted(reports_dir(migration_id).glob("*.html"), key=lambda p: p.stat().st_mtime)
    return _shown_path(reports[-1]) if reports else None


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _params(pairs: list[str]) -> dict:
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise AirmigrateError(f"--param {pair!r}: expected KEY=VALUE, e.g. --param batch_size=5000")
        conf[key] = json.loads(value) if value.lower() in ("true", "false") or value.isdigit() else value
    return conf


if __name__ == "__main__":
    sys.exit(main())
