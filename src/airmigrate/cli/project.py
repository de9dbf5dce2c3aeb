"""The commands about the project's folders: `lint`, `plan`, `new`, `schema`, `docs` and `rehearse`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from airmigrate import settings
from airmigrate.cli import imports
from airmigrate.cli.common import configured_target as _configured_target, load_named
from airmigrate.errors import SpecError


def cmd_rehearse(args) -> int:
    from airmigrate.rehearsal import rehearse
    from airmigrate.report.rehearsal_summary import render

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


def cmd_lint(args) -> int:
    from airmigrate.lint import lint_file, lint_migration
    from airmigrate.spec import SPEC_FILE, discover, load_migration
    from airmigrate.spec_checks import other_engine_variant

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
            findings += imports.lint_sources(path, args.pg_version)
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
                findings += [f for sql_file in sorted(folder.glob("*.sql")) if not other_engine_variant(sql_file)
                             for f in lint_sql_file(sql_file)]
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
    from airmigrate.cli.plan import target_problems

    return target_problems(migration)


def cmd_plan(args) -> int:
    from airmigrate.cli.plan import cmd_plan as plan

    if (code := imports.plan_imported(args.migration)) is not None:
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
