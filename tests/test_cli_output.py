"""`airmigrate run` output: a short summary by default with the task logs in a file it names, the logs on the
console with --verbose, the failing task's own error in the summary; `plan --sql` with the target's types and
`plan --rollback` by phase."""

from __future__ import annotations

import logging
import re
import textwrap
from pathlib import Path

from airmigrate.db import connect
from test_cli import airmigrate  # noqa: F401  (the CLI as a user runs it, against a target)

ROOT = Path(__file__).resolve().parent.parent




def folder(tmp_path: Path, name: str, spec: str, **files: str) -> Path:
    migrations = tmp_path / "migrations"
    (migrations / name).mkdir(parents=True)
    (migrations / name / "migration.yaml").write_text(textwrap.dedent(spec))
    for file, text in files.items():
        (migrations / name / file.replace("_sql", ".sql")).write_text(textwrap.dedent(text))
    return migrations


def test_short_summary_and_the_task_logs_in_a_named_file(fresh_db, tmp_path):
    var = tmp_path / "var"
    done = airmigrate(fresh_db, "run", "0001_add_user_email_verified", AIRMIGRATE_VAR_DIR=str(var))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[DAG TEST]" not in done.stdout + done.stderr and "task_runner" not in done.stdout + done.stderr
    assert len(done.stdout.splitlines()) < 25, done.stdout
    assert ": success" in done.stdout and "history: applied" in done.stdout
    named = re.search(r"task logs: (\S+\.log)", done.stdout)
    assert named, done.stdout
    log_file = Path(named.group(1)) if Path(named.group(1)).is_absolute() else ROOT / named.group(1)
    assert log_file.parent == var / "logs" / "0001_add_user_email_verified" and log_file.is_file()
    text = log_file.read_text()
    assert "[DAG TEST] starting task_id=backup" in text and "task_id=cleanup" in text


def test_verbose_streams_the_task_logs(fresh_db, tmp_path):
    done = airmigrate(fresh_db, "run", "0001_add_user_email_verified", "--verbose", "--param", "dry_run=true",
                      AIRMIGRATE_VAR_DIR=str(tmp_path / "var"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[DAG TEST] starting task_id=preflight" in done.stdout + done.stderr
    assert "task logs:" not in done.stdout and not (tmp_path / "var" / "logs").exists()


def test_a_failing_run_prints_the_error_itself_and_writes_nothing(fresh_db, tmp_path):
    migrations = folder(tmp_path, "0301_typo", """\
        description: a typo in the backfill
        table: users
        backfill:
          sql: backfill.sql
          columns: [email_verified]
    """, up_sql="ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified boolean;\n",
        down_sql="ALTER TABLE users DROP COLUMN IF EXISTS email_verified;\n",
        backfill_sql="""\
        -- one batch
        UPDATE users SET email_verified = (email_confirmd_at IS NOT NULL)
        WHERE id BETWEEN %(lo)s AND %(hi)s;
    """)
    var = tmp_path / "var"
    failed = airmigrate(fresh_db, "run", "0301_typo", AIRMIGRATE_MIGRATIONS_DIR=str(migrations),
                        AIRMIGRATE_VAR_DIR=str(var))
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
    assert "see the log" not in failed.stdout and "log above" not in failed.stdout
    assert "error in preflight: PreflightError:" in failed.stdout
    assert re.search(r"backfill\.sql:2: public\.users has no column 'email_confirmd_at'", failed.stdout), failed.stdout
    assert "this run changed nothing in the target (the preflight checks refused it)" in failed.stdout
    with connect(fresh_db) as conn:
        # refused before Airflow started: not even airmigrate's state tables were made
        assert conn.execute("SELECT to_regclass('airmigrate.history')").fetchone()[0] is None
    assert not list((var / "backups").rglob("*.dump")) if (var / "backups").exists() else True


def test_log_file_masks_credentials(tmp_path):
    from airmigrate.airflow.runner import _logs_to

    path = tmp_path / "run.log"
    with _logs_to(path, ("s3cretpw",)):
        logging.getLogger("airmigrate.test").warning("url postgresql://app:s3cretpw@db:5432/x and s3cretpw")
        print("postgres://u:other@h/db")
    text = path.read_text()
    assert "s3cretpw" not in text and "other@" not in text and "postgresql://app:***@db" in text


SPLIT = """\
    description: move country and last_login_at to user_geo
    table: users
    operations:
      - {op: split_table, new_table: user_geo, columns: [country, last_login_at]}
"""


def test_plan_sql_with_the_target_shows_the_types_that_run(fresh_db, tmp_path):
    migrations = folder(tmp_path, "0302_split", SPLIT)
    online = airmigrate(fresh_db, "plan", "0302_split", "--sql", AIRMIGRATE_MIGRATIONS_DIR=str(migrations))
    assert online.returncode == 0, online.stderr
    assert '"id" bigint PRIMARY KEY, "country" character(2), "last_login_at" timestamp with time zone' in online.stdout
    offline = airmigrate(fresh_db, "plan", "0302_split", "--sql", "--offline",
                         AIRMIGRATE_MIGRATIONS_DIR=str(migrations))
    assert offline.returncode == 0 and '"id" text PRIMARY KEY' in offline.stdout and "offline" in offline.stdout


def test_plan_rollback_lists_the_phases_with_locks(fresh_db, tmp_path):
    migrations = folder(tmp_path, "0302_split", SPLIT)
    plan = airmigrate(fresh_db, "plan", "0302_split", "--rollback", AIRMIGRATE_MIGRATIONS_DIR=str(migrations))
    assert plan.returncode == 0, plan.stderr
    out = plan.stdout
    # the columns are still in users (no contract ran): the old table is the record, so the rollback drops the
    # mirror's trigger and the new table and copies nothing back (a copy would overwrite later writes)
    assert out.index("phase down:") < out.index("phase copy-back (per batch):\n       (nothing)") < \
        out.index("phase finish:")
    assert 'DROP TRIGGER IF EXISTS "am_sync_0302_split_0"' in out.split("phase copy-back")[0]
    assert "lock ACCESS EXCLUSIVE" in out
    assert 'DROP TABLE IF EXISTS "public"."user_geo"' in out.split("phase finish:")[1]
    script = airmigrate(fresh_db, "plan", "0302_split", "--rollback", "--sql", AIRMIGRATE_MIGRATIONS_DIR=str(migrations))
    assert script.returncode == 0, script.stderr
    assert "-- phase down" in script.stdout and "-- lock ACCESS EXCLUSIVE" in script.stdout
    assert "UPDATE" not in script.stdout.split("-- phase copy-back")[1].split("-- phase finish")[0]
