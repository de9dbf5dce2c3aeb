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
import subprocess
import sys
import time
import warnings
from pathlib import Path

from airmigrate import settings
from airmigrate.db import Target
from airmigrate.errors import AirmigrateError, SpecError

DEMO_DB = "airmigrate_demo"
EXAMPLES = ("0001_add_user_email_verified", "0002_normalize_user_phone")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # platformdirs (via a dependency) warns when a root shell has no XDG_RUNTIME_DIR: noise in our output
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    try:
        return args.func(args)
    except AirmigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airmigrate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True, metavar="command")
    run = sub.add_parser("run", help="run a migration's DAG locally through Airflow (dag.test) and report")
    run.add_argument("migration", help="migration folder name, e.g. 0001_add_user_email_verified")
    run.add_argument("--rollback", action="store_true", help="run the rollback DAG instead")
    run.add_argument("--approve", action="store_true",
                     help="approve the destructive contract step up front (else the run waits for the UI)")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="DAG param, e.g. batch_size=5000 or dry_run=true (repeatable)")
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="seed a demo database and run the example migrations end to end")
    demo.add_argument("--rows", type=int, default=int(os.environ.get("AIRMIGRATE_DEMO_ROWS", 1_000_000)))
    demo.add_argument("--verbose", action="store_true", help="show Airflow's task logs (progress per batch)")
    demo.set_defaults(func=cmd_demo)
    status = sub.add_parser("status", help="where a migration stands, from the state tables")
    status.add_argument("migration")
    status.set_defaults(func=cmd_status)
    lint = sub.add_parser("lint", help="lint migration folders or SQL files (squawk + airmigrate rules); "
                                       "exit 0 clean, 1 findings, 2 usage error")
    lint.add_argument("paths", nargs="*", help="migration folders, migrations/ itself, or .sql files")
    lint.add_argument("--pg-version", default="15.0", help="PostgreSQL version of the target (default 15.0)")
    lint.set_defaults(func=cmd_lint)
    plan = sub.add_parser("plan", help="each statement with its lock and effect, rows, batches and ETA")
    plan.add_argument("migration")
    plan.add_argument("--sql", action="store_true", help="print exactly the SQL that will run instead")
    plan.add_argument("--offline", action="store_true", help="do not connect to the target (no estimates)")
    plan.set_defaults(func=cmd_plan)
    schema = sub.add_parser("schema", help="print the JSON Schema of migration.yaml")
    schema.set_defaults(func=cmd_schema)
    env = sub.add_parser("target", help="start the demo target (embedded unless AIRMIGRATE_TARGET_URL) and print "
                                        "its Airflow connection URI")
    env.add_argument("--database", default=DEMO_DB)
    env.set_defaults(func=cmd_target)
    return parser


def cmd_run(args) -> int:
    prepare_airflow_env()
    target = _configured_target()
    conf = _params(args.param)
    if args.approve:
        conf["approve_contract"] = True
    return run_and_report(args.migration, target, rollback=args.rollback, conf=conf)


def cmd_demo(args) -> int:
    from airmigrate import devdb

    server = devdb.server_target()
    print(f"target server: {server.describe()}")
    t0 = time.monotonic()
    target = devdb.recreate_database(server, os.environ.get("AIRMIGRATE_DEMO_DB", DEMO_DB))
    devdb.seed_users(target, args.rows)
    print(f"seeded {args.rows:,} users into {target.describe()} in {time.monotonic() - t0:.1f}s\n")
    os.environ["AIRFLOW_CONN_AIRMIGRATE_TARGET"] = target.airflow_uri()
    if not args.verbose:
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    prepare_airflow_env()
    worst = 0
    for migration_id in EXAMPLES:
        worst = max(worst, run_and_report(migration_id, target))
        print()
    # the CLI's AIRMIGRATE_TARGET_URL names the database itself (the demo's names the server)
    url = dataclasses.replace(target, password=None).url()
    print(f"look closer: AIRMIGRATE_TARGET_URL='{url}' .venv/bin/airmigrate status {EXAMPLES[0]}"
          + ("   (put your password into the URL)" if target.password else ""))
    return worst


def cmd_status(args) -> int:
    from airmigrate import state
    from airmigrate.db import connect

    load_named(args.migration)  # an unknown name gets the list of the ones there are
    prepare_airflow_env()
    target = _configured_target()
    with connect(target, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('airmigrate.history')").fetchone()[0] is None:
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
            print(f"  run {run['run_id']}: {run['status']}, stages done: {', '.join(run['completed_stages']) or '-'}")
            print(f"  batches: {summary['succeeded']}/{summary['total']} done, {summary['failed']} failed, "
                  f"{summary['pending']} pending; {summary['rows']:,} rows written")
            progress = state.backfill_progress(conn, run["run_id"])
            if progress:
                finished = progress["exhausted"] and not summary["pending"]
                print(f"  backfill: {progress['percent']:.0f}% of ~{progress['estimated']:,} rows covered, "
                      f"{progress['rate']:,.0f} rows/s, "
                      + ("all ranges handed out, none pending" if finished else
                         f"ETA {progress['eta_s'] / 60:.1f} min"
                         + (" (all ranges handed out)" if progress["exhausted"] else "")))
            for batch_no, lo, hi, attempts, error in state.failed_batches(conn, run["run_id"]):
                print(f"  failed batch {batch_no} [{lo}..{hi}] after {attempts} attempts: {error}")
            if run["error"]:
                print(f"  error: {run['error']}")
    return 0


def cmd_lint(args) -> int:
    from airmigrate.lint import lint_file, lint_migration
    from airmigrate.spec import SPEC_FILE, discover, load_migration

    def lint_sql_file(path: Path):
        return lint_file(path, path.stem if path.stem in ("up", "down", "backfill", "cleanup") else "up",
                         args.pg_version)

    paths = [Path(p) for p in args.paths] or [settings.migrations_dir()]
    findings, broken = [], 0
    for path in paths:
        if not path.exists():
            print(f"error: {path}: no such file or folder", file=sys.stderr)
            return 2
        if path.is_file():
            findings += lint_sql_file(path)
            continue
        folders = [path] if (path / SPEC_FILE).exists() else discover(path)
        for folder in folders:
            try:
                findings += lint_migration(load_migration(folder, settings.expectations_dir()), args.pg_version)
            except SpecError as exc:  # still lint its SQL files one by one: every finding at once
                print(f"error: {exc}", file=sys.stderr)
                broken += 1
                findings += [f for sql_file in sorted(folder.glob("*.sql")) for f in lint_sql_file(sql_file)]
    for finding in findings:
        print(finding)
    open_findings = [f for f in findings if not f.acknowledged]
    print(f"{len(findings)} finding(s), {len(open_findings)} not acknowledged"
          + (f", {broken} folder(s) that do not load" if broken else ""))
    return 1 if open_findings or broken else 0


def cmd_plan(args) -> int:
    from airmigrate import plan
    from airmigrate.db import connect

    migration = load_named(args.migration)
    if args.sql:
        print(plan.render_sql(migration), end="")
        return 0
    est = None
    if not args.offline:
        prepare_airflow_env()
        try:
            target = _configured_target()
            conn = connect(target, autocommit=True)
        except AirmigrateError as exc:
            raise AirmigrateError(f"{exc}; or `airmigrate plan {migration.id} --offline` plans without the "
                                  "target (no rows, batches or ETA)") from None
        with conn:
            est = plan.estimate(conn, migration)
    print(plan.render(migration, plan.static_plan(migration), est))
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


def run_and_report(migration_id: str, target: Target, rollback: bool = False, conf: dict | None = None) -> int:
    from airmigrate.airflow.runner import report, run_dag

    from airmigrate.airflow.approval import needs_approval

    migration = load_named(migration_id)
    conf = conf or {}
    if not rollback and needs_approval(migration) and not (conf.get("approve_contract") or conf.get("dry_run")):
        raise AirmigrateError(f"{migration.id}'s contract step waits for a human approval (it drops something), "
                              "and a local run has no UI to answer it: re-run with --approve to approve it up front, "
                              "or trigger the DAG from the Airflow UI (`make airflow`). Nothing was run")
    dag_id = migration.rollback_dag_id if rollback else migration.id
    print(f"running {dag_id} through Airflow (dag.test) ...", flush=True)
    dagrun = run_dag(dag_id, conf)
    print(report(dagrun, migration, target, rollback=rollback), flush=True)
    return 0 if str(dagrun.state) == "success" else 1


def load_named(migration_id: str):
    """The migration folder of that name, or an error listing the ones there are."""
    from airmigrate.spec import discover, load_migration

    folder = settings.migrations_dir() / migration_id
    if not folder.is_dir():
        known = ", ".join(p.name for p in discover(settings.migrations_dir())) or "none"
        raise AirmigrateError(f"no migration '{migration_id}' in {settings.migrations_dir()} (there are: {known}); "
                              "give a folder name, or set AIRMIGRATE_MIGRATIONS_DIR")
    return load_migration(folder, settings.expectations_dir())


def prepare_airflow_env() -> None:
    """Point Airflow at this project (unless the user configured it) and create its metadata DB once."""
    root = settings.project_root()
    home = Path(os.environ.setdefault("AIRFLOW_HOME", str(settings.var_dir() / "airflow")))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(root / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(root / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRMIGRATE_MIGRATIONS_DIR", str(settings.migrations_dir()))
    os.environ.setdefault("AIRMIGRATE_EXPECTATIONS_DIR", str(settings.expectations_dir()))
    home.mkdir(parents=True, exist_ok=True)
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in os.environ and not (home / "airflow.db").exists():
        print(f"initialising Airflow metadata in {home} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)


def _configured_target() -> Target:
    """AIRFLOW_CONN_AIRMIGRATE_TARGET, else AIRMIGRATE_TARGET_URL (which then becomes that connection)."""
    uri = os.environ.get("AIRFLOW_CONN_AIRMIGRATE_TARGET")
    if not uri and os.environ.get("AIRMIGRATE_TARGET_URL"):
        target = Target.from_url(os.environ["AIRMIGRATE_TARGET_URL"])
        os.environ["AIRFLOW_CONN_AIRMIGRATE_TARGET"] = target.airflow_uri()
        return target
    if not uri:
        raise AirmigrateError("no target database: set AIRFLOW_CONN_AIRMIGRATE_TARGET=postgresql://user@host/db "
                              "(or AIRMIGRATE_TARGET_URL); `airmigrate target` prints the demo one")
    return _target_from_airflow_uri(uri)


def _target_from_airflow_uri(uri: str) -> Target:
    from airflow.models.connection import Connection

    from airmigrate.airflow.tasks import target_from_connection

    return target_from_connection(Connection(conn_id="airmigrate_target", uri=uri))


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
