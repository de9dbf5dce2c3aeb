"""backup: before any change, dump the table (the engine's dump: pg_dump, mysqldump) and snapshot the values the
backfill overwrites; restore_dump puts a dumped table back."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from airmigrate import engines, settings, state, structure
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
    return engines.of(conn).relation_bytes(conn, "airmigrate", snapshot) if snapshot else 0


def prune_backups(folder: Path, keep: int) -> list[Path]:
    """keep_backups: delete all but the newest `keep` dumps of this migration."""
    suffixes = {engine.dump_suffix for engine in map(engines.named, engines.REGISTRY)}
    dumps = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    removed = dumps[keep:]
    for old in removed:
        old.unlink(missing_ok=True)
        log.info("keep_backups=%d: removed %s", keep, old)
    return removed


def dump_table(target: Target, migration: Migration) -> Path:
    """The engine's dump of the migration's table (pg_dump -Fc, mysqldump --single-transaction) into a 0700
    folder, the file 0600; the password never on a command line or in a log."""
    engine = engines.named(target.engine)
    folder = settings.backup_dir() / migration.id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    path = folder / f"{migration.id}-{time.strftime('%Y%m%dT%H%M%S')}{engine.dump_suffix}"
    started = time.monotonic()
    engine.dump_table(target, migration.spec.schema_name, migration.spec.table_name, path)
    log.info("backup of %s written to %s (%.1f MB, %.1fs)", migration.spec.table, path, path.stat().st_size / 1e6,
             time.monotonic() - started)
    return path


def restore_dump(target: Target, migration: Migration, path: Path | str) -> None:
    """Put the table back as a dump of :func:`dump_table` has it (the whole table: rows, indexes, triggers):
    the rollback's last resort when up.sql or cleanup.sql destroyed what no column snapshot keeps."""
    path = Path(path)
    if not path.is_file():
        raise AirmigrateError(f"the backup {path} of {migration.spec.table} is not there (pruned by keep_backups, or "
                              "taken on another worker); nothing was restored")
    started = time.monotonic()
    engines.named(target.engine).restore_table(target, path, migration.spec.schema_name)
    log.info("%s restored from %s (%.1fs)", migration.spec.table, path, time.monotonic() - started)


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
