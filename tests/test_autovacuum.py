"""run_group against a REAL autovacuum, on a scratch PostgreSQL cluster of its own.

An autovacuum holds SHARE UPDATE EXCLUSIVE on the table it vacuums and gives it up only to a lock waiter that
has waited deadlock_timeout (1 s): under a shorter lock_timeout every retry fails. run_group must notice the
autovacuum (BlockerProbe) and raise the next attempt's lock_timeout above deadlock_timeout, so that PostgreSQL
itself cancels the autovacuum.

The cluster is our own (temp dir, free port on 127.0.0.1, autovacuum_naptime=1): the shared server is never
reconfigured. The table's storage parameters make autovacuum start at once and crawl (cost_limit=1,
cost_delay=100 ms: a page every 0.1-0.4 s), so it is reliably still running while we test.
"""

from __future__ import annotations

import logging
import os
import re
import time

import psycopg
import pytest
from psycopg import sql

from airmigrate import db
from airmigrate.engines.postgres import ddl
from airmigrate.errors import TransientError

from polling import wait_for
from scratch import scratch_cluster

LOCK_TIMEOUT_MS = 300
ALTER = "ALTER TABLE t ADD COLUMN x int"
ROWS = 100_000  # ~1,600 heap pages: at 0.1-0.4 s a page the autovacuum needs many minutes


# --------------------------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def scratch_pg():
    with scratch_cluster(prefix="airmigrate-autovacuum-") as cluster:
        yield cluster


def _autovacuum_on_t(conn) -> tuple[int, str] | None:
    """(pid, query) of an autovacuum worker vacuuming t that holds its SHARE UPDATE EXCLUSIVE lock."""
    return conn.execute(
        "SELECT a.pid, a.query FROM pg_stat_activity a "
        "JOIN pg_locks l ON l.pid = a.pid AND l.relation = 't'::regclass AND l.granted "
        "AND l.mode = 'ShareUpdateExclusiveLock' "
        "JOIN pg_stat_progress_vacuum p ON p.pid = a.pid AND p.relid = 't'::regclass "
        "WHERE a.backend_type = 'autovacuum worker'").fetchone()


@pytest.fixture
def vacuumed_table(scratch_pg):
    """A fresh database whose table t is being (slowly) autovacuumed; yields (target, autovacuum pid)."""
    admin = scratch_pg.target()
    name = f"av_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with db.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = scratch_pg.target(name)
    with db.connect(target, autocommit=True) as conn:  # closing it flushes the stats (n_dead_tup) at once
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO t SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, %s) g", (ROWS,))
        conn.execute("DELETE FROM t WHERE id % 10 <> 0")
        conn.execute("ALTER TABLE t SET (autovacuum_enabled = on, autovacuum_vacuum_threshold = 0, "
                     "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, "
                     "autovacuum_vacuum_cost_limit = 1)")
    with db.connect(target, autocommit=True) as conn:
        pid, query = wait_for(lambda: _autovacuum_on_t(conn), 60, "an autovacuum worker to start on t")
    assert "wraparound" not in query, query
    yield target, pid
    with db.connect(admin, autocommit=True) as conn:  # DROP DATABASE also ends the database's autovacuum
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _has_column_x(target) -> bool:
    with db.connect(target, autocommit=True) as conn:
        return bool(conn.execute("SELECT count(*) FROM information_schema.columns "
                                 "WHERE table_name = 't' AND column_name = 'x'").fetchone()[0])


def _still_vacuuming(target, pid: int) -> bool:
    with db.connect(target, autocommit=True) as conn:
        found = _autovacuum_on_t(conn)
    return bool(found) and found[0] == pid


def _deadlock_timeout_ms(target) -> int:
    with db.connect(target, autocommit=True) as conn:
        return conn.execute("SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'").fetchone()[0]


# ----------------------------------------------------------------------------------------------- tests

def test_control_short_lock_timeout_never_gets_past_the_autovacuum(vacuumed_table):
    """Without the fix: a waiter under lock_timeout < deadlock_timeout fails every time, and the very same
    autovacuum keeps running (it never yielded). Proves the autovacuum really blocks in this setup."""
    target, av_pid = vacuumed_table
    assert _deadlock_timeout_ms(target) == 1000
    with db.connect(target, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
        for attempt in range(3):
            with pytest.raises(psycopg.errors.LockNotAvailable):
                conn.execute(ALTER)
    assert _still_vacuuming(target, av_pid), "the autovacuum should have kept its lock"
    assert not _has_column_x(target)


def test_run_group_without_raising_the_lock_timeout_fails_behind_the_autovacuum(vacuumed_table, monkeypatch,
                                                                               caplog):
    """The old behaviour (every retry under the same 300 ms): run_group gives up with a TransientError."""
    target, av_pid = vacuumed_table
    monkeypatch.setattr(ddl, "_next_lock_timeout", lambda target, blockers, lock_timeout_ms, *rest: lock_timeout_ms)
    caplog.set_level(logging.INFO, logger="airmigrate.engines.postgres.ddl")
    with pytest.raises(TransientError, match=r"lock_timeout \(300 ms\) hit 3 times") as raised:
        db.run_group(target, [ALTER], False, lock_timeout_ms=LOCK_TIMEOUT_MS, statement_timeout_ms=60_000,
                     attempts=3, table=("public", "t"))
    assert f"pid {av_pid}" in str(raised.value) and "autovacuum: VACUUM" in str(raised.value)
    assert _still_vacuuming(target, av_pid)
    assert not _has_column_x(target)


def test_run_group_gets_past_a_real_autovacuum(vacuumed_table, scratch_pg, caplog):
    target, av_pid = vacuumed_table
    deadlock_ms = _deadlock_timeout_ms(target)
    caplog.set_level(logging.INFO, logger="airmigrate.engines.postgres.ddl")
    started = time.monotonic()
    db.run_group(target, [ALTER], False, lock_timeout_ms=LOCK_TIMEOUT_MS, statement_timeout_ms=60_000,
                 attempts=5, table=("public", "t"))
    elapsed = time.monotonic() - started
    assert _has_column_x(target)

    retries = [r.getMessage() for r in caplog.records
               if r.name == "airmigrate.engines.postgres.ddl" and r.getMessage().startswith("lock timeout on attempt")]
    assert retries, caplog.text
    # an attempt under 300 ms was blocked by the autovacuum, which the probe named (normally attempt 1; a probe
    # that connects too late on a loaded machine sees no blocker any more, and that attempt is retried as is)
    named = [i for i, m in enumerate(retries) if f"pid {av_pid} " in m and "autovacuum: VACUUM" in m]
    assert named, retries
    assert "lock_timeout 300 ms" not in retries[named[0]]
    raised = [int(re.search(r"with lock_timeout (\d+) ms$", m).group(1)) for m in retries[named[0]:]]
    # ... and from then on every attempt waited past deadlock_timeout, so PostgreSQL could cancel the autovacuum
    assert all(ms == deadlock_ms + 250 > deadlock_ms for ms in raised), (raised, deadlock_ms)

    # PostgreSQL itself cancelled that autovacuum for our waiter, once it had waited deadlock_timeout
    # (log_lock_waits: the waiter logs "still waiting ..." or, if the lock came already, "acquired ...")
    cancelled = f"[{av_pid}] ERROR:  canceling autovacuum task"
    waited = re.compile(r"process \d+ (?:still waiting for|acquired) AccessExclusiveLock on relation \d+ "
                        r"of database \d+ after (\d+)\.\d+ ms")

    def logged():
        text = scratch_pg.log()
        return text if cancelled in text and waited.search(text) else None

    log_text = wait_for(logged, 30, f"the cancel of autovacuum {av_pid} in the server log {scratch_pg.logfile}")
    assert int(waited.search(log_text).group(1)) >= deadlock_ms
    print(f"\nrun_group got past autovacuum pid {av_pid} in {elapsed:.1f} s after {len(retries)} lock timeout(s)")


def test_run_group_waits_for_an_anti_wraparound_autovacuum(scratch_pg, caplog):
    """An anti-wraparound autovacuum never yields (PostgreSQL does not cancel it even past deadlock_timeout):
    run_group must wait, holding no lock, until it has finished, then retry under the original lock_timeout."""
    admin = scratch_pg.target()
    name = f"avw_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with db.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = scratch_pg.target(name)
    try:
        with db.connect(target, autocommit=True) as conn:
            # autovacuum_enabled = off: no ordinary autovacuum, but the anti-wraparound one still comes.
            # ~40 pages, each frozen (dirtied) at up to 0.4 s: it runs for several seconds, then ends by itself
            conn.execute("CREATE TABLE t (id int, pad text) WITH (autovacuum_enabled = off, "
                         "autovacuum_freeze_max_age = 100000, autovacuum_vacuum_cost_delay = 100, "
                         "autovacuum_vacuum_cost_limit = 1)")
            conn.execute("INSERT INTO t SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 2500) g")
            # age(relfrozenxid) past the table's autovacuum_freeze_max_age: burn 110,000 transaction ids
            conn.execute("CREATE PROCEDURE burn(n int) LANGUAGE plpgsql AS "
                         "$$ BEGIN FOR i IN 1..n LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$")
            conn.execute("CALL burn(110000)")
        with db.connect(target, autocommit=True) as conn:
            av_pid, query = wait_for(lambda: _autovacuum_on_t(conn), 60, "an anti-wraparound autovacuum on t")
        assert "(to prevent wraparound)" in query, query

        # control: even a waiter past deadlock_timeout does not get it cancelled
        with db.connect(target, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '1500ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                conn.execute(ALTER)
        assert _still_vacuuming(target, av_pid)

        caplog.set_level(logging.INFO, logger="airmigrate.engines.postgres.ddl")
        db.run_group(target, [ALTER], False, lock_timeout_ms=LOCK_TIMEOUT_MS, statement_timeout_ms=60_000,
                     attempts=5, table=("public", "t"))
        assert _has_column_x(target)
        messages = [r.getMessage() for r in caplog.records if r.name == "airmigrate.engines.postgres.ddl"]
        assert any(m.startswith(f"blocked by an anti-wraparound autovacuum (pid {av_pid})") for m in messages), \
            messages
        retries = [m for m in messages if m.startswith("lock timeout on attempt")]
        assert retries and all(m.endswith(f"with lock_timeout {LOCK_TIMEOUT_MS} ms") for m in retries), retries
        assert f"[{av_pid}] ERROR:  canceling autovacuum task" not in scratch_pg.log()
        with db.connect(admin, autocommit=True) as conn:  # it finished on its own: t is frozen
            assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (av_pid,)).fetchone()[0] == 0
    finally:
        with db.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
