"""`airmigrate migrate / baseline / complete`, `run --until expand`, applied-means-done, and airmigrate__migrate:
real PostgreSQL, real Airflow (dag.test in-process or the CLI as a subprocess)."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from airmigrate import state
from airmigrate.airflow.dag_factory import build_all
from airmigrate.db import connect
from airmigrate.errors import PreflightError
from airmigrate.lifecycle.migrate import app_versions, render_app_versions
from airmigrate.spec import load_migration

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CLI = [sys.executable, "-m", "airmigrate.cli"]
MIGRATIONS = sorted(p.name for p in (ROOT / "migrations").iterdir() if p.is_dir())
EMAIL, PHONE = "0001_add_user_email_verified", "0002_normalize_user_phone"


def airmigrate(target, *args, **extra_env):
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": target.url(), **extra_env}
    env.pop("AIRFLOW_CONN_AIRMIGRATE_TARGET", None)
    env.pop("AIRMIGRATE_USER", None)
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def out(done) -> str:
    return done.stdout[-4000:] + done.stderr[-4000:]


def history(target) -> dict[str, dict]:
    with connect(target, autocommit=True) as conn:
        return {h["migration_id"]: h for h in state.all_history(conn)}


def column_exists(target, column: str) -> bool:
    with connect(target) as conn:
        return conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' "
                            "AND column_name = %s", (column,)).fetchone()[0] == 1


def summary_line(output: str, migration_id: str) -> str:
    return next(line for line in output.splitlines() if line.strip().startswith(migration_id))


def test_migrate_runs_every_pending_migration_in_order_then_has_nothing_to_do(fresh_db):
    done = airmigrate(fresh_db, "migrate")
    assert done.returncode == 0, out(done)
    assert done.stdout.index(f"== {EMAIL}") < done.stdout.index(f"== {PHONE}")  # folder order
    assert re.search(rf"{EMAIL}\s+applied\s+\d+\.\d+s", done.stdout)
    assert re.search(rf"{PHONE}\s+applied\s+\d+\.\d+s", done.stdout)
    hist = history(fresh_db)
    assert hist[EMAIL]["status"] == hist[PHONE]["status"] == "applied"
    assert hist[EMAIL]["applied_at"] < hist[PHONE]["started_at"]

    again = airmigrate(fresh_db, "migrate")
    assert again.returncode == 0, out(again)
    assert "running" not in again.stdout  # no DAG ran at all
    assert "already applied" in summary_line(again.stdout, EMAIL)
    assert "already applied" in summary_line(again.stdout, PHONE)
    assert "all already applied: nothing to do" in again.stdout


def test_migrate_to_stops_after_that_migration(fresh_db):
    done = airmigrate(fresh_db, "migrate", "--to", EMAIL)
    assert done.returncode == 0, out(done)
    assert f"== {PHONE}" not in done.stdout and PHONE not in done.stdout.split("migrate on")[-1]
    assert set(history(fresh_db)) == {EMAIL}
    unknown = airmigrate(fresh_db, "migrate", "--to", "0999_nope")
    assert unknown.returncode == 2 and "no such migration" in unknown.stderr


def test_migrate_stops_at_the_first_failure(fresh_db, tmp_path):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    shutil.copytree(ROOT / "migrations" / EMAIL, migrations / EMAIL)
    for name in ("0102_wrong_backfill", "0103_slow_backfill"):  # validation fails; would run after it
        shutil.copytree(FIXTURES / "migrations" / name, migrations / name)
    env = {"AIRMIGRATE_MIGRATIONS_DIR": str(migrations), "AIRMIGRATE_EXPECTATIONS_DIR": str(FIXTURES / "expectations")}

    refused = airmigrate(fresh_db, "migrate", **env)  # 0102's cleanup drops a column: approval needed up front
    assert refused.returncode == 2 and "0102_wrong_backfill" in refused.stderr and "--approve" in refused.stderr
    assert history(fresh_db) == {}

    done = airmigrate(fresh_db, "migrate", "--approve", **env)
    assert done.returncode == 1, out(done)
    assert re.search(rf"{EMAIL}\s+applied", done.stdout)
    failed = summary_line(done.stdout.split("migrate on")[-1], "0102_wrong_backfill")
    assert "failed" in failed and "expectations failed" in failed
    assert "not run" in summary_line(done.stdout.split("migrate on")[-1], "0103_slow_backfill")
    hist = history(fresh_db)
    assert hist[EMAIL]["status"] == "applied" and hist["0102_wrong_backfill"]["status"] == "failed"
    assert "0103_slow_backfill" not in hist


def test_baseline_records_applied_without_running(fresh_db):
    done = airmigrate(fresh_db, "baseline", "--to", PHONE)
    assert done.returncode == 0, out(done)
    hist = history(fresh_db)
    for migration_id in (EMAIL, PHONE):
        migration = load_migration(ROOT / "migrations" / migration_id, ROOT / "expectations")
        assert hist[migration_id]["status"] == "applied"
        assert hist[migration_id]["applied_by"] == f"baseline by {getpass.getuser()}"
        assert hist[migration_id]["checksum"] == migration.checksum and hist[migration_id]["files"]
    assert not column_exists(fresh_db, "email_verified")  # nothing ran

    again = airmigrate(fresh_db, "baseline", "--to", EMAIL)
    assert again.returncode == 2 and f"{EMAIL} (applied)" in again.stderr

    migrate = airmigrate(fresh_db, "migrate")
    assert migrate.returncode == 0 and "all already applied: nothing to do" in migrate.stdout, out(migrate)


def test_applied_unchanged_run_is_a_green_no_op_and_a_changed_one_is_refused(fresh_db, tmp_path):
    from airmigrate.airflow.runner import report, run_dag, task_rows
    from airmigrate.stages.preflight import check_history, preflight

    assert str(run_dag(EMAIL).state) == "success"
    dagrun = run_dag(EMAIL)
    assert str(dagrun.state) == "success"
    rows = {task_id: task_state for task_id, task_state, _, _ in task_rows(EMAIL, dagrun.run_id)}
    assert rows.pop("preflight") == "success"
    assert set(rows) >= {"backup", "schema_change", "backfill.plan", "validate", "cleanup"}
    assert set(rows.values()) == {"skipped"}, rows
    migration = load_migration(ROOT / "migrations" / EMAIL, ROOT / "expectations")
    assert "already applied: nothing to do" in report(dagrun, migration, fresh_db)
    assert preflight(fresh_db, migration)["already_applied"] is True

    edited = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", edited)
    (edited / EMAIL / "backfill.sql").write_text((edited / EMAIL / "backfill.sql").read_text() + "\n-- edited\n")
    changed = load_migration(edited / EMAIL, ROOT / "expectations")
    with connect(fresh_db, autocommit=True) as conn, pytest.raises(PreflightError) as err:
        check_history(conn, changed)
    assert "files have changed since (backfill.sql changed)" in str(err.value)


def test_until_expand_then_complete(fresh_db, tmp_path):
    migration_id = "0110_drop_last_login"  # its contract drops users.last_login_at (and asks for approval)
    shutil.copytree(FIXTURES / "migrations" / migration_id, tmp_path / "migrations" / migration_id)
    env = {"AIRMIGRATE_MIGRATIONS_DIR": str(tmp_path / "migrations"),
           "AIRMIGRATE_EXPECTATIONS_DIR": str(FIXTURES / "expectations")}

    early = airmigrate(fresh_db, "complete", migration_id, "--approve", **env)
    assert early.returncode == 2 and "not expanded" in early.stderr

    expand = airmigrate(fresh_db, "run", migration_id, "--until", "expand", **env)  # no approval: no contract
    assert expand.returncode == 0, out(expand)
    assert re.search(r"approve_contract\s+skipped", expand.stdout) and re.search(r"cleanup\s+skipped", expand.stdout)
    assert "history: expanded" in expand.stdout and f"airmigrate complete {migration_id}" in expand.stdout
    assert column_exists(fresh_db, "last_login_at")  # the contract did not run
    with connect(fresh_db, autocommit=True) as conn:
        assert state.history(conn, migration_id)["status"] == "expanded"
        run = state.latest_run(conn, migration_id)
        assert run["status"] == "paused" and "validate" in run["completed_stages"]

    left = airmigrate(fresh_db, "migrate", "--approve", **env)  # migrate never contracts behind the team's back
    assert left.returncode == 0, out(left)
    assert "expanded" in summary_line(left.stdout, migration_id) and "running" not in left.stdout
    assert column_exists(fresh_db, "last_login_at")

    unapproved = airmigrate(fresh_db, "complete", migration_id, **env)
    assert unapproved.returncode == 2 and "--approve" in unapproved.stderr

    done = airmigrate(fresh_db, "complete", migration_id, "--approve", **env)
    assert done.returncode == 0, out(done)
    assert re.search(r"cleanup\s+success", done.stdout) and "history: applied" in done.stdout
    assert not column_exists(fresh_db, "last_login_at")
    with connect(fresh_db, autocommit=True) as conn:
        assert state.history(conn, migration_id)["status"] == "applied"
        resumed = state.latest_run(conn, migration_id)
        assert resumed["run_id"] == run["run_id"] and resumed["status"] == "succeeded"  # the same run, resumed


def test_migrate_dag_triggers_each_migration_in_order():
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["airmigrate__migrate"]
    tasks = dag.topological_sort()
    assert [t.task_id for t in tasks] == ["validate_history", *MIGRATIONS]  # validate before applying (issue 17)
    for previous, task in zip(tasks, tasks[1:]):
        assert task.upstream_task_ids == {previous.task_id}
    tasks = tasks[1:]
    for task in tasks:
        assert type(task).__name__ == "TriggerDagRunOperator"
        assert task.trigger_dag_id == task.task_id and task.wait_for_completion and task.poke_interval == 10
        assert [str(s.value) for s in task.failed_states] == ["failed"] and task.logical_date is None
        assert task.deferrable is True and task.reset_dag_run is False and task.fail_when_dag_is_paused is True
    assert dag.params["approve_contract"] is False and dag.max_active_runs == 1
    assert dag.params["ignore_missing"] is False and dag.params["allow_drift"] is False


def test_the_migrate_chains_poke_interval_is_a_setting(monkeypatch):
    """AIRMIGRATE_MIGRATE_POKE_S: the suite's own Airflows poll each triggered run every second, not every 10 s; a
    value that is not seconds fails naming the variable."""
    monkeypatch.setenv("AIRMIGRATE_MIGRATE_POKE_S", "1")
    dags, errors = build_all(ROOT / "migrations", ROOT / "expectations")
    assert errors == []
    triggers = dags["airmigrate__migrate"].topological_sort()[1:]
    assert len(triggers) == len(MIGRATIONS) and all(t.poke_interval == 1 for t in triggers)
    monkeypatch.setenv("AIRMIGRATE_MIGRATE_POKE_S", "1s")
    with pytest.raises(ValueError, match=r"AIRMIGRATE_MIGRATE_POKE_S='1s': expected a number of seconds greater than 0"):
        build_all(ROOT / "migrations", ROOT / "expectations")


def test_plan_says_which_application_versions_work_per_phase():
    email = load_migration(ROOT / "migrations" / EMAIL, ROOT / "expectations")
    assert app_versions(email)[:2] == ("old and new", "old and new")
    drop = load_migration(FIXTURES / "migrations" / "0110_drop_last_login", FIXTURES / "expectations")
    expand, contract, why = app_versions(drop)
    assert (expand, contract) == ("old and new", "new only") and "drop_column last_login_at" in why[0]
    assert "--until expand" in "\n".join(render_app_versions(drop))


def test_a_fixed_failed_migration_resumes_under_migrate_and_is_not_drift_once_applied(fresh_db, tmp_path):
    """Fix the SQL of a migration whose batches failed, run `migrate` again: its failed batches run again
    (retry_failed), it is applied, and history keeps the fixed files (no 'changed since applied')."""
    migrations = tmp_path / "migrations"
    folder = migrations / "0050_scores"
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text("ALTER TABLE users ADD COLUMN IF NOT EXISTS score int;")
    (folder / "down.sql").write_text("ALTER TABLE users DROP COLUMN IF EXISTS score;")
    (folder / "backfill.sql").write_text("UPDATE users SET score = 100 / (id - 20000) WHERE id BETWEEN %(lo)s AND "
                                         "%(hi)s")
    (folder / "migration.yaml").write_text("description: scores\ntable: users\nkey: id\nbatch_size: 5000\nshards: 1\n"
                                           "backfill: {sql: backfill.sql, columns: [score], max_attempts: 1, "
                                           "adaptive: false}\n")
    env = {"AIRMIGRATE_MIGRATIONS_DIR": str(migrations)}
    failed = airmigrate(fresh_db, "migrate", **env)
    assert failed.returncode == 1, out(failed)
    assert "division by zero" in summary_line(failed.stdout.split("migrate on")[-1], "0050_scores")

    (folder / "backfill.sql").write_text("UPDATE users SET score = 100 / greatest(abs(id - 20000), 1) "
                                         "WHERE id BETWEEN %(lo)s AND %(hi)s")
    fixed = airmigrate(fresh_db, "migrate", **env)
    assert fixed.returncode == 0, out(fixed)
    assert re.search(r"0050_scores\s+applied", fixed.stdout)
    listed = airmigrate(fresh_db, "history", **env)
    assert listed.returncode == 0 and "changed" not in listed.stdout, out(listed)
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE score IS NULL").fetchone()[0] == 0


def test_preflight_refusal_is_named_in_the_migrate_summary(empty_db, tmp_path):
    done = airmigrate(empty_db, "migrate", "--to", EMAIL)
    assert done.returncode == 1
    line = summary_line(done.stdout.split("migrate on")[-1], EMAIL)
    assert "failed" in line and "users" in line and "see its report above" not in line, out(done)


def test_lint_refuses_a_changed_applied_migration_and_a_rollback_dry_run_shows_its_sql(fresh_db, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations" / EMAIL, migrations / EMAIL)
    env = {"AIRMIGRATE_MIGRATIONS_DIR": str(migrations)}
    assert airmigrate(fresh_db, "run", EMAIL, **env).returncode == 0
    dry = airmigrate(fresh_db, "run", EMAIL, "--rollback", "--param", "dry_run=true", **env)
    assert dry.returncode == 0, out(dry)
    assert "dry run: nothing was changed; the rollback would run:" in dry.stdout and "already applied" not in dry.stdout
    assert "DROP COLUMN" in dry.stdout and ".;" not in dry.stdout
    assert airmigrate(fresh_db, "lint", str(migrations), **env).returncode == 0
    backfill = migrations / EMAIL / "backfill.sql"
    backfill.write_text(backfill.read_text() + "\n-- changed after it was applied\n")
    changed = airmigrate(fresh_db, "lint", str(migrations), **env)
    assert changed.returncode == 1 and "backfill.sql changed" in changed.stderr, out(changed)
    assert "1 applied migration(s) changed since" in changed.stdout
