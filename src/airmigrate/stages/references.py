"""Preflight: every table, column, type and index the migration refers to exists (or does not, for what it
creates), before the backup and before any change.

The engine replays the migration against a model of the target's catalog in the order it runs (up.sql, the
operations' expand, backfill.sql and the backfill spec, the operations' contract, cleanup.sql), so a column an
earlier step adds is known to the later ones; each finding names ``<file>:<line>`` (migration.yaml with the field)
and the fix, all at once. A resumed run (history running, failed or expanded) has already created part of what
the migration creates: "must not exist yet" checks are skipped then, and "must exist" checks of what its
contract removes.
"""

from __future__ import annotations

from airmigrate import engines, state
from airmigrate.errors import PreflightError
from airmigrate.spec import Migration

RESUMABLE = ("running", "failed", "expanded")


def check_references(conn, migration: Migration) -> None:
    """Raise PreflightError naming the file, the line and the missing (or already existing) object."""
    problems = find_problems(conn, migration)
    if problems:
        raise PreflightError(
            f"{migration.id} refers to {len(problems)} object(s) the target does not have (or already has); "
            "nothing was changed:\n" + "\n".join(f"  {p}" for p in problems))


def resumed_run(conn, migration: Migration) -> bool:
    """Has an earlier run of this migration already started changing the target?"""
    if not state.tables_exist(conn):
        return False
    hist = state.history(conn, migration.id)
    return bool(hist and hist["status"] in RESUMABLE)


def find_problems(conn, migration: Migration, resumed: bool | None = None) -> list:
    """The engine's findings (each with file, line, field, problem and fix), one line per mistake."""
    resumed = resumed_run(conn, migration) if resumed is None else resumed
    return engines.of(conn).reference_problems(conn, migration, resumed)
