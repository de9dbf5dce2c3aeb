"""`airmigrate history` / `airmigrate status` without a migration: every migration's state in the target, drift
(files changed since applied, folders deleted), failures and parse errors; exit 1 on any of those."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from airmigrate import state
from airmigrate.db import connect
from airmigrate.lifecycle.history import changed_files, diff_files
from airmigrate.spec import file_checksums, load_migration

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "airmigrate.cli"]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EMAIL = "0001_add_user_email_verified"
PHONE = "0002_normalize_user_phone"


def _env(target, extra: dict) -> dict:
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": target.url(), **extra}
    env.pop("AIRFLOW_CONN_AIRMIGRATE_TARGET", None)
    env.pop("AIRMIGRATE_USER", None)  # applied_by must come from the OS user
    return env


def airmigrate(target, *args, **extra_env):
    return subprocess.run([*CLI, *args], env=_env(target, extra_env), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def line_of(output: str, migration_id: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(migration_id))


def copy_migrations(tmp_path: Path) -> Path:
    copy = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", copy)
    return copy


def test_diff_files_names_changed_added_and_removed_files():
    recorded = {"up.sql": "a", "down.sql": "b", "backfill.sql": "c"}
    current = {"up.sql": "a", "backfill.sql": "changed", "cleanup.sql": "d"}
    assert diff_files(recorded, current) == ["backfill.sql", "cleanup.sql (added)", "down.sql (removed)"]
    assert diff_files(recorded, dict(recorded)) == []


def test_untouched_database_lists_every_folder_pending(fresh_db):
    listed = airmigrate(fresh_db, "history")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["id", "state"] and "applied by" in lines[0] and "rows backfilled" in lines[0]
    assert line_of(listed.stdout, EMAIL).split()[1] == "pending"
    assert line_of(listed.stdout, PHONE).split()[1] == "pending"
    assert listed.stdout.index(EMAIL) < listed.stdout.index(PHONE)
    assert "2 migration(s): 2 pending" in listed.stdout
    status = airmigrate(fresh_db, "status")
    assert status.returncode == 0 and status.stdout == listed.stdout


def test_output_into_a_pipe_that_closes_early(fresh_db):
    env = _env(fresh_db, {})
    piped = subprocess.run(f"{' '.join(CLI)} history | head -1", shell=True, env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 0 and piped.stdout.startswith("id ") and piped.stdout.count("\n") == 1
    assert "Traceback" not in piped.stderr and "Error" not in piped.stderr, piped.stderr
    # the reader gone before anything is written: the write fails (EPIPE), the command stops quietly
    proc = subprocess.Popen([*CLI, "history"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode in (0, 141)


def test_applied_then_changed_then_deleted(fresh_db, tmp_path):
    done = airmigrate(fresh_db, "run", EMAIL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    copy = copy_migrations(tmp_path)

    listed = airmigrate(fresh_db, "history", AIRMIGRATE_MIGRATIONS_DIR=str(copy))
    assert listed.returncode == 0, listed.stdout + listed.stderr
    row = line_of(listed.stdout, EMAIL)
    assert row.split()[1] == "applied"
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", row)
    assert f" {getpass.getuser()} " in row and "dag_test" not in listed.stdout
    assert re.search(r"\d+\.\ds\s+18,000$", row), row  # duration, rows the backfill wrote
    assert line_of(listed.stdout, PHONE).split()[1] == "pending"

    with connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT applied_by FROM airmigrate.history").fetchone()[0] == getpass.getuser()
        assert changed_files(conn, load_migration(copy / EMAIL, ROOT / "expectations")) == []
        assert changed_files(conn, load_migration(copy / PHONE, ROOT / "expectations")) is None

    backfill = copy / EMAIL / "backfill.sql"
    backfill.write_text(backfill.read_text() + "\n-- tweaked after it ran\n")
    changed = airmigrate(fresh_db, "history", AIRMIGRATE_MIGRATIONS_DIR=str(copy))
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert line_of(changed.stdout, EMAIL).split()[1:4] == ["changed", "since", "applied"]
    assert "changed since applied: backfill.sql (" in changed.stdout
    assert airmigrate(fresh_db, "status", AIRMIGRATE_MIGRATIONS_DIR=str(copy)).stdout == changed.stdout
    with connect(fresh_db, autocommit=True) as conn:
        assert changed_files(conn, load_migration(copy / EMAIL, ROOT / "expectations")) == ["backfill.sql"]

    plan = airmigrate(fresh_db, "plan", EMAIL, AIRMIGRATE_MIGRATIONS_DIR=str(copy))
    assert plan.returncode == 1 and "backfill.sql" in plan.stderr and "new migration folder" in plan.stderr
    assert plan.stdout == ""
    assert airmigrate(fresh_db, "plan", EMAIL).returncode == 0  # the unchanged files plan as before

    (copy / EMAIL / "NOTES.md").write_text("why\n")
    both = airmigrate(fresh_db, "history", AIRMIGRATE_MIGRATIONS_DIR=str(copy))
    assert "changed since applied: NOTES.md (added), backfill.sql (" in both.stdout

    shutil.rmtree(copy / EMAIL)
    gone = airmigrate(fresh_db, "history", AIRMIGRATE_MIGRATIONS_DIR=str(copy))
    assert gone.returncode == 1, gone.stdout + gone.stderr
    row = line_of(gone.stdout, EMAIL)
    assert "applied, folder missing" in row and getpass.getuser() in row and "18,000" in row
    assert gone.stdout.index(EMAIL) < gone.stdout.index(PHONE)


def test_failed_run_and_a_folder_that_does_not_load(fresh_db, tmp_path):
    with connect(fresh_db, autocommit=True) as conn:
        state.ensure_schema(conn)
        migration = load_migration(ROOT / "migrations" / EMAIL, ROOT / "expectations")
        state.start_history(conn, EMAIL, migration.checksum, {})
        state.mark_history_failed(conn, EMAIL, "backfill: 3 batches failed\nTraceback (most recent call last): ...")
        assert changed_files(conn, migration) is None  # not applied: a failed run resumes with the new files
    failed = airmigrate(fresh_db, "history")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert line_of(failed.stdout, EMAIL).split()[1] == "failed"
    assert "    error: backfill: 3 batches failed\n" in failed.stdout and "Traceback" not in failed.stdout

    copy = copy_migrations(tmp_path)
    broken = copy / "0003_broken"
    broken.mkdir()
    (broken / "migration.yaml").write_text("description: x\ntable: users\nbatchsize: 10\n")
    listed = airmigrate(fresh_db, "history", AIRMIGRATE_MIGRATIONS_DIR=str(copy))
    assert listed.returncode == 1
    assert line_of(listed.stdout, "0003_broken").split()[1:4] == ["does", "not", "load"]
    error = next(line for line in listed.stdout.splitlines() if "0003_broken/migration.yaml" in line)
    assert error.startswith("    error: ") and "batchsize" in error


def test_failed_fixture_run_records_its_error(fresh_db, tmp_path):
    """A real run that fails (validation stops a wrong backfill): listed failed with the error, exit 1."""
    only = tmp_path / "migrations"  # alone: the earlier fixture folders would hold it back (folder order)
    shutil.copytree(FIXTURES / "migrations" / "0102_wrong_backfill", only / "0102_wrong_backfill")
    fixtures = {"AIRMIGRATE_MIGRATIONS_DIR": str(only), "AIRMIGRATE_EXPECTATIONS_DIR": str(FIXTURES / "expectations")}
    run = airmigrate(fresh_db, "run", "0102_wrong_backfill", "--approve", **fixtures)  # validation stops it first
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    listed = airmigrate(fresh_db, "history", **fixtures)
    assert listed.returncode == 1, listed.stdout + listed.stderr
    assert line_of(listed.stdout, "0102_wrong_backfill").split()[1] == "failed"
    lines = listed.stdout.splitlines()
    detail = lines[lines.index(line_of(listed.stdout, "0102_wrong_backfill")) + 1]
    assert detail.startswith("    error: ") and "expectations failed" in detail, listed.stdout


def test_expanded_waits_for_its_contract_and_old_rows_without_file_checksums(fresh_db, tmp_path):
    with connect(fresh_db, autocommit=True) as conn:
        state.ensure_schema(conn)
        email = load_migration(ROOT / "migrations" / EMAIL, ROOT / "expectations")
        phone = load_migration(ROOT / "migrations" / PHONE, ROOT / "expectations")
        state.start_history(conn, EMAIL, email.checksum, {})  # {}: every file of the folder counts as added
        state.start_history(conn, PHONE, phone.checksum)  # files NULL: a run from before per-file checksums
        state.mark_expanded(conn, EMAIL)
        state.mark_applied(conn, PHONE)
        assert changed_files(conn, phone) == []
    listed = airmigrate(fresh_db, "history")
    assert listed.returncode == 1
    # every file of the folder, the MySQL variants too: one checksum covers the folder on both engines
    assert "changed since expanded: backfill.mysql.sql (added), backfill.sql (added), down.mysql.sql (added)" \
        in listed.stdout, listed.stdout
    assert line_of(listed.stdout, PHONE).split()[1] == "applied"

    with connect(fresh_db, autocommit=True) as conn:
        state.start_history(conn, EMAIL, email.checksum, file_checksums(email))  # as preflight records them
        state.mark_expanded(conn, EMAIL)
    copy = copy_migrations(tmp_path)
    (copy / PHONE / "up.sql").write_text((copy / PHONE / "up.sql").read_text() + "\n-- edited\n")
    listed = airmigrate(fresh_db, "history", AIRMIGRATE_MIGRATIONS_DIR=str(copy))
    assert listed.returncode == 1
    assert line_of(listed.stdout, EMAIL).split()[1] == "expanded" and "waiting for its contract" in listed.stdout
    assert "changed since applied: (which file: not recorded" in listed.stdout
