"""The DDL executor: statement grouping (as strings) and lock-timeout retries against a real PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from airmigrate.db import connect, group_statements, run_ddl, split_statements
from airmigrate.errors import TransientError

UP = """
ALTER TABLE users ADD COLUMN a int;
ALTER TABLE users ADD COLUMN b int;
CREATE INDEX CONCURRENTLY i_a ON users (a);
COMMENT ON COLUMN users.a IS 'x; y';
"""


def test_concurrent_statements_run_alone_the_rest_grouped():
    groups = group_statements(split_statements(UP))
    assert [(auto, len(stmts)) for auto, stmts in groups] == [(False, 2), (True, 1), (False, 1)]
    assert groups[2][1][0] == "COMMENT ON COLUMN users.a IS 'x; y'"


def test_validate_constraint_runs_in_a_transaction_of_its_own():
    """NOT VALID, then VALIDATE alone: the scan must not run under ADD CONSTRAINT's ACCESS EXCLUSIVE lock."""
    groups = group_statements(split_statements(
        "ALTER TABLE users ADD CONSTRAINT c CHECK (id > 0) NOT VALID; ALTER TABLE users VALIDATE CONSTRAINT c; "
        "ALTER TABLE users ALTER COLUMN id SET NOT NULL; ALTER TABLE users DROP CONSTRAINT c;"))
    assert [(auto, [s.split()[3] for s in stmts]) for auto, stmts in groups] == \
        [(False, ["ADD"]), (False, ["VALIDATE"]), (False, ["ALTER", "DROP"])]


def hold_lock(target, seconds, ready):
    with connect(target) as conn:
        conn.execute("LOCK TABLE users IN ACCESS SHARE MODE")
        ready.set()
        time.sleep(seconds)


def test_lock_timeout_is_retried_until_the_lock_is_free(fresh_db, caplog):
    ready = threading.Event()
    holder = threading.Thread(target=hold_lock, args=(fresh_db, 1.5, ready))
    holder.start()
    ready.wait()
    started = time.monotonic()
    run_ddl(fresh_db, "ALTER TABLE users ADD COLUMN c int", lock_timeout_ms=100, attempts=10,
            table=("public", "users"))
    holder.join()
    assert time.monotonic() - started >= 1.0
    assert "lock timeout on attempt 1" in caplog.text
    assert "idle in transaction, transaction open" in caplog.text and "LOCK TABLE users" in caplog.text
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE column_name = 'c'").fetchone()[0]


def test_lock_timeout_gives_up_with_a_transient_error_and_changes_nothing(fresh_db):
    ready = threading.Event()
    holder = threading.Thread(target=hold_lock, args=(fresh_db, 3, ready))
    holder.start()
    ready.wait()
    with pytest.raises(TransientError, match="lock_timeout"):
        run_ddl(fresh_db, "ALTER TABLE users ADD COLUMN d int; ALTER TABLE users ADD COLUMN e int",
                lock_timeout_ms=50, attempts=2, table=("public", "users"))
    holder.join()
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE column_name IN ('d', 'e')"
                            ).fetchone()[0] == 0


def test_invalid_index_from_a_failed_concurrent_build_is_rebuilt(fresh_db):
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE users SET country = 'XX' WHERE id IN (1, 2)")
        conn.execute("ALTER TABLE users ADD COLUMN code text")
        conn.execute("UPDATE users SET code = 'c' || id")
        conn.execute("UPDATE users SET code = 'dup' WHERE id IN (1, 2)")
    statement = "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_code ON users (code)"
    with pytest.raises(Exception, match="could not create unique index"):
        run_ddl(fresh_db, statement, table=("public", "users"))
    with connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'uq_code'::regclass").fetchone() \
            == (False,)
        conn.execute("UPDATE users SET code = 'c2' WHERE id = 2")  # the cause fixed
    run_ddl(fresh_db, statement, table=("public", "users"))
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'uq_code'::regclass").fetchone() \
            == (True,)
