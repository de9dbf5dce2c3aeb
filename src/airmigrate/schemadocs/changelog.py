"""docs/schema/CHANGELOG.md: one entry per applied migration (date, id, description, breaking changes, who),
newest first, appended by the contract stage when the migration is marked applied, and one per rollback
(the schema went back: a reader of the changelog must see that too), appended when the rollback finished."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from airmigrate import settings
from airmigrate.app_versions import NEW_ONLY, app_versions
from airmigrate.spec import Migration

log = logging.getLogger(__name__)

HEADER = ("# Schema changelog\n\nOne entry per applied migration, newest first (written by airmigrate when a "
          "migration is applied; `airmigrate docs` writes the schema itself).\n\n")


def changelog_path() -> Path:
    return settings.docs_dir() / "CHANGELOG.md"


def entry(migration: Migration, hist: dict) -> str:
    spec = migration.spec
    expand, contract, why = app_versions(migration)
    breaking = (f"breaking for the old application version after the contract ({'; '.join(why)}): deploy the new "
                "release between expand and contract") if contract == NEW_ONLY else "none"
    applied = hist.get("applied_at")
    day = applied.strftime("%Y-%m-%d %H:%M UTC") if hasattr(applied, "strftime") else str(applied or "")
    description = " ".join(spec.description.split())
    written = f"- written by: {spec.author or 'unknown'}" + (f" on {spec.date}" if spec.date else "") + "\n"
    return (f"## {migration.id}\n\n- applied: {day} by {hist.get('applied_by') or 'unknown'}\n{written}"
            f"- table: `{spec.table}`\n- what: {description}\n- breaking changes: {breaking}\n"
            f"- checksum: `{migration.checksum[:16]}`\n\n")


def rollback_entry(migration: Migration, hist: dict) -> str:
    """The rollback's entry: what went back, when, by whom (the applied entry below it stays: history)."""
    when = hist.get("rolled_back_at")
    day = when.strftime("%Y-%m-%d %H:%M UTC") if hasattr(when, "strftime") else str(when or "")
    by = hist.get("rolled_back_by") or "unknown"
    return (f"## {migration.id} (rolled back)\n\n- rolled back: {day} by {by}\n- table: `{migration.spec.table}`\n"
            f"- what went back: {' '.join(migration.spec.description.split())}\n"
            f"- checksum: `{migration.checksum[:16]}`\n\n")


def append_rollback(migration: Migration, hist: dict) -> Path | None:
    """Add the rollback's entry (never fails the rollback, like append)."""
    return append(migration, hist, rollback_entry(migration, hist))


def append(migration: Migration, hist: dict, new: str | None = None) -> Path | None:
    """Add this migration's entry (once per application: a re-applied migration after a rollback gets a new
    one). Never fails the run: the database change is done, the file is documentation."""
    path = changelog_path()
    try:
        text = path.read_text() if path.exists() else HEADER
        new = new or entry(migration, hist)
        if new in text:
            return path
        body = text[len(HEADER):] if text.startswith(HEADER) else text
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(HEADER + new + body)
        os.replace(tmp, path)
        log.info("changelog: %s added to %s", new.splitlines()[0][3:], path)
        return path
    except OSError as exc:
        log.warning("changelog not written (%s): the migration is applied all the same", exc)
        return None
