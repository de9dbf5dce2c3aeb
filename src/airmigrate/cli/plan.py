"""`airmigrate plan` and the target checks of `airmigrate lint`: what a run would do, and whether it would be
refused, before anything runs.

Connected to the target, plan runs the preflight's checks first (airmigrate.precheck): a plan of files that
changed since they were applied, of a table, key or column the target does not have (a typo such as `emial`
in backfill.sql, the scaffold's placeholder column) would show statements that never run, so plan refuses
with the preflight's message (exit 1). What only holds the run back (folder order, an unacknowledged lint
finding) is said after the plan, which stays true (exit 1 too: `run` would refuse). No Airflow here.
"""

from __future__ import annotations

import sys

from airmigrate.errors import AirmigrateError


def cmd_plan(args) -> int:
    from airmigrate.cli.common import configured_target, load_named
    from airmigrate.db import connect

    migration = load_named(args.migration)
    if args.offline:
        return _print_plan(migration, None, args)
    try:
        target = configured_target()
        conn = connect(target, autocommit=True)
    except AirmigrateError as exc:
        if args.sql or args.rollback:  # the script or the phases still mean something without the target
            print(f"-- target not reachable ({exc}): static plan", file=sys.stderr)
            return _print_plan(migration, None, args)
        raise AirmigrateError(f"{exc}; or `airmigrate plan {migration.id} --offline` plans without the "
                              "target (no rows, batches or ETA)") from None
    with conn:  # the target's catalog decides volatility, column types and domains
        if args.rollback:
            return _print_plan(migration, conn, args)
        from airmigrate.precheck import findings

        found = findings(conn, migration)
        for problem in found.blocking:
            print(f"error: {problem}", file=sys.stderr)
        if found.blocking:  # a plan of what the target does not have would mislead
            return 1
        if found.applied:  # nothing would run: the plan is of what ran
            print(f"-- {migration.id} is applied on {target.describe()} (files unchanged): `run` does nothing; "
                  "this is what it ran", file=sys.stderr)
            return _print_plan(migration, None, args)  # the table has its new shape now: the static plan
        try:
            _print_plan(migration, conn, args)
        except ValueError as exc:  # an operation's column comes from an earlier, pending migration
            print(f"-- not planned against the target ({exc}): static plan", file=sys.stderr)
            _print_plan(migration, None, args)
        for problem in found.order + found.lint:
            print(f"error: `airmigrate run {migration.id}` would be refused now: {problem}", file=sys.stderr)
        return 1 if found.order or found.lint else 0


def _print_plan(migration, conn, args) -> int:
    """The plan (--sql: the script; --rollback: the rollback's phases); conn None is the static plan."""
    from airmigrate import plan

    if args.rollback:
        print(plan.render_rollback(migration, conn, sql=args.sql), end="")
    elif args.sql:
        print(plan.render_sql(migration, conn), end="")
    else:
        est = plan.estimate(conn, migration) if conn is not None else None
        print(plan.render(migration, plan.static_plan(migration, conn), est))
    return 0


def target_problems(migration) -> tuple[int, int]:
    """`lint` with a target configured: the preflight's checks besides the lint itself (drift, table and key,
    references), each printed as an error; the count. The folder order is a note, not counted: linting a
    series of new migrations before any of them ran is normal (`migrate` runs them in order); their
    references are checked once the earlier ones ran. (changed since applied, other problems); without a
    target lint cannot know: (0, 0)."""
    import os

    from airmigrate.cli.common import configured_target
    from airmigrate.db import connect
    from airmigrate.precheck import findings

    if not (os.environ.get("AIRFLOW_CONN_AIRMIGRATE_TARGET") or os.environ.get("AIRMIGRATE_TARGET_URL")):
        return 0, 0
    with connect(configured_target(), autocommit=True) as conn:
        found = findings(conn, migration, lint=False)  # lint printed its findings itself
    for problem in found.blocking:
        print(f"error: {problem}", file=sys.stderr)
    for problem in found.order:
        print(f"note: `airmigrate run {migration.id}` would be refused now (its references were not checked): "
              f"{problem}", file=sys.stderr)
    return int(found.changed), len(found.blocking) - int(found.changed)
