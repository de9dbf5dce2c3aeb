"""move_rows on a real PostgreSQL: batches moving rows into another table with both tables consistent at every
commit, kill -9 safe, and a rollback moving them back."""

from __future__ import annotations

import threading

import pytest
from test_delete_rows import keep_original, kill_9_at_random_moments_then_resume, untouched_md5
from test_operations import Application, apply_all, assert_app_healthy, make_migration, q, roll_back

from airmigrate.db import connect
from airmigrate.errors import PreflightError, SpecError
from airmigrate.lint import lint_migration, unacknowledged
from airmigrate.stages import preflight

ARCHIVE = 'airmigrate."archive_0050_move_rows"'


def move_op(**extra) -> dict:
    return {"op": "move_rows", "to": "users_archive", "where": "id % 3 = 0", **extra}


class Watcher(threading.Thread):
    """Counts table + destination in one snapshot, again and again: every commit must keep the sum."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.target, self.stop, self.sums = target, threading.Event(), set()

    def run(self):
        with connect(self.target, autocommit=True) as conn:
            while not self.stop.is_set():
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    total = conn.execute("SELECT count(*) FROM users WHERE id <= 30000").fetchone()[0]
                    if conn.execute("SELECT to_regclass('users_archive')").fetchone()[0] is not None:
                        total += conn.execute("SELECT count(*) FROM users_archive WHERE id <= 30000").fetchone()[0]
                    self.sums.add(total)


def test_move_rows_into_a_created_table_consistent_at_every_commit_then_back(fresh_db, tmp_path):
    keep_original(fresh_db)
    migration = make_migration(tmp_path, move_op(create=True), batch_size=1500)
    watcher = Watcher(fresh_db)
    watcher.start()
    with Application(fresh_db, columns={}) as app:
        run_id = apply_all(fresh_db, migration)
    watcher.stop.set()
    watcher.join(10)
    assert_app_healthy(app)
    assert watcher.sums == {30000}, "a commit left a row in both tables or in none"
    assert q(fresh_db, "SELECT count(*) FROM users WHERE id %% 3 = 0 AND id <= 30000")[0][0] == 0
    assert q(fresh_db, "SELECT count(*) FROM users_archive WHERE id <= 30000")[0][0] == 10000
    moved = q(fresh_db, "SELECT sum(rows) FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded'",
              (run_id,))[0][0]
    assert moved == q(fresh_db, f"SELECT count(*) FROM {ARCHIVE}")[0][0] == q(
        fresh_db, "SELECT count(*) FROM users_archive")[0][0]

    with Application(fresh_db, columns={}) as during_rollback:
        roll_back(fresh_db, migration)
    assert_app_healthy(during_rollback)
    assert q(fresh_db, "SELECT count(*) FROM users WHERE id <= 30000")[0][0] == 30000
    touched = set(app.writes) | set(during_rollback.writes)
    assert untouched_md5(fresh_db, touched) == untouched_md5(fresh_db, touched, "users_before")
    assert q(fresh_db, f"SELECT to_regclass('{ARCHIVE}')")[0][0] is None
    assert q(fresh_db, "SELECT to_regclass('users_archive')")[0][0] is None  # created by it, empty again


def test_move_rows_with_computed_columns_into_an_existing_table(fresh_db, tmp_path):
    with connect(fresh_db) as conn:
        conn.execute("CREATE TABLE users_archive (id bigint PRIMARY KEY, email text NOT NULL, "
                     "moved_at timestamptz NOT NULL)")
        conn.commit()
    before = q(fresh_db, "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM users t")[0][0]
    migration = make_migration(tmp_path, move_op(columns={"id": "id", "email": "lower(email)",
                                                          "moved_at": "now()"}))
    apply_all(fresh_db, migration)
    assert q(fresh_db, "SELECT count(*), count(*) FILTER (WHERE email = lower(email)) FROM users_archive")[0] == \
        (10000, 10000)
    roll_back(fresh_db, migration)
    assert q(fresh_db, "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM users t")[0][0] == before
    assert q(fresh_db, "SELECT count(*) FROM users_archive")[0][0] == 0  # it existed before: kept, empty


MOVED = "SELECT count(*) FROM users_archive"


def assert_each_row_in_one_place(target) -> None:
    """Every row is in exactly one of the table and the destination, the destination holds only matching rows,
    and the archive the same keys as the destination (nothing moved twice, nothing lost)."""
    assert q(target, "SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM users UNION ALL "
                     "SELECT id FROM users_archive) x")[0] == (30000, 30000)
    assert q(target, "SELECT count(*) FROM users_archive WHERE id %% 3 <> 0")[0][0] == 0
    assert q(target, f"SELECT count(*) FROM users_archive d FULL JOIN {ARCHIVE} a USING (id) "
                     "WHERE d.id IS NULL OR a.id IS NULL")[0][0] == 0


def test_kill_9_at_random_moments_then_resume_moves_nothing_twice_and_loses_nothing(fresh_db, tmp_path):
    migration = make_migration(tmp_path, move_op(where="id % 3 = 0 AND slow_true()", create=True), batch_size=600)
    kill_9_at_random_moments_then_resume(fresh_db, migration, MOVED, assert_each_row_in_one_place, 10000)
    assert q(fresh_db, "SELECT count(*) FROM users WHERE id %% 3 = 0")[0][0] == 0
    assert q(fresh_db, f"SELECT count(*) FROM {ARCHIVE}")[0][0] == 10000


def test_move_rows_refusals(fresh_db, tmp_path):
    migration = make_migration(tmp_path, move_op())
    with pytest.raises(PreflightError, match="users_archive does not exist"):
        preflight.preflight(fresh_db, migration)
    (tmp_path / "b").mkdir()
    with pytest.raises(SpecError, match="create: true"):
        make_migration(tmp_path / "b", move_op(create=True, columns={"id": "id"}))
    (tmp_path / "c").mkdir()
    assert unacknowledged(lint_migration(make_migration(tmp_path / "c", move_op(create=True)))) == []
