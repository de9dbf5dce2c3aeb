"""airmigrate's own record of an imported run, beside the tool's: a row of ``airmigrate.history`` per imported
migration (its checksum the tool's own: Flyway's CRC32, the sha256 of an Alembic revision file) and the run in
``airmigrate.runs``, so `airmigrate history`, the console and the per-run report show imported migrations as
they show native ones.

The tool's history table stays the authority on what is applied (the team may run `flyway migrate` itself); this
row mirrors what airmigrate ran. Its `applied` is written in the transaction of the tool's own row (a literal
statement, so it joins the script's last transaction); a Python-only Alembic revision, which Alembic commits
itself, is brought up to date right after, and :func:`reconcile` catches up a row that a kill left behind.
"""

from __future__ import annotations

import getpass

from airmigrate import state
from airmigrate.engines.sql import Json as Jsonb
from airmigrate.sources.flyway_history import literal
from airmigrate.sources.model import Imported, Status


def files_of(migration: Imported) -> dict[str, str]:
    """The file that ran with the tool's checksum: what drift is judged against (`changed since applied`)."""
    return {migration.file.name: migration.checksum}


def start(conn, migration: Imported, resumed: bool) -> None:
    """A run of the way up begins (or resumes): the history row says running, with the checksum that runs."""
    if resumed and state.history(conn, migration.id) is not None:
        state.resume_history(conn, migration.id, migration.checksum, files_of(migration))
    else:
        state.start_history(conn, migration.id, migration.checksum, files_of(migration))


def applied_sql(migration_id: str) -> str:
    """state.mark_applied as one literal statement: it rides in the transaction of the tool's row."""
    return ("UPDATE airmigrate.history SET status = 'applied', applied_at = now(), applied_by = "
            f"{literal(state.who())}, duration_s = extract(epoch FROM now() - started_at), error = NULL "
            f"WHERE migration_id = {literal(migration_id)}")


def rolled_back_sql(migration_id: str) -> str:
    """state.mark_rolled_back as one literal statement (in the transaction of the undo's last statements)."""
    return ("UPDATE airmigrate.history SET status = 'rolled_back', rolled_back_at = now(), rolled_back_by = "
            f"{literal(state.who())} WHERE migration_id = {literal(migration_id)}")


def reconcile(conn, migration: Imported, status: Status) -> None:
    """The tool says applied while our row still says running or failed (a kill between the tool's commit and
    ours, or a Python revision that Alembic committed): our row follows the tool's."""
    if not state.tables_exist(conn) or not status.done:
        return
    hist = state.history(conn, migration.id)
    if hist is not None and hist["status"] in ("running", "failed"):
        conn.execute(applied_sql(migration.id))


def baseline(conn, migrations: list[Imported]) -> None:
    """Beside the tool's baseline row (or stamp): each migration up to it recorded as applied without running,
    as the native `baseline` records a folder (applied_by "baseline by <user>", duration 0), with the tool's
    checksum of the file as it is now: the file that describes the schema from here on."""
    by = f"baseline by {getpass.getuser()}"
    for migration in migrations:
        conn.execute(
            "INSERT INTO airmigrate.history AS h (migration_id, checksum, status, files, started_at, applied_at, "
            "applied_by, duration_s) VALUES (%s, %s, 'applied', %s, now(), now(), %s, 0) ON CONFLICT (migration_id) "
            "DO UPDATE SET checksum = EXCLUDED.checksum, status = 'applied', files = EXCLUDED.files, started_at = "
            "now(), applied_at = now(), applied_by = EXCLUDED.applied_by, duration_s = 0, error = NULL, "
            "rolled_back_at = NULL, rolled_back_by = NULL",
            (migration.id, migration.checksum, Jsonb(files_of(migration)), by))
