"""backup: auto | table | columns | none, and keep_backups: a backup in proportion to the risk."""

from __future__ import annotations

import os
import stat

import yaml

from airmigrate import state
from airmigrate.db import connect
from airmigrate.lint import lint_migration, unacknowledged
from airmigrate.spec import load_migration
from airmigrate.stages import backup, preflight


def _migration(tmp_path, up, cleanup=None, **extra):
    folder = tmp_path / "0095_backup"
    folder.mkdir(exist_ok=True)
    (folder / "up.sql").write_text(up)
    (folder / "down.sql").write_text("SELECT 1;")
    if cleanup:
        (folder / "cleanup.sql").write_text(cleanup)
    spec = {"description": "backup policy", "table": "users", "key": "id", **extra}
    if cleanup:
        spec["cleanup"] = "cleanup.sql"
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    return load_migration(folder)


def _backup(target, migration):
    run_id = preflight.preflight(target, migration)["run_id"]
    backup.backup(target, migration, run_id)
    with connect(target) as conn:
        return state.latest_run(conn, migration.id)["facts"]


def test_auto_takes_nothing_for_an_index(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_BACKUP_DIR", str(tmp_path / "backups"))
    facts = _backup(fresh_db, _migration(tmp_path, "CREATE INDEX CONCURRENTLY users_country ON users (country);"))
    assert facts["backup_path"] is None and facts["snapshot_table"] is None and facts["backup_bytes"] == 0
    assert "no pg_dump" in facts["backup_reason"]
    assert not list((tmp_path / "backups").rglob("*.dump")) if (tmp_path / "backups").exists() else True


def test_auto_dumps_the_table_before_a_raw_drop_column_privately(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_BACKUP_DIR", str(tmp_path / "backups"))
    migration = _migration(tmp_path, "SELECT 1;", cleanup="ALTER TABLE users DROP COLUMN last_login_at;",
                           acknowledge=[{"rule": "ban-drop-column", "reason": "the application stopped reading it"}])
    facts = _backup(fresh_db, migration)
    dump = tmp_path / "backups" / migration.id
    files = list(dump.glob("*.dump"))
    assert len(files) == 1 and files[0].read_bytes()[:5] == b"PGDMP"
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600 and stat.S_IMODE(dump.stat().st_mode) == 0o700
    assert facts["backup_path"] == str(files[0]) and facts["backup_bytes"] == files[0].stat().st_size
    assert "runs DROP COLUMN in cleanup.sql" in facts["backup_reason"] and facts["backup_seconds"] >= 0


def test_columns_snapshots_what_the_backfill_overwrites_and_keep_backups_prunes(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_BACKUP_DIR", str(tmp_path / "backups"))
    folder = tmp_path / "backups" / "0095_backup"
    folder.mkdir(parents=True)
    for i in range(3):  # older dumps of this migration, oldest first
        old = folder / f"0095_backup-2026010{i}T000000.dump"
        old.write_bytes(b"PGDMP old")
        os.utime(old, (1_700_000_000 + i, 1_700_000_000 + i))
    migration = _migration(tmp_path, "SELECT 1;", backup="table", keep_backups=2)
    facts = _backup(fresh_db, migration)
    assert facts["backup_path"] and "backup: table" in facts["backup_reason"]
    kept = sorted(p.name for p in folder.glob("*.dump"))
    assert len(kept) == 2 and facts["backup_path"].rsplit("/", 1)[1] in kept  # the new one and the newest old
    assert "0095_backup-20260100T000000.dump" not in kept  # the oldest went first


def test_backup_none_on_a_migration_that_drops_data_needs_an_acknowledgement(tmp_path):
    migration = _migration(tmp_path, "SELECT 1;", cleanup="DROP TABLE IF EXISTS old_users;", backup="none")
    findings = [f for f in unacknowledged(lint_migration(migration)) if f.rule == "backup-none"]
    assert len(findings) == 1 and "runs DROP TABLE in cleanup.sql" in findings[0].message
    assert findings[0].file.endswith("migration.yaml") and "backup: auto" in findings[0].recipe
    acked = _migration(tmp_path, "SELECT 1;", cleanup="DROP TABLE IF EXISTS old_users;", backup="none",
                       acknowledge=[{"rule": "backup-none", "reason": "old_users is a disposable copy"}])
    assert not [f for f in unacknowledged(lint_migration(acked)) if f.rule == "backup-none"]


def test_restore_dump_puts_the_table_back_as_dumped(fresh_db, tmp_path, monkeypatch):
    """The restore behind the engine (pg_restore --clean --single-transaction): rows and columns as in the dump."""
    monkeypatch.setenv("AIRMIGRATE_BACKUP_DIR", str(tmp_path / "backups"))
    migration = _migration(tmp_path, "SELECT 1;", backup="table")
    with connect(fresh_db) as conn:
        before = conn.execute("SELECT md5(string_agg(u::text, '|' ORDER BY id)) FROM users u").fetchone()[0]
    path = backup.dump_table(fresh_db, migration)
    with connect(fresh_db) as conn:
        conn.execute("DELETE FROM users WHERE id % 2 = 0")
        conn.execute("ALTER TABLE users DROP COLUMN last_login_at")
    backup.restore_dump(fresh_db, migration, path)
    with connect(fresh_db) as conn:
        after = conn.execute("SELECT md5(string_agg(u::text, '|' ORDER BY id)) FROM users u").fetchone()[0]
    assert after == before
