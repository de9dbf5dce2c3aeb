"""Schema changes on MySQL / MariaDB before anything runs and while they wait: the preflight refuses a change the
server could only do by copying (quoting the server, naming `executor: pt-osc`), the plan shows the algorithm and
the lock of every statement as the server answered on an empty copy, and an ALTER behind someone's open
transaction gives up after the metadata-lock wait limit naming that session, then goes through once it ends."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from mysql_support import URL, drop_database, fill, fresh_database, rows_of, skip_without_server
from polling import wait_for

from airmigrate import db, engines, plan
from airmigrate.errors import PreflightError, TransientError
from airmigrate.spec import load_migration
from airmigrate.stages.preflight import check_online

pytestmark = pytest.mark.server
skip_without_server()
MYSQL = engines.named("mysql")


@pytest.fixture
def target(monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", URL)   # SQL files are read by the MySQL engine's parser
    made = fresh_database("am_myonline")
    fill(made, "t", 1000)
    yield made
    drop_database(made)


def folder(tmp_path, target, up: str, extra: str = ""):
    path = tmp_path / "0001_widen_a"
    path.mkdir()
    (path / "migration.yaml").write_text(f"description: widen a\ntable: {target.dbname}.t\n{extra}")
    (path / "up.sql").write_text(up)
    (path / "down.sql").write_text("SELECT 1;\n")
    return load_migration(path)


def column_type(target, column: str = "a") -> str:
    with db.connect(target) as conn:
        return conn.execute("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                            "AND TABLE_NAME = 't' AND COLUMN_NAME = %s", (column,)).fetchone()[0]


def tables(target) -> set[str]:
    with db.connect(target) as conn:
        return {r[0] for r in conn.execute("SHOW TABLES").fetchall()}


def test_preflight_refuses_a_copy_quoting_the_server(target, tmp_path):
    migration = folder(tmp_path, target, "ALTER TABLE t ADD COLUMN b INT;\nALTER TABLE t MODIFY a BIGINT NOT NULL;\n")
    started = time.monotonic()
    with db.connect(target, autocommit=True) as conn, pytest.raises(PreflightError) as refused:
        check_online(conn, migration)
    text = str(refused.value)
    assert "MODIFY a BIGINT NOT NULL" in text and "ADD COLUMN b" not in text   # only the copying one
    assert "Cannot change column type" in text                                # the server's own words
    assert "executor: pt-osc" in text and "nothing was changed" in text
    assert time.monotonic() - started < 5
    assert column_type(target) == "int(11)" and tables(target) == {"t", "digits"}  # untouched, no probe left

    (tmp_path / "x").mkdir()
    with_executor = folder(tmp_path / "x", target, "ALTER TABLE t MODIFY a BIGINT NOT NULL;\n", "executor: pt-osc\n")
    with db.connect(target, autocommit=True) as conn:
        check_online(conn, with_executor)   # pt-osc takes it: nothing to refuse


def test_plan_shows_algorithm_and_lock_per_statement(target, tmp_path, sql_forms):
    migration = folder(tmp_path, target, "ALTER TABLE t ADD COLUMN b INT;\nCREATE INDEX t_s ON t (s);\n"
                                         "ALTER TABLE t MODIFY a INT NULL;\nALTER TABLE t MODIFY a BIGINT NOT NULL;\n")
    with db.connect(target, autocommit=True) as conn:
        planned = [p for p in plan.static_plan(migration, conn) if p.stage == "schema_change"]
    shown = plan.render(migration, planned)
    print(shown)
    assert [p.lock for p in planned] == ["LOCK=NONE", "LOCK=NONE", "LOCK=NONE", "LOCK=SHARED"]
    algorithms = [next(a for a in p.also if a.startswith("ALGORITHM=")).split(" ")[0] for p in planned]
    index = "ALGORITHM=NOCOPY" if sql_forms == "mariadb" else "ALGORITHM=INPLACE"  # MySQL 8 has no NOCOPY
    assert algorithms == ["ALGORITHM=INSTANT", index, "ALGORITHM=INPLACE", "ALGORITHM=COPY"]
    assert shown.count("blocks writes while it runs") == 1 and "Cannot change column type" in shown
    assert "pt-online-schema-change does it online" in shown

    (tmp_path / "x").mkdir()
    with_executor = folder(tmp_path / "x", target, "ALTER TABLE t MODIFY a BIGINT NOT NULL;\n",
                           "executor: pt-osc\nchunk_time: 0.25\n")
    with db.connect(target, autocommit=True) as conn:
        (planned,) = [p for p in plan.static_plan(with_executor, conn) if p.stage == "schema_change"]
    assert planned.lock == "LOCK=NONE" and not planned.blocks_writes
    assert any("executor: pt-osc runs it instead" in a and "0.25 s chunks" in a for a in planned.also)
    assert column_type(target) == "int(11)" and tables(target) == {"t", "digits"}


def _waiting_for_metadata_lock(target) -> bool:
    with db.connect(target, autocommit=True) as conn:
        return bool(conn.execute("SELECT 1 FROM information_schema.PROCESSLIST WHERE DB = %s AND "
                                 "STATE = 'Waiting for table metadata lock'", (target.dbname,)).fetchone())


def test_alter_behind_an_open_transaction_gives_up_in_the_limit_naming_it(target, caplog):
    caplog.set_level(logging.WARNING, logger="airmigrate.engines.mysql.ddl")
    before = rows_of(target, "t")
    holder = db.connect(target)
    holder.execute("UPDATE t SET s = 'held' WHERE id = 1")   # an open transaction on the table, not committed
    try:
        started = time.monotonic()
        with pytest.raises(TransientError) as gave_up:
            MYSQL.run_ddl(target, "ALTER TABLE t ADD COLUMN b INT", lock_timeout_ms=2000, attempts=1)
        waited = time.monotonic() - started
        assert 1.8 <= waited < 5, waited                                   # about the limit, not a day
        assert f"session {holder.thread_id()}" in str(gave_up.value)       # named from the processlist
        assert "UPDATE" in str(gave_up.value) or "idle in transaction" in str(gave_up.value)
        assert "b" not in {r[0] for r in db.connect(target).execute("SHOW COLUMNS FROM t").fetchall()}

        done: list = []
        worker = threading.Thread(target=lambda: done.append(
            MYSQL.run_ddl(target, "ALTER TABLE t ADD COLUMN b INT", lock_timeout_ms=1000, attempts=20)))
        worker.start()
        wait_for(lambda: _waiting_for_metadata_lock(target), what="the ALTER queued behind the transaction")
        wait_for(lambda: any("attempt 1/20" in r.getMessage() for r in caplog.records), what="a retry")
        retry = next(r.getMessage() for r in caplog.records if "attempt 1/20" in r.getMessage())
        assert f"session {holder.thread_id()}" in retry and "retrying in" in retry
    finally:
        holder.commit()
        holder.close()
    worker.join(timeout=60)
    assert done and column_type(target, "b") == "int(11)"
    after = rows_of(target, "t", "id, a, s")
    assert after[0][2] == "held" and [r for r in after[1:]] == [r[:3] for r in before[1:]]
