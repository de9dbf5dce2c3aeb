"""`airmigrate import flyway DIR` / `airmigrate import alembic INI_OR_DIR`, and what the other commands do with
an imported migration (run, migrate --source, baseline, history).

Start-up time: the lifecycle (lint, the lock rules, pglast: half a second) is imported by the functions that use it,
so every other command starts as fast as before.

`import` writes one small settings file, ``migrations/_sources/<name>.yaml``, pointing the migrations tree at the
team's project, checks that every script or revision loads (placeholders, names, the revision graph) and lists
them with their state in the target. Nothing in the team's folder is written: the scripts run in place, and
the tool's own history table stays valid, so the team can go back to Flyway or Alembic at any time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from airmigrate import lease, settings
from airmigrate.cli.common import configured_target, prepare_airflow_env
from airmigrate.db import Target, connect
from airmigrate.errors import AirmigrateError, PreflightError, SpecError
from airmigrate.sources import find_or_fail, load_sources, load_sources_safely, open_source
from airmigrate.sources.model import SOURCES_DIR, read_source_file

EXIT_USAGE = 2


def add_parser(sub) -> None:
    parser = sub.add_parser("import", help="run an existing Flyway or Alembic project in place as DAGs (its history "
                                           "table kept valid); writes migrations/_sources/<name>.yaml only")
    parser.add_argument("kind", choices=["flyway", "alembic"], help="the tool whose project it is")
    parser.add_argument("path", help="flyway: the project folder (or its flyway.conf / flyway.toml); alembic: "
                                     "alembic.ini or the script folder")
    parser.add_argument("--name", help="the source's name, the prefix of its DAG ids (default: the kind)")
    parser.add_argument("--config", help="flyway: the config file when it is not in the folder")
    parser.add_argument("--force", action="store_true", help="replace an existing source of that name")
    parser.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    path = Path(args.path).resolve()
    if not path.exists():
        print(f"error: {args.path}: no such file or folder", file=sys.stderr)
        return EXIT_USAGE
    config = Path(args.config).resolve() if args.config else None
    if args.kind == "flyway" and path.is_file():
        path, config = path.parent, path
    name = args.name or args.kind
    if not name.replace("_", "").isalnum() or not name[0].isalpha() or name != name.lower():
        print(f"error: --name {name}: use lowercase letters, digits and _ (it starts every DAG id)", file=sys.stderr)
        return EXIT_USAGE
    folder = settings.migrations_dir() / SOURCES_DIR
    file = folder / f"{name}.yaml"
    if file.exists() and not args.force:
        print(f"error: {file} exists: the source '{name}' is imported already (--force replaces it, --name picks "
              "another name)", file=sys.stderr)
        return EXIT_USAGE
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# written by `airmigrate import {args.kind} {args.path}`: the {args.kind} project runs in place",
             f"kind: {args.kind}", f"location: {os.path.relpath(path, folder)}"]
    if config:
        lines.append(f"config: {os.path.relpath(config, folder)}")
    lines += ["# connection_id: airmigrate_target", "# lock_timeout_ms: 500",
              "# acknowledge: {V3__index.sql: [{rule: require-concurrent-index-creation, reason: \"...\"}]}"]
    previous = file.read_text() if file.exists() else None
    file.write_text("\n".join(lines) + "\n")
    try:
        source = open_source(read_source_file(file))
        migrations = source.migrations()
    except (SpecError, AirmigrateError):
        file.write_text(previous) if previous is not None else file.unlink()
        raise
    print(f"{file}: {args.kind} project {path} ({len(migrations)} migration(s)), read in place")
    for line in _listing([source]):
        print(line)
    print(f"next: `airmigrate migrate --source {name}` (each through its own DAG), or one at a time with "
          f"`airmigrate run <id>`; in Airflow: the DAG {name}__migrate")
    return 0


def _listing(sources) -> list[str]:
    """Each migration with its state when a target is configured (without one: just the order)."""
    from airmigrate.sources import lifecycle

    order = [f"  {m.id:<50} {m.title}" for s in sources for m in s.migrations()]
    try:
        target = configured_target()
    except AirmigrateError:
        return order
    try:
        with connect(target, autocommit=True) as conn:
            return [f"  {m.id:<50} {status.state:<22} {m.title}" + (f"\n      {status.detail}" if status.detail
                                                                    else "")
                    for m, status in lifecycle.entries(conn, sources)]
    except AirmigrateError as exc:  # the project is imported all the same; its state shows once the target answers
        return order + [f"  (their state in the target is unknown: {exc})"]


def _loaded() -> tuple[list, list[tuple[str, str]]]:
    """(the imported projects that load, (file, error) of those that do not): a broken project never keeps a
    command about a native folder (or another project) from working."""
    sources, broken = load_sources_safely(settings.migrations_dir())
    return sources, [(path.name, error) for path, error in broken]


def find(migrations_dir, migration_id: str):
    """(source, migration) of an imported id, None for any other name (a native folder, a prefix)."""
    for source in _loaded()[0]:
        for migration in source.migrations():
            if migration.id == migration_id:
                return source, migration
    return None


def run_imported(migration_id: str, target: Target, rollback: bool, conf: dict, what: str = "run") -> int | None:
    """`airmigrate run <imported id>`: its DAG through Airflow (dag.test), then its report; None when the id is not
    imported."""
    from airmigrate.report import imported as imported_report
    from airmigrate.sources import lifecycle

    found = find(settings.migrations_dir(), migration_id)
    if found is None:
        return None
    source, migration = found
    if not rollback:  # the refusals answer before Airflow starts (in a second), as for native folders
        try:
            verdict = lifecycle.apply(target, source, migration, dry_run=True)
        except PreflightError as exc:
            print(f"{migration.id}: refused, nothing run: {exc}", flush=True)
            return 1
        if verdict.get("already_applied"):
            print(f"{migration.id} ({migration.title}) is {verdict['state']}: nothing to do", flush=True)
            return 0
    prepare_airflow_env()
    from airmigrate.airflow.runner import log_file_for, run_dag, task_errors

    dag_id = f"{migration.id}__rollback" if rollback else migration.id
    log_file = log_file_for(dag_id)
    with lease.hold_for_cli(target, migration.id, f"{what} {dag_id}"):
        print(f"running {dag_id} through Airflow (dag.test) ... task logs: {log_file}", flush=True)
        dagrun = run_dag(dag_id, conf, log_file=log_file, secrets=(target.password,))
    with connect(target, autocommit=True) as conn:
        status = source.statuses(conn)[migration.id]
    print(f"{dag_id}: {dagrun.state}; {migration.title} is {status.state} in the {source.kind} history", flush=True)
    for task_id, error in task_errors(dagrun).items():
        print(f"  {task_id}: {error.splitlines()[0][:500]}", flush=True)
    report = imported_report.write_report_safely(target, source, migration, "down" if rollback else "up",
                                                 dagrun.run_id)
    if report is not None:
        print(f"report: {report}", flush=True)
    return 0 if str(dagrun.state) == "success" else 1


def migrate_source(name: str, target: Target) -> int:
    """`airmigrate migrate --source NAME`: every migration of the project in the tool's order, stop at a failure."""
    sources = {s.name: s for s in _loaded()[0]}
    if name not in sources:
        raise AirmigrateError(f"--source {name}: no such imported project in {settings.migrations_dir() / SOURCES_DIR} "
                              f"(there are: {', '.join(sources) or 'none'}); `airmigrate import` adds one")
    source = sources[name]
    for migration in source.migrations():
        code = run_imported(migration.id, target, False, {}, what="migrate")
        if code:
            print(f"migrate --source {name}: stopped at {migration.id}", flush=True)
            return code
    print(f"migrate --source {name}: every migration applied", flush=True)
    return 0


def imported_ids() -> set[str]:
    """Every imported migration's id: airmigrate.history rows the native folders need not account for."""
    return {m.id for source in _loaded()[0] for m in source.migrations()}


def migrate_sources_first(target: Target) -> int:
    """`airmigrate migrate`, first part: every imported project with a pending migration, by name, each in its
    tool's order; a project that does not load, or a failure, stops everything (the native folders after them
    may need what they create). 0 when there is nothing (left) to run."""
    sources, broken = _loaded()
    if broken:
        for name, error in broken:
            print(f"migrate: the imported project {name} does not load: {error}", flush=True)
        return 1
    if not sources:
        return 0
    from airmigrate.sources import lifecycle

    with connect(target, autocommit=True) as conn:
        waiting = [s.name for s in sources if any(not st.done for _, st in lifecycle.entries(conn, [s]))]
    for name in waiting:
        code = migrate_source(name, target)
        if code:
            return code
    return 0


def plan_imported(migration_id: str) -> int | None:
    """`airmigrate plan <imported id>`: each step and statement with its lock (None: not an imported id). With a
    target, Alembic's SQL is generated from the real current heads and the lock rules read the catalogs."""
    from airmigrate.sources import lifecycle
    from airmigrate.sources.plan import render

    found = find(settings.migrations_dir(), migration_id)
    if found is None:
        return None
    source, migration = found
    try:
        target = configured_target()
    except AirmigrateError:
        lines = render(migration, migration.up_sql)
    else:
        with connect(target, autocommit=True) as conn:
            now = lifecycle.runnable(conn, source, migration, up=True)
            lines = render(migration, now.up_sql, conn)
    print("\n".join(lines))
    return 0


def lint_sources(migrations_dir: Path, pg_version: str) -> list:
    """`airmigrate lint migrations/`: every imported script (up and down) with the rules native files get; an
    unbatched UPDATE/DELETE says how to add the batch marker."""
    from airmigrate.sources.runner import lint

    findings = []
    for source in load_sources(migrations_dir):
        view = getattr(source, "lint_view", None)
        for migration in source.migrations():
            acknowledged = source.file.acknowledged(migration)
            findings += lint(migration, acknowledged, pg_version, False, view)
            findings += lint(migration, acknowledged, pg_version, True, view)
    return findings


def pending_note(target: Target) -> list[str]:
    """After a native `migrate`: the imported projects that still have pending migrations (they have their own
    order and their own `migrate --source`), so nobody believes the target is up to date when it is not."""
    from airmigrate.sources import lifecycle

    try:
        sources = load_sources(settings.migrations_dir())
        if not sources:
            return []
        with connect(target, autocommit=True) as conn:
            waiting = {}
            for migration, status in lifecycle.entries(conn, sources):
                if not status.done:
                    waiting[migration.source] = waiting.get(migration.source, 0) + 1
    except (AirmigrateError, SpecError) as exc:
        return [f"imported projects: not checked ({exc})"]
    return [f"{source}: {count} imported migration(s) not applied: `airmigrate migrate --source {source}`"
            for source, count in waiting.items()]


def baseline_imported(to: str, target: Target) -> int | None:
    """`airmigrate baseline --to <imported id>`: the tool's own baseline (Flyway's BASELINE row, Alembic's stamp)."""
    from airmigrate.sources import lifecycle

    found = find(settings.migrations_dir(), to)
    if found is None:
        return None
    source, migration = found
    for migration_id in lifecycle.baseline(target, source, migration):
        print(f"{migration_id}: recorded as applied (not run) in the {source.kind} history")
    return 0


def history_entries(conn) -> list:
    """`airmigrate history`'s lines for imported migrations (lifecycle.history.Entry), after the native ones."""
    from airmigrate.lifecycle.history import Entry
    from airmigrate.sources import lifecycle

    entries = []
    sources, broken = _loaded()
    entries += [Entry(name, "does not load", f"error: {error}", True) for name, error in broken]
    backfilled = lifecycle.rows_backfilled(conn)
    for migration, status in lifecycle.entries(conn, sources):
        entries.append(Entry(migration.id, f"{status.state} ({migration.source})", status.detail, status.problem,
                             status.applied_at, status.applied_by, status.duration_s, backfilled.get(migration.id)))
    for source in sources:  # what the tool's history holds that the folder cannot account for
        entries += [Entry(label, status.state, status.detail, True, status.applied_at, status.applied_by,
                          status.duration_s) for label, status in source.unresolved(conn)]
    return entries


__all__ = ["add_parser", "run_imported", "migrate_source", "baseline_imported", "history_entries", "find_or_fail"]
