"""delete_rows on a real PostgreSQL: batches that delete and archive in one transaction, the preflight naming
referencing rows, VACUUM between batches, the rollback putting every row back, the contract's wait."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import table_checksum
from test_operations import Application, apply_all, assert_app_healthy, make_migration, q, roll_back

from airmigrate.airflow.runner import run_dag
from airmigrate.db import connect
from airmigrate.errors import PreflightError, SpecError
from airmigrate.lint import lint_migration, unacknowledged
from airmigrate.stages import backfill, backup, cleanup, preflight, schema_change

WHERE = "id %% 3 = 0 AND country <> 'ZZ'"  # yaml holds `id % 3`; the %% here is for q()
MATCHING = f"SELECT count(*) FROM users WHERE {WHERE}"


def delete_op(**extra) -> dict:
    return {"op": "delete_rows", "where": "id % 3 = 0 AND country <> 'ZZ'", **extra}


def untouched_md5(target, touched, table: str = "users") -> str:
    return q(target, f"SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {table} t WHERE id <= 30000 "
                     "AND NOT id = ANY(%s)", (list(touched),))[0][0]


def keep_original(target) -> None:
    with connect(target) as conn:
        conn.execute("CREATE TABLE users_before AS SELECT * FROM users")
        conn.commit()


def test_delete_rows_archives_each_row_once_and_rolls_back_identical(fresh_db, tmp_path):
    keep_original(fresh_db)
    migration = make_migration(tmp_path, delete_op(vacuum_dead_tuples=1000), batch_size=2000)
    with Application(fresh_db, columns={}) as app:
        run_id = apply_all(fresh_db, migration)
    assert_app_healthy(app)
    assert q(fresh_db, MATCHING + " AND id <= 30000")[0][0] == 0
    assert q(fresh_db, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'users'")[0][0] >= 2
    archived = q(fresh_db, 'SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE id <= 30000) '
                           'FROM airmigrate."archive_0050_delete_rows"')[0]
    assert archived[0] == archived[1] and archived[2] == 10000  # every matching row once, none twice
    deleted = q(fresh_db, "SELECT sum(rows) FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded'",
                (run_id,))[0][0]
    assert deleted == archived[0]
    with Application(fresh_db, columns={}) as during_rollback:
        roll_back(fresh_db, migration)
    assert_app_healthy(during_rollback)
    assert q(fresh_db, "SELECT to_regclass('airmigrate.\"archive_0050_delete_rows\"')")[0][0] is None
    assert q(fresh_db, "SELECT count(*) FROM users WHERE id <= 30000")[0][0] == 30000
    # every row no application statement wrote is md5-identical to the original
    touched = set(app.writes) | set(during_rollback.writes)
    assert untouched_md5(fresh_db, touched) == untouched_md5(fresh_db, touched, "users_before")


def test_delete_rows_rollback_without_application_is_md5_identical(fresh_db, tmp_path):
    before = table_checksum(fresh_db)
    migration = make_migration(tmp_path, delete_op())
    apply_all(fresh_db, migration)
    assert q(fresh_db, MATCHING)[0][0] == 0
    assert q(fresh_db, 'SELECT count(*) FROM airmigrate."archive_0050_delete_rows"')[0][0] == 10000
    roll_back(fresh_db, migration)
    assert table_checksum(fresh_db) == before


def test_contract_waits_for_keep_archive_days(fresh_db, tmp_path):
    migration = make_migration(tmp_path, delete_op(keep_archive_days=3))
    run_id = apply_all(fresh_db, migration)
    with pytest.raises(Exception, match="keep_archive_days"):
        cleanup.cleanup(fresh_db, migration, run_id)
    assert q(fresh_db, 'SELECT count(*) FROM airmigrate."archive_0050_delete_rows"')[0][0] == 10000
    with connect(fresh_db) as conn:  # three days later
        conn.execute("UPDATE airmigrate.batches SET finished_at = finished_at - interval '3 days 1 minute'")
        conn.commit()
    cleanup.cleanup(fresh_db, migration, run_id)
    assert q(fresh_db, "SELECT to_regclass('airmigrate.\"archive_0050_delete_rows\"')")[0][0] is None


WORKER = """
import sys
from airmigrate.db import Target
from airmigrate.spec import load_migration
from airmigrate.stages.backfill import run_shard
run_shard(Target.from_url(sys.argv[1]), load_migration(sys.argv[2]), int(sys.argv[3]), app_latency_ratio=None)
"""


def kill_9_at_random_moments_then_resume(target, migration, done_query: str, assert_consistent, expected: int):
    """Run the batches in a worker process killed with SIGKILL at random moments after it made progress (three
    times, checking `assert_consistent` after each kill), then resume in this process to the end. `done_query`
    counts the rows handled so far; returns the run's id. Shared by the delete_rows and move_rows tests. At full
    speed (app_latency_ratio=None): the subject is the kills, not pacing (paced, the resume crawled: see the
    commit)."""
    with connect(target) as conn:  # ~1 ms per matching row: the run lasts long enough to be killed in it
        conn.execute("CREATE FUNCTION slow_true() RETURNS boolean LANGUAGE plpgsql VOLATILE AS "
                     "$$ BEGIN PERFORM pg_sleep(0.001); RETURN true; END $$")
        conn.commit()
    run_id = preflight.preflight(target, migration)["run_id"]
    backup.backup(target, migration, run_id)
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id)
    rng = random.Random(21)
    done = 0
    for _ in range(3):
        worker = subprocess.Popen([sys.executable, "-c", WORKER, target.url(), str(migration.folder), str(run_id)])
        deadline = time.monotonic() + 60
        while q(target, done_query)[0][0] <= done and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.4))
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        done = q(target, done_query)[0][0]
        assert_consistent(target)
    assert 0 < done < expected, "the kills must land in the middle of the run"
    backfill.run_shard(target, migration, run_id, app_latency_ratio=None)
    assert_consistent(target)
    assert q(target, done_query)[0][0] == expected
    assert q(target, "SELECT sum(rows) FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded'",
             (run_id,))[0][0] == expected
    return run_id


def test_kill_9_at_random_moments_then_resume_loses_nothing_and_archives_nothing_twice(fresh_db, tmp_path):
    migration = make_migration(tmp_path, {"op": "delete_rows", "where": "id % 3 = 0 AND slow_true()"},
                               batch_size=600)
    kill_9_at_random_moments_then_resume(fresh_db, migration, ARCHIVED, assert_consistent, 10000)
    assert q(fresh_db, "SELECT count(*) FROM users WHERE id %% 3 = 0")[0][0] == 0


ARCHIVED = 'SELECT count(*) FROM airmigrate."archive_0050_delete_rows"'


def assert_consistent(target) -> None:
    """Every row is in exactly one place: the table or the archive; the archive holds only matching rows."""
    total, distinct, wrong = q(target, 'SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE id %% 3 <> 0) '
                                       'FROM (SELECT id FROM users UNION ALL '
                                       'SELECT id FROM airmigrate."archive_0050_delete_rows") x')[0]
    assert (total, distinct) == (30000, 30000)
    assert q(target, 'SELECT count(*) FROM airmigrate."archive_0050_delete_rows" WHERE id %% 3 <> 0')[0][0] == 0


def write_dag_migration(root, **op) -> None:
    """A migrations folder holding one delete_rows migration, with a suite proving no row matches any more."""
    (root / "migrations" / "0001_delete_every_third_user").mkdir(parents=True)
    (root / "expectations").mkdir()
    spec = {"description": "delete every third user", "table": "users", "batch_size": 3000,
            "operations": [{"op": "delete_rows", "where": "id % 3 = 0", **op}]}
    (root / "migrations" / "0001_delete_every_third_user" / "migration.yaml").write_text(yaml.safe_dump(spec))
    suite = {"name": "0001_delete_every_third_user", "expectations": [
        {"type": "unexpected_rows_expectation",
         "kwargs": {"unexpected_rows_query": "SELECT id FROM {batch} WHERE id % 3 = 0",
                    "description": "no row matches `where` any more"}}]}
    (root / "expectations" / "0001_delete_every_third_user.json").write_text(json.dumps(suite))


def test_through_airflow_expand_then_rollback_dag_then_contract_after_keep_days(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(tmp_path / "migrations"))
    monkeypatch.setenv("AIRMIGRATE_EXPECTATIONS_DIR", str(tmp_path / "expectations"))
    write_dag_migration(tmp_path, keep_archive_days=1)
    before = table_checksum(fresh_db)
    dagrun = run_dag("0001_delete_every_third_user", {"until": "expand"})
    assert str(dagrun.state) == "success"
    assert q(fresh_db, "SELECT count(*) FROM users")[0][0] == 20000
    assert q(fresh_db, 'SELECT count(*) FROM airmigrate."archive_0001_delete_every_third_user"')[0][0] == 10000
    assert q(fresh_db, "SELECT status FROM airmigrate.history")[0][0] == "expanded"

    dagrun = run_dag("0001_delete_every_third_user__rollback", {"approve_rollback": True})
    assert str(dagrun.state) == "success"
    assert table_checksum(fresh_db) == before
    assert q(fresh_db, "SELECT to_regclass('airmigrate.\"archive_0001_delete_every_third_user\"')")[0][0] is None

    # the whole way: the contract refuses to drop a one-day-old archive (the run fails, nothing is dropped) ...
    dagrun = run_dag("0001_delete_every_third_user", {"approve_contract": True})
    assert str(dagrun.state) == "failed"
    assert q(fresh_db, 'SELECT count(*) FROM airmigrate."archive_0001_delete_every_third_user"')[0][0] == 10000
    # ... and a day later the same run goes on from its contract and drops it
    with connect(fresh_db) as conn:
        conn.execute("UPDATE airmigrate.batches SET finished_at = finished_at - interval '25 hours'")
        conn.commit()
    dagrun = run_dag("0001_delete_every_third_user", {"approve_contract": True})
    assert str(dagrun.state) == "success"
    assert q(fresh_db, "SELECT to_regclass('airmigrate.\"archive_0001_delete_every_third_user\"')")[0][0] is None
    assert q(fresh_db, "SELECT status FROM airmigrate.history")[0][0] == "applied"
    assert q(fresh_db, "SELECT count(*) FROM users")[0][0] == 20000


def test_preflight_names_rows_of_other_tables_that_reference_deleted_ones(fresh_db, tmp_path):
    with connect(fresh_db) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, user_id bigint REFERENCES users (id))")
        conn.execute("CREATE TABLE visits (id int PRIMARY KEY, user_id bigint REFERENCES users (id) "
                     "ON DELETE CASCADE)")
        conn.execute("INSERT INTO orders VALUES (1, 3), (2, 4)")  # 3 matches `where`, 4 does not
        conn.execute("INSERT INTO visits VALUES (1, 6)")
        conn.commit()
    migration = make_migration(tmp_path, delete_op())
    with pytest.raises(PreflightError) as refused:
        preflight.preflight(fresh_db, migration)
    text = str(refused.value)
    assert "1 row(s) of public.orders" in text and "orders_user_id_fkey" in text and "NO ACTION" in text
    assert "public.visits" in text and "CASCADE" in text and "outside the archive" in text
    assert q(fresh_db, "SELECT count(*) FROM users")[0][0] == 30000
    assert q(fresh_db, "SELECT to_regclass('airmigrate.runs')")[0][0] is None or \
        q(fresh_db, "SELECT count(*) FROM airmigrate.runs")[0][0] == 0


def test_archive_none_needs_an_acknowledgement_and_keeps_a_pg_dump(fresh_db, tmp_path):
    migration = make_migration(tmp_path, delete_op(archive="none"))
    refused = unacknowledged(lint_migration(migration))
    assert [f.rule for f in refused] == ["delete-without-archive"]
    with pytest.raises(PreflightError, match="delete-without-archive"):
        preflight.preflight(fresh_db, migration)
    (tmp_path / "ack").mkdir()
    migration = make_migration(tmp_path / "ack", delete_op(archive="none"), acknowledge=[
        {"rule": "delete-without-archive", "reason": "personal data past its retention period must not be kept"}])
    assert unacknowledged(lint_migration(migration)) == []
    run_id = apply_all(fresh_db, migration)
    assert q(fresh_db, MATCHING)[0][0] == 0
    facts = q(fresh_db, "SELECT facts FROM airmigrate.runs WHERE run_id = %s", (run_id,))[0][0]
    assert facts["backup_path"] and "without an archive" in facts["backup_reason"]
    assert q(fresh_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'airmigrate' AND tablename LIKE "
                       "'archive%%'")[0][0] == 0


def test_spec_refuses_delete_rows_beside_other_changes_and_a_broken_condition(tmp_path):
    with pytest.raises(SpecError) as beside:
        make_migration(tmp_path, delete_op(), backfill={"sql": "backfill.sql", "columns": ["phone"]})
    assert "only operation" in str(beside.value) and "migration.yaml" in str(beside.value)
    (tmp_path / "b").mkdir()
    with pytest.raises(SpecError) as broken:
        make_migration(tmp_path / "b", delete_op(where="id < 3; DROP TABLE users"))
    assert "where" in str(broken.value)


def test_plan_shows_matching_rows_batches_and_wal(fresh_db, tmp_path):
    from airmigrate import plan

    migration = make_migration(tmp_path, delete_op(where="id <= 10000"))
    with connect(fresh_db) as conn:
        text = plan.render(migration, plan.static_plan(migration, conn), plan.estimate(conn, migration))
    assert "WITH d AS (DELETE FROM" in text
    matching = int(text.split("delete_rows: ~")[1].split(" rows")[0].replace(",", ""))
    assert 9000 < matching < 11000  # the planner's estimate of the 10,000
    assert "kept in airmigrate.archive_0050_delete_rows" in text and "WAL ~" in text
