"""The example migrations end to end through Airflow (dag.test) on a fresh database, then their rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from airmigrate import state
from airmigrate.airflow.runner import report, run_dag, task_rows
from airmigrate.db import connect
from airmigrate.spec import load_migration
from conftest import table_checksum

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def scalar(target, query, params=()):
    with connect(target) as conn:
        return conn.execute(query, params).fetchone()[0]


def index_exists(target, name):
    return scalar(target, "SELECT to_regclass(%s) IS NOT NULL", (f"public.{name}",))


def column_exists(target, column):
    return scalar(target, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' "
                          "AND column_name = %s", (column,)) == 1


@pytest.fixture
def fixture_migrations(monkeypatch):
    """Point the DAG file at the test-only migrations (overwrite, broken backfill, slow backfill)."""
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(FIXTURES / "migrations"))
    monkeypatch.setenv("AIRMIGRATE_EXPECTATIONS_DIR", str(FIXTURES / "expectations"))


def test_0001_applies_then_rolls_back_to_an_identical_table(fresh_db):
    before = table_checksum(fresh_db)
    dagrun = run_dag("0001_add_user_email_verified", {"batch_size": 3000})
    assert str(dagrun.state) == "success"

    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE email_verified IS DISTINCT FROM "
                            "(email_confirmed_at IS NOT NULL)") == 0
    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE email_verified") > 0
    assert index_exists(fresh_db, "idx_users_email_verified")
    migration = load_migration(ROOT / "migrations" / "0001_add_user_email_verified", ROOT / "expectations")
    with connect(fresh_db) as conn:
        hist = state.history(conn, migration.id)
        run = state.latest_run(conn, migration.id)
        batches = state.batch_summary(conn, run["run_id"])
    assert hist["status"] == "applied" and hist["checksum"] == migration.checksum and hist["applied_by"]
    assert run["status"] == "succeeded" and run["facts"]["validation"] == "passed"
    assert batches["total"] == batches["succeeded"] >= 4 and batches["failed"] == 0  # ~30,000 rows, 3,000 to start
    # backup: auto, and 0001 only adds a column and an index: no pg_dump (tests/test_backup_policy.py has those)
    assert hist["backup_path"] is None and "no pg_dump" in run["facts"]["backup_reason"]
    text = report(dagrun, migration, fresh_db)
    assert "backfill.shard x2" in text and "validation: passed" in text and "backup: none" in text
    assert fresh_db.password is None or fresh_db.password not in text

    dagrun = run_dag("0001_add_user_email_verified__rollback", {"approve_rollback": True})
    assert str(dagrun.state) == "success"
    assert not column_exists(fresh_db, "email_verified")
    assert not index_exists(fresh_db, "idx_users_email_verified")
    assert table_checksum(fresh_db) == before
    with connect(fresh_db) as conn:
        assert state.history(conn, migration.id)["status"] == "rolled_back"


def test_0002_pandas_transform_normalises_phones(fresh_db):
    from airmigrate.lifecycle.migrate import baseline

    baseline(fresh_db, "0001_add_user_email_verified")  # folder order: 0001 first (recorded, not run: not this test)
    dagrun = run_dag("0002_normalize_user_phone")
    assert str(dagrun.state) == "success"
    with connect(fresh_db) as conn:
        rows = dict(conn.execute("SELECT phone, phone_e164 FROM users WHERE id IN (1, 2, 3, 4, 5, 6)").fetchall())
        missing = conn.execute("SELECT count(*) FROM users WHERE phone ~ '[0-9]{7}' AND phone_e164 IS NULL")
        assert missing.fetchone()[0] == 0
    # id 1..6 cover the six phone formats of the seed (see airmigrate.devdb.USERS_SEED)
    assert rows["(201) 555-0001"] == "+12015550001"
    assert rows["+44 20 7946 0002"] == "+442079460002"
    assert rows["1-203-555-0003"] == "+12035550003"
    assert rows["0049 30 00000004"] == "+493000000004"
    assert rows["n/a"] is None
    assert rows[None] is None


def test_dry_run_changes_nothing(fresh_db):
    before = table_checksum(fresh_db)
    dagrun = run_dag("0001_add_user_email_verified", {"dry_run": True})
    assert str(dagrun.state) == "success"
    assert table_checksum(fresh_db) == before
    assert not column_exists(fresh_db, "email_verified")
    assert scalar(fresh_db, "SELECT to_regclass('airmigrate.history') IS NULL")


def test_applied_migration_is_done_and_a_changed_one_is_named(fresh_db, tmp_path, monkeypatch):
    assert str(run_dag("0001_add_user_email_verified").state) == "success"
    dagrun = run_dag("0001_add_user_email_verified")  # applied, unchanged: a green run that does nothing
    assert str(dagrun.state) == "success"
    states = {task_id: task_state for task_id, task_state, _, _ in task_rows("0001_add_user_email_verified",
                                                                                dagrun.run_id)}
    assert states["preflight"] == "success" and states["schema_change"] == "skipped"
    with connect(fresh_db) as conn:
        assert state.history(conn, "0001_add_user_email_verified")["status"] == "applied"

    import shutil
    edited = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", edited)
    (edited / "0001_add_user_email_verified" / "up.sql").write_text("SELECT 1;\n")
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(edited))
    from airmigrate.errors import PreflightError
    from airmigrate.stages.preflight import preflight

    with pytest.raises(PreflightError, match="files have changed since"):
        preflight(fresh_db, load_migration(edited / "0001_add_user_email_verified", ROOT / "expectations"))


def test_overwritten_values_are_restored_by_rollback(fresh_db, fixture_migrations):
    before = table_checksum(fresh_db)
    assert str(run_dag("0101_uppercase_names").state) == "success"
    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE full_name <> upper(full_name)") == 0
    assert scalar(fresh_db, "SELECT count(*) FROM airmigrate.snapshot_0101_uppercase_names") == 30_000

    assert str(run_dag("0101_uppercase_names__rollback").state) == "success"
    assert table_checksum(fresh_db) == before
    assert not index_exists(fresh_db, "idx_users_full_name")
    assert scalar(fresh_db, "SELECT to_regclass('airmigrate.snapshot_0101_uppercase_names') IS NULL")


def test_failed_validation_stops_before_cleanup(fresh_db, fixture_migrations):
    dagrun = run_dag("0102_wrong_backfill")
    assert str(dagrun.state) == "failed"
    assert column_exists(fresh_db, "email_confirmed_at"), "cleanup (destructive) must not run"
    migration = load_migration(FIXTURES / "migrations" / "0102_wrong_backfill", FIXTURES / "expectations")
    with connect(fresh_db) as conn:
        run = state.latest_run(conn, migration.id)
        hist = state.history(conn, migration.id)
    assert hist["status"] == "failed" and "expectations failed" in hist["error"]  # never a stale `running`
    assert run["status"] == "failed" and "expectations failed" in run["error"]
    assert "airmigrate run 0102_wrong_backfill --rollback" in run["error"]  # the schema is expanded: how back
    assert "unexpected_rows_expectation" in run["error"] or "email_verified" in run["error"]
    text = report(dagrun, migration, fresh_db)
    assert "validation: failed" in text and "cleanup" in text
