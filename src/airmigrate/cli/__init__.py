"""The ``airmigrate`` command: run a migration's DAG locally, run the demo, show status and the spec schema.

Airflow reads its configuration when first imported, so the environment is prepared
(AIRFLOW_HOME, dags folder, target connection) before anything imports airflow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from airmigrate.cli import imports
from airmigrate.cli.demo import cmd_demo, cmd_target
from airmigrate.cli.project import cmd_docs, cmd_lint, cmd_new, cmd_plan, cmd_rehearse, cmd_schema
from airmigrate.cli.run import cmd_baseline, cmd_complete, cmd_migrate, cmd_run
from airmigrate.cli.status import cmd_history, cmd_status
from airmigrate.errors import AirmigrateError
from airmigrate.settings import DEMO_DB

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
    new.add_argument("--to", help="the new name for rename_column, rename_table, rename_index, rename_constraint")
    new.add_argument("--key", default="id", help="batching key column (default id)")
    new.set_defaults(func=cmd_new)
    schema = sub.add_parser("schema", help="print the JSON Schema of migration.yaml")
    schema.set_defaults(func=cmd_schema)
    env = sub.add_parser("target", help="start the demo target (embedded unless AIRMIGRATE_TARGET_URL) and print "
                                        "its Airflow connection URI")
    env.add_argument("--database", default=DEMO_DB)
    env.set_defaults(func=cmd_target)
    imports.add_parser(sub)
    return parser
