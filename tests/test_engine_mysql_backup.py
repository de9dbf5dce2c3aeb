"""Backups on MySQL / MariaDB through the engine: the backup stage's dump is mysqldump --single-transaction of
the migration's table, written 0600 in a 0700 folder, the credentials in a 0600 option file that is gone
afterwards (never on argv, never in the environment); restore_dump puts the table back as it was."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tempfile
import uuid

import pytest
from mysql_support import drop_database, fill, fresh_database, rows_of, skip_without_server

from airmigrate import db, engines
from airmigrate.engines.target import Target
from airmigrate.errors import AirmigrateError
from airmigrate.spec import Migration, MigrationSpec
from airmigrate.stages import backup

pytestmark = pytest.mark.server
skip_without_server()
MYSQL = engines.named("mysql")
PASSWORD = 'p@ss "w#rd\\ ;x\'q'   # quotes, a backslash, a comment sign, a semicolon: all survive the option file


@pytest.fixture
def target():
    made = fresh_database("am_mybackup")
    yield made
    drop_database(made)


@pytest.fixture
def with_password(target):
    """The same database reached as a user with a hostile password (created here, dropped after)."""
    user = f"h22e_u{uuid.uuid4().hex[:8]}"
    with db.connect(target, autocommit=True) as conn:
        conn.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (PASSWORD,))
        conn.execute(f"GRANT ALL ON `{target.dbname}`.* TO '{user}'@'%'")
    yield Target(host=target.host, port=target.port, user=user, password=PASSWORD, dbname=target.dbname,
                 engine="mysql")
    with db.connect(target, autocommit=True) as conn:
        conn.execute(f"DROP USER IF EXISTS '{user}'@'%'")


def migration_on(target: Target, table: str = "t") -> Migration:
    spec = MigrationSpec(description="backup test", table=f"{target.dbname}.{table}", backup="table")
    return Migration(id="0001_backup_test", folder=None, spec=spec, up_sql="", down_sql="", cleanup_sql=None,
                     backfill_sql=None, transform_file=None, expectations_file=None, checksum="")


def digest(rows) -> str:
    return hashlib.md5(repr(rows).encode()).hexdigest()


def test_dump_is_private_and_restores_the_table(target, with_password, tmp_path, monkeypatch):
    fill(target, "t", 5000)
    with db.connect(target, autocommit=True) as conn:
        conn.execute("UPDATE t SET s = 'quote '' backslash \\\\ tab \t newline \n é 🙂' WHERE id = 7")
        conn.execute("CREATE TRIGGER t_keep BEFORE UPDATE ON t FOR EACH ROW SET NEW.s = COALESCE(NEW.s, 'kept')")
    before = digest(rows_of(target, "t"))
    monkeypatch.setenv("AIRMIGRATE_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("MYSQL_PWD", "wrong password from the worker's environment")  # must not be used
    seen: list[tuple[list[str], dict]] = []
    real_run = subprocess.run

    modes: list[tuple[int, int]] = []

    def recording_run(args, **kwargs):  # the real client runs; we keep what it was given
        seen.append((list(args), dict(kwargs.get("env") or {})))
        cnf = args[1].split("=", 1)[1]
        modes.append((stat.S_IMODE(os.stat(cnf).st_mode), stat.S_IMODE(os.stat(os.path.dirname(cnf)).st_mode)))
        return real_run(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)
    private_tmp = tmp_path / "tmp"   # the option files' folders go here: nothing else writes there
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    path = backup.dump_table(with_password, migration_on(with_password))

    assert path.suffix == ".sql" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert "CREATE TABLE `t`" in text and "INSERT INTO `t`" in text and "t_keep" in text
    assert "LOCK TABLES" not in text   # the restore takes no write lock around its inserts either
    argv, env = seen[0]
    assert os.path.basename(argv[0]) in ("mariadb-dump", "mysqldump") and "--single-transaction" in argv
    assert argv[1].startswith(f"--defaults-extra-file={private_tmp}/") and modes == [(0o600, 0o700)]
    assert not os.path.exists(argv[1].split("=", 1)[1])
    assert not any(PASSWORD in a or "p@ss" in a for a in argv) and "MYSQL_PWD" not in env
    assert PASSWORD not in text
    assert list(private_tmp.iterdir()) == []   # the option file and its folder are gone

    with db.connect(target, autocommit=True) as conn:   # what a bad migration does to the table
        conn.execute("DELETE FROM t WHERE id > 100")
        conn.execute("ALTER TABLE t DROP COLUMN s")
        conn.execute("DROP TRIGGER t_keep")
    backup.restore_dump(with_password, migration_on(with_password), path)
    assert digest(rows_of(target, "t")) == before
    with db.connect(target) as conn:
        assert conn.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = "
                            "DATABASE()").fetchall() == (("t_keep",),)
        assert MYSQL.relation_bytes(conn, target.dbname, "t") > 0
        assert MYSQL.relation_bytes(conn, target.dbname, "missing") == 0
    assert list(private_tmp.iterdir()) == []   # the option file and its folder are gone


def test_failed_dump_leaves_no_file_and_no_password(target, with_password, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_BACKUP_DIR", str(tmp_path / "backups"))
    with pytest.raises(AirmigrateError) as failed:
        backup.dump_table(with_password, migration_on(with_password, "missing"))
    assert "mysqldump of" in str(failed.value) and "missing" in str(failed.value)
    assert PASSWORD not in str(failed.value)
    assert list((tmp_path / "backups" / "0001_backup_test").iterdir()) == []
    wrong = Target(host=with_password.host, port=with_password.port, user=with_password.user,
                   password="not the password", dbname=with_password.dbname, engine="mysql")
    with pytest.raises(AirmigrateError) as denied:
        backup.dump_table(wrong, migration_on(wrong))
    assert "Access denied" in str(denied.value) and "not the password" not in str(denied.value)


def test_prune_keeps_the_newest_dumps_of_either_engine(tmp_path):
    for i, name in enumerate(["a.sql", "b.dump", "c.sql", "notes.txt"]):
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    removed = backup.prune_backups(tmp_path, 2)
    assert sorted(p.name for p in removed) == ["a.sql"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.dump", "c.sql", "notes.txt"]
