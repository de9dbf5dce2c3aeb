"""Issue 16 section 2: the plan is the truth, and it answers fast.

`run` answers an applied no-op, a changed applied migration, an order violation and a typo before Airflow
starts (the process never imports it); `plan` shows the statements with the target's types, the `sync:`
trigger, refuses a column the target does not have instead of a traceback, and says who writes a `sync:`
column after the contract. Real PostgreSQL, the CLI as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from airmigrate.db import connect

ROOT = Path(__file__).resolve().parent.parent
EMAIL, PHONE = "0001_add_user_email_verified", "0002_normalize_user_phone"
# the CLI in a process that reports, after the command, whether anything imported Airflow
WRAPPED = ("import sys; from airmigrate.cli import main; code = main(sys.argv[1:]); "
           "print('AIRFLOW IMPORTED' if 'airflow' in sys.modules else 'airflow not imported'); sys.exit(code)")


def cli(target, *args, migrations: Path | None = None, **extra_env):
    """The CLI as a user runs it; the target through AIRFLOW_CONN_AIRMIGRATE_TARGET (parsed without Airflow)."""
    env = {**os.environ, "AIRFLOW_CONN_AIRMIGRATE_TARGET": target.airflow_uri(), **extra_env}
    env.pop("AIRMIGRATE_TARGET_URL", None)
    if migrations is not None:
        env["AIRMIGRATE_MIGRATIONS_DIR"] = str(migrations)
    return subprocess.run([sys.executable, "-c", WRAPPED, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def folder(root: Path, name: str, spec: str, **files: str) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "migration.yaml").write_text(textwrap.dedent(spec))
    for file, text in files.items():
        (root / name / file.replace("_sql", ".sql")).write_text(textwrap.dedent(text))
    return root


def baseline(target, to: str, migrations: Path | None = None) -> None:
    """Record migrations as applied without running them (what `airmigrate baseline` does), in this process."""
    from airmigrate.lifecycle.migrate import baseline as record

    old = os.environ.get("AIRMIGRATE_MIGRATIONS_DIR")
    os.environ["AIRMIGRATE_MIGRATIONS_DIR"] = str(migrations or ROOT / "migrations")
    try:
        record(target, to)
    finally:
        os.environ["AIRMIGRATE_MIGRATIONS_DIR"] = old or str(ROOT / "migrations")


def test_run_answers_an_applied_no_op_drift_and_order_before_airflow_starts(fresh_db, tmp_path):
    order = cli(fresh_db, "run", PHONE)  # 0001 is not applied
    assert order.returncode == 1, order.stdout + order.stderr
    assert f"{PHONE} must run after {EMAIL}, which has not been applied" in order.stdout
    assert "error in preflight: PreflightError:" in order.stdout and "refused before Airflow started" in order.stdout
    assert "airflow not imported" in order.stdout and "dag.test" not in order.stdout

    copy = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", copy)
    baseline(fresh_db, EMAIL, copy)
    applied = cli(fresh_db, "run", EMAIL, migrations=copy)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "this run changed nothing in the target (already applied: nothing to do; applied on" in applied.stdout
    assert "airflow not imported" in applied.stdout

    (copy / EMAIL / "backfill.sql").write_text((copy / EMAIL / "backfill.sql").read_text() + "\n-- tweaked\n")
    drift = cli(fresh_db, "run", EMAIL, migrations=copy)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "its files have changed since (backfill.sql changed)" in drift.stdout
    assert "history: applied" in drift.stdout and "airflow not imported" in drift.stdout
    with connect(fresh_db) as conn:  # nothing recorded: no run was opened
        assert conn.execute("SELECT count(*) FROM airmigrate.runs").fetchone()[0] == 0


TYPO = """\
    description: a typo in the backfill
    table: users
    backfill:
      sql: backfill.sql
      columns: [email_verified]
"""


def test_a_typo_is_refused_by_run_plan_and_lint_without_airflow(fresh_db, tmp_path):
    migrations = folder(tmp_path / "migrations", "0301_typo", TYPO,
                        up_sql="ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified boolean;\n",
                        down_sql="ALTER TABLE users DROP COLUMN IF EXISTS email_verified;\n",
                        backfill_sql="UPDATE users SET email_verified = (emial IS NOT NULL)\n"
                                     "WHERE id BETWEEN %(lo)s AND %(hi)s;\n")
    run = cli(fresh_db, "run", "0301_typo", migrations=migrations)
    assert run.returncode == 1 and "public.users has no column 'emial'" in run.stdout, run.stdout + run.stderr
    assert "airflow not imported" in run.stdout
    plan = cli(fresh_db, "plan", "0301_typo", migrations=migrations)
    assert plan.returncode == 1 and "backfill.sql:1: public.users has no column 'emial'" in plan.stderr
    assert "Traceback" not in plan.stderr and "plan for" not in plan.stdout
    lint = cli(fresh_db, "lint", str(migrations / "0301_typo"), migrations=migrations)
    assert lint.returncode == 1 and "no column 'emial'" in lint.stderr, lint.stdout + lint.stderr
    offline = cli(fresh_db, "plan", "0301_typo", "--offline", migrations=migrations)
    assert offline.returncode == 0  # without the target nothing can know


def test_plan_shows_the_types_the_target_has(fresh_db, tmp_path):
    migrations = folder(tmp_path / "migrations", "0303_rename", """\
        description: rename last_login_at
        table: users
        operations:
          - {op: rename_column, column: last_login_at, to: last_seen_at}
    """)
    folder(migrations, "0304_split", """\
        description: move phone out
        table: users
        out_of_order: true
        operations:
          - {op: split_table, new_table: user_phones, columns: [phone]}
    """)
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE INDEX users_last_login_idx ON users (last_login_at)")
    rename = cli(fresh_db, "plan", "0303_rename", migrations=migrations)
    assert rename.returncode == 0, rename.stderr
    assert 'ADD COLUMN IF NOT EXISTS "last_seen_at" timestamp with time zone' in rename.stdout
    assert "CREATE INDEX CONCURRENTLY" in rename.stdout  # the steps that run, generated from the target's shape
    split = cli(fresh_db, "plan", "0304_split", migrations=migrations)
    assert split.returncode == 0, split.stderr
    assert '"id" bigint PRIMARY KEY, "phone" text' in split.stdout and '"id" text' not in split.stdout


PLACEHOLDER = """\
    description: as `airmigrate new x --op change_column_type --table users` writes it
    table: users
    operations:
      - {op: change_column_type, column: column_name, type: text}
"""


def test_plan_of_the_scaffolds_placeholder_column_is_a_refusal_not_a_traceback(fresh_db, tmp_path):
    migrations = folder(tmp_path / "migrations", "0305_placeholder", PLACEHOLDER)
    for args in ((), ("--sql",)):
        plan = cli(fresh_db, "plan", "0305_placeholder", *args, migrations=migrations)
        assert plan.returncode == 1, plan.stdout + plan.stderr
        assert "Traceback" not in plan.stderr and "has no column 'column_name'" in plan.stderr, plan.stderr


SYNC = """\
    description: derive email_verified, kept right by a trigger meanwhile
    table: users
    backfill:
      sql: backfill.sql
      columns: [email_verified]
      sync: {email_verified: "email_confirmed_at IS NOT NULL"}
"""


def test_plan_includes_the_sync_trigger_and_who_writes_the_column_after_the_contract(fresh_db, tmp_path):
    migrations = folder(tmp_path / "migrations", "0306_sync", SYNC,
                        up_sql="ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified boolean;\n",
                        down_sql="ALTER TABLE users DROP COLUMN IF EXISTS email_verified;\n",
                        backfill_sql="UPDATE users SET email_verified = (email_confirmed_at IS NOT NULL)\n"
                                     "WHERE id BETWEEN %(lo)s AND %(hi)s\n"
                                     "  AND email_verified IS DISTINCT FROM (email_confirmed_at IS NOT NULL);\n")
    plan = cli(fresh_db, "plan", "0306_sync", migrations=migrations)
    assert plan.returncode == 0, plan.stderr
    out = plan.stdout
    assert '[backfill.plan] CREATE OR REPLACE TRIGGER "am_derive_0306_sync"' in out
    assert '[cleanup] DROP TRIGGER IF EXISTS "am_derive_0306_sync"' in out
    assert "after contract (cleanup):                     new only" in out
    assert "backfill.sync email_verified: the trigger deriving it" in out
    script = cli(fresh_db, "plan", "0306_sync", "--sql", migrations=migrations).stdout
    assert script.index("-- stage backfill.plan") < script.index("CREATE OR REPLACE TRIGGER") < \
        script.index("-- stage backfill:") < script.index("DROP TRIGGER IF EXISTS")


PURGE = """\
    description: purge the obsolete users
    table: users
    out_of_order: true
    cleanup: cleanup.sql
"""


def test_plan_says_a_delete_no_index_serves_scans_the_table_and_lint_names_delete_rows(fresh_db, tmp_path):
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE users ADD COLUMN is_obsolete boolean NOT NULL DEFAULT false")
        conn.execute("ANALYZE users")
    migrations = folder(tmp_path / "migrations", "0307_purge", PURGE, cleanup_sql="DELETE FROM users WHERE is_obsolete;\n",
                        up_sql="SELECT 1;\n", down_sql="SELECT 1;\n")
    plan = cli(fresh_db, "plan", "0307_purge", migrations=migrations)
    out = plan.stdout
    assert "[cleanup] DELETE FROM users WHERE is_obsolete\n       lock ROW EXCLUSIVE; scans the table" in out, plan.stderr
    assert "no index serves the WHERE" in out
    assert plan.returncode == 1 and "unbatched-delete" in plan.stderr  # `run` would refuse it
    lint = cli(fresh_db, "lint", str(migrations / "0307_purge"), migrations=migrations)
    assert lint.returncode == 1 and "cleanup.sql:1: unbatched-delete:" in lint.stdout
    assert "delete_rows" in lint.stdout

    with connect(fresh_db, autocommit=True) as conn:  # an index on the predicate: the planner uses it
        conn.execute("CREATE INDEX users_obsolete_idx ON users (id) WHERE is_obsolete")
        conn.execute("ANALYZE users")
    indexed = cli(fresh_db, "plan", "0307_purge", migrations=migrations).stdout
    assert "[cleanup] DELETE FROM users WHERE is_obsolete\n       lock ROW EXCLUSIVE; no scan" in indexed, indexed


def test_a_unique_prefix_names_a_migration_like_git(fresh_db, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", migrations)
    shutil.copytree(migrations / PHONE, migrations / "0002_other")  # two folders start with 0002
    by_number = cli(fresh_db, "run", "0002_n", migrations=migrations)  # 0002_normalize_user_phone, refused by order
    assert by_number.returncode == 1 and f"{PHONE} must run after {EMAIL}" in by_number.stdout, by_number.stderr
    plan = cli(fresh_db, "plan", "0001", "--offline", migrations=migrations)
    assert plan.returncode == 0 and f"plan for {EMAIL}" in plan.stdout
    ambiguous = cli(fresh_db, "run", "0002", migrations=migrations)
    assert ambiguous.returncode == 2 and "'0002' is ambiguous" in ambiguous.stderr
    assert f"0002_other, {PHONE}" in ambiguous.stderr or f"{PHONE}, 0002_other" in ambiguous.stderr
    unknown = cli(fresh_db, "run", "0999", migrations=migrations)
    assert unknown.returncode == 2 and "no migration '0999'" in unknown.stderr and EMAIL in unknown.stderr


def test_the_order_refusal_after_a_rollback_offers_every_way_out_in_one_line(fresh_db):
    baseline(fresh_db, EMAIL)
    with connect(fresh_db, autocommit=True) as conn:  # as `airmigrate run 0001 --rollback` leaves it
        conn.execute("UPDATE airmigrate.history SET status = 'rolled_back', rolled_back_at = now() "
                     "WHERE migration_id = %s", (EMAIL,))
    refused = cli(fresh_db, "run", PHONE)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    line = next(x for x in refused.stdout.splitlines() if "error in preflight" in x)
    assert "which was rolled back" in line and f"`airmigrate run {EMAIL}`" in line
    assert "out_of_order: true" in line and f"`airmigrate run {EMAIL} --rollback --cascade`" in line


def test_the_target_connection_is_read_as_airflow_reads_it_without_airflow():
    import json

    from airflow.models.connection import Connection

    from airmigrate.airflow.tasks import target_from_connection
    from airmigrate.db import Target

    for target in (Target(), Target(host="/tmp/pg data", port=5433, user="a@b", password="p:w/x%", dbname="d b")):
        uri = target.airflow_uri()
        assert Target.from_airflow_uri(uri) == target
        assert target_from_connection(Connection(conn_id="airmigrate_target", uri=uri)) == target
    as_json = json.dumps({"conn_type": "postgres", "host": "db", "login": "app", "password": "pw", "schema": "shop",
                          "port": 6543})
    assert Target.from_airflow_uri(as_json) == target_from_connection(Connection.from_json(as_json, conn_id="x"))
