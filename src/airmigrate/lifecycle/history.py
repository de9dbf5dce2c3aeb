"""Where every migration stands in a target, and which applied ones have changed since (drift).

`airmigrate history` (and `airmigrate status` without a migration) prints :func:`render` of
:func:`listing`: every folder under migrations/ in order, plus the ones the state tables know of whose
folder is gone. Like `flyway validate`, :func:`has_problems` says whether CI should stop: an applied (or
expanded) migration whose files changed, or whose folder was deleted, a failed run, a folder that does
not load.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

from airmigrate import engines, state
from airmigrate.errors import SpecError
from airmigrate.spec import Migration, discover, file_checksums, load_migration

APPLIED = ("applied", "expanded")  # what is in the target and must not change any more
UNKNOWN_FILES = "(which file: not recorded by the run that applied it)"


@dataclasses.dataclass
class Entry:
    """One line of the listing."""

    id: str
    state: str  # pending, running, applied, expanded, failed, rolled back, changed since applied, ...
    detail: str | None = None  # the line below it: the changed files, the error, what to do
    problem: bool = False  # drifted or failed: the command exits 1
    applied_at: datetime | None = None
    applied_by: str | None = None
    duration_s: float | None = None
    rows_backfilled: int | None = None


def diff_files(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """Files whose sha256 differs, in name order; an added one is `name (added)`, a removed one `name (removed)`."""
    changes = []
    for name in sorted(set(recorded) | set(current)):
        if name not in current:
            changes.append(f"{name} (removed)")
        elif name not in recorded:
            changes.append(f"{name} (added)")
        elif recorded[name] != current[name]:
            changes.append(name)
    return changes


def _changes(hist: dict, migration: Migration) -> list[str]:
    """The listing's view of a history row against the folder: file names, annotated when added/removed."""
    if hist["files"] is None:  # a run from before per-file checksums: only the overall one to compare
        return [] if hist["checksum"] == migration.checksum else [UNKNOWN_FILES]
    return diff_files(hist["files"], file_checksums(migration))


def changed_files(conn, migration: Migration) -> list[str] | None:
    """The files of an applied (or expanded) migration that differ from what ran: [] when none, None when it
    is not applied. A file added to or removed from the folder counts. Commands that would act on the
    migration refuse a non-empty answer: the change belongs in a new migration folder."""
    if not engines.of(conn).state_sql().state_table_exists(conn, "history"):
        return None
    hist = state.history(conn, migration.id)
    if hist is None or hist["status"] not in APPLIED:
        return None
    return [change.removesuffix(" (added)").removesuffix(" (removed)") for change in _changes(hist, migration)]


def listing(conn, migrations_dir: Path | str, expectations_dir: Path | str | None = None,
            imported: frozenset[str] | set[str] = frozenset()) -> list[Entry]:
    """Every migration folder (in order) and every migration only the state tables know, with its state.
    ``imported``: the ids of imported migrations (Flyway scripts, Alembic revisions), listed by their source
    beside these, not as folders gone missing."""
    rows = {row["migration_id"]: row for row in state.all_history(conn) if row["migration_id"] not in imported}
    folders = {folder.name: folder for folder in discover(migrations_dir)}
    entries = []
    for migration_id in sorted(set(folders) | set(rows)):
        hist = rows.get(migration_id)
        folder = folders.get(migration_id)
        entry = _entry(migration_id, hist, folder, expectations_dir)
        if hist:
            entry.applied_at, entry.applied_by = hist["applied_at"], hist["applied_by"]
            entry.duration_s = hist["duration_s"]
            entry.rows_backfilled = hist["rows_backfilled"]
        entries.append(entry)
    return entries


def _entry(migration_id: str, hist: dict | None, folder: Path | None, expectations_dir) -> Entry:
    status = hist["status"] if hist else None
    if folder is None:  # only the state tables know it: its folder was deleted (or renamed)
        gone = status in APPLIED or status in ("running", "failed")
        return Entry(migration_id, f"{_label(status)}, folder missing", problem=gone,
                     detail=("its folder was deleted or renamed after it ran: restore it (a rollback needs it); "
                             "put further changes in a new migration folder") if gone else None)
    try:
        migration = load_migration(folder, expectations_dir)
    except SpecError as exc:
        return Entry(migration_id, f"does not load ({_label(status)})" if status else "does not load",
                     detail=f"error: {_first_line(exc)}", problem=True)
    if status is None:
        return Entry(migration_id, "pending")
    if status in APPLIED:
        changes = _changes(hist, migration)
        if changes:
            return Entry(migration_id, f"changed since {status}", problem=True,
                         detail=f"changed since {status}: {', '.join(changes)} (restore the files that ran; put the "
                                "change in a new migration folder)")
        if status == "expanded":
            return Entry(migration_id, "expanded", detail=f"waiting for its contract: `airmigrate complete "
                                                          f"{migration_id}`, or trigger its DAG again")
        return Entry(migration_id, "applied")
    if status == "failed":
        return Entry(migration_id, "failed", detail=f"error: {_first_line(hist['error'] or 'no error recorded')}",
                     problem=True)
    if status == "rolled_back":
        when = f" {hist['rolled_back_at']:%Y-%m-%d %H:%M}" if hist.get("rolled_back_at") else ""
        who = f" by {hist['rolled_back_by']}" if hist.get("rolled_back_by") else ""
        return Entry(migration_id, "rolled back", detail=f"rolled back{when}{who}" if when or who else None)
    return Entry(migration_id, _label(status))


def _label(status: str | None) -> str:
    return {"rolled_back": "rolled back", None: "pending"}.get(status, status)


def _first_line(text) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def has_problems(entries: list[Entry]) -> bool:
    return any(entry.problem for entry in entries)


HEADER = ("id", "state", "applied at", "applied by", "duration", "rows backfilled")


def render(entries: list[Entry]) -> list[str]:
    """The table, a detail line under an entry that needs one, and a summary line."""
    cells = [HEADER] + [(e.id, e.state, f"{e.applied_at:%Y-%m-%d %H:%M}" if e.applied_at else "-",
                         e.applied_by or "-", _duration(e.duration_s),
                         f"{e.rows_backfilled:,}" if e.rows_backfilled is not None else "-") for e in entries]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    lines = []
    for row, entry in zip(cells, [None, *entries]):
        left = "  ".join(row[i].ljust(widths[i]) for i in range(4))
        lines.append(f"{left}  {row[4].rjust(widths[4])}  {row[5].rjust(widths[5])}".rstrip())
        if entry is not None and entry.detail:
            lines.append(f"    {entry.detail}")
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.state] = counts.get(entry.state, 0) + 1
    problems = sum(e.problem for e in entries)
    lines.append(f"{len(entries)} migration(s): " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none")
                 + (f"; {problems} need(s) attention (exit 1)" if problems else ""))
    return lines


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"
