"""The MySQL / MariaDB engine (airmigrate.engines.mysql) against a real server: AIRMIGRATE_TEST_MYSQL_URL, else
MariaDB/MySQL at 127.0.0.1:3306 as root. Without one, this module skips with one line; what needs no server is
in test_engine_mysql_sql.py (and runs in `make check`). Each server test gets a database of its own
(``am_mysql_<worker>_<random>``), dropped after it. Waits are on conditions (the processlist, the log), not sleeps.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from mysql_support import URL, drop_database, fresh_database, skip_without_server
from polling import wait_for

from airmigrate import db, engines
from airmigrate.engines import base, sql
from airmigrate.engines.target import Target
from airmigrate.errors import TransientError

MYSQL = engines.named("mysql")

pytestmark = pytest.mark.server  # every test here needs the server (`make check` leaves them out)


skip_without_server()  # one line in the summary when no server answers (a user's machine)


@pytest.fixture(scope="module")
def mysql_server() -> Target:
    return Target.from_url(URL)


@pytest.fixture
def mysql_db(mysql_server):
    """A fresh database with one table t(id, a INT, s VARCHAR) of three rows."""
    target = fresh_database("am_mysql")
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY, a INT, s VARCHAR(20))")
        conn.execute("INSERT INTO t VALUES (1, 1, 'x'), (2, 2, 'y'), (3, 3, 'z')")
    yield target
    drop_database(target)  # and its state database, when a test made one


def columns(target: Target, table: str = "t") -> dict[str, str]:
    with db.connect(target) as conn:
        return dict(conn.execute("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE "
                                 "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", (table,)).fetchall())


# ---------------------------------------------------------------------------------------------------------------
# URL -> Target -> connection

def test_connect_and_engine_of_connection(mysql_db):
    with db.connect(mysql_db) as conn:
        assert engines.of(conn) is MYSQL and engines.of(conn.cursor()) is MYSQL
        assert conn.execute("SELECT %(lo)s + %(hi)s", {"lo": 1, "hi": 2}).fetchone() == (3,)
        assert conn.info.backend_pid == conn.thread_id()
    wrong = Target.from_url(mysql_db.url().replace("root@", "root:not-the-secret@"))
    if wrong.password:
        with pytest.raises(TransientError) as failed:
            db.connect(wrong)
        assert "not-the-secret" not in str(failed.value)


def test_transaction_commits_or_rolls_back(mysql_db):
    with db.connect(mysql_db) as conn:
        with conn.transaction():
            conn.execute("UPDATE t SET a = 10 WHERE id = 1")
        with pytest.raises(RuntimeError):
            with conn.transaction():
                conn.execute("UPDATE t SET a = 20 WHERE id = 2")
                raise RuntimeError("undo")
    with db.connect(mysql_db) as conn:
        assert conn.execute("SELECT a FROM t ORDER BY id").fetchall() == ((10,), (2,), (3,))


# ---------------------------------------------------------------------------------------------------------------
# rendering

HOSTILE = ["we`ird", "back``ticks`", 'dou"ble', "sin'gle", "per%cent%(lo)s", "spa ce; DROP TABLE t; --", "ünï"]


@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES"])
def test_hostile_identifiers_and_literals_round_trip(mysql_db, sql_mode):
    values = ["it's", 'say "hi"', "back\\slash", "100% %(lo)s", "tab\there", "ünï`"]
    with db.connect(mysql_db, autocommit=True) as conn:
        conn.execute(sql.SQL("SET SESSION sql_mode = {}").format(sql.Literal(sql_mode)))
        for i, name in enumerate(HOSTILE):
            conn.execute(sql.SQL("CREATE TABLE {} ({} INT PRIMARY KEY, v TEXT, j JSON)").format(
                sql.Identifier(name), sql.Identifier(name + "_id")))
            # a literal and a parameter in one statement: the literal's % must survive PyMySQL's formatting
            conn.execute(sql.SQL("INSERT INTO {} VALUES (%(id)s, {}, %(j)s)").format(
                sql.Identifier(mysql_db.dbname, name), sql.Literal(values[i % len(values)])),
                {"id": i, "j": sql.Json({"name": name})})
        names = {r[0] for r in conn.execute("SELECT TABLE_NAME FROM information_schema.TABLES "
                                            "WHERE TABLE_SCHEMA = DATABASE()").fetchall()}
        assert set(HOSTILE) <= names
        for i, name in enumerate(HOSTILE):
            row = conn.execute(sql.SQL("SELECT {}, v, j FROM {} WHERE v = {}").format(
                sql.Identifier(name + "_id"), sql.Identifier(name), sql.Literal(values[i % len(values)]))).fetchone()
            assert row[0] == i and row[1] == values[i % len(values)]
            assert '"name"' in row[2]


# ---------------------------------------------------------------------------------------------------------------
# error kinds

def test_error_kinds(mysql_db):
    def failure(run) -> BaseException:
        with pytest.raises(Exception) as caught:
            run()
        return caught.value

    with db.connect(mysql_db) as holder, db.connect(mysql_db) as waiter:
        holder.execute("UPDATE t SET a = 5 WHERE id = 1")          # holds the row lock (transaction open)
        waiter.execute("SET SESSION innodb_lock_wait_timeout = 1")
        lock = failure(lambda: waiter.execute("UPDATE t SET a = 6 WHERE id = 1"))
        assert MYSQL.error_kind(lock) == base.LOCK_TIMEOUT and MYSQL.is_transient(lock)
        holder.rollback()
    with db.connect(mysql_db) as conn:
        conn.execute("SET SESSION max_statement_time = 0.1")
        slow = failure(lambda: conn.execute("SELECT SLEEP(2) FROM t"))
        assert MYSQL.error_kind(slow) == base.STATEMENT_TIMEOUT and not MYSQL.is_transient(slow)
        syntax = failure(lambda: conn.execute("SELEC 1"))
        assert MYSQL.error_kind(syntax) == base.DATABASE and not MYSQL.is_transient(syntax)
    with db.connect(mysql_db, autocommit=True) as killer, db.connect(mysql_db, autocommit=True) as victim:
        killer.execute(f"KILL {int(victim.thread_id())}")
        lost = failure(lambda: victim.execute("SELECT 1"))
        assert MYSQL.error_kind(lost) == base.CONNECTION and MYSQL.is_transient(lost)
    assert MYSQL.error_kind(ValueError("not a database error")) is None


# ---------------------------------------------------------------------------------------------------------------
# the online-algorithm probe

def test_probe_asks_the_server_on_an_empty_copy(mysql_db):
    with db.connect(mysql_db, autocommit=True) as conn:
        added = MYSQL.analyze("ALTER TABLE t ADD COLUMN b INT", conn)
        widened = MYSQL.analyze("ALTER TABLE t MODIFY a BIGINT", conn)
        index = MYSQL.analyze("CREATE INDEX i_s ON t (s)", conn)
        left = {r[0] for r in conn.execute("SHOW TABLES").fetchall()}
    assert (added.lock, added.effect) == ("LOCK=NONE", "") and "ALGORITHM=INSTANT" in added.notes[0]
    assert "server's answer" in added.notes[0]
    assert widened.lock == "LOCK=SHARED" and widened.effect == "rewrite" and "ALGORITHM=COPY" in widened.notes[0]
    assert any("Cannot change column type" in note for note in widened.notes)  # the server's own words
    assert index.lock == "LOCK=NONE" and index.effect == "scan"
    assert left == {"t"}                      # the probe is gone
    assert columns(mysql_db) == {"id": "int(11)", "a": "int(11)", "s": "varchar(20)"}  # the table untouched
    with db.connect(mysql_db, autocommit=True) as conn:
        as_written = MYSQL.analyze("ALTER TABLE t MODIFY a BIGINT, ALGORITHM=INPLACE", conn)
        only_lock = MYSQL.analyze("ALTER TABLE t ADD INDEX i_a (a), LOCK=NONE", conn)
    assert any("refuses the ALGORITHM/LOCK it names" in note for note in as_written.notes)
    assert only_lock.lock == "LOCK=NONE" and "ALGORITHM=NOCOPY" in only_lock.notes[0]
    offline = MYSQL.analyze("ALTER TABLE t MODIFY a BIGINT")
    assert offline.lock in MYSQL.write_blocking and "static" in offline.notes[0]


# ---------------------------------------------------------------------------------------------------------------
# the safe DDL executor

def test_executor_writes_the_online_algorithm_and_refuses_a_copy(mysql_db, caplog):
    caplog.set_level(logging.INFO, logger="airmigrate.engines.mysql.ddl")
    ran = MYSQL.run_ddl(mysql_db, "ALTER TABLE t ADD COLUMN b INT;\nCREATE INDEX i_s ON t (s);\n"
                                  "ALTER TABLE t MODIFY a INT NOT NULL;")
    assert len(ran) == 3
    sent = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SQL> ")]
    assert sent == ["SQL> ALTER TABLE t ADD COLUMN b INT, ALGORITHM=INSTANT, LOCK=NONE",
                    "SQL> CREATE INDEX i_s ON t (s) ALGORITHM=NOCOPY LOCK=NONE",
                    "SQL> ALTER TABLE t MODIFY a INT NOT NULL, ALGORITHM=INPLACE, LOCK=NONE"]
    started = time.monotonic()
    with pytest.raises(Exception) as refused:
        MYSQL.run_ddl(mysql_db, "ALTER TABLE t MODIFY a BIGINT NOT NULL")
    assert type(refused.value).__name__ == "CopyRefused" and not MYSQL.is_transient(refused.value)
    assert "Cannot change column type" in str(refused.value) and "pt-online-schema-change" in str(refused.value)
    assert time.monotonic() - started < 5
    assert columns(mysql_db)["a"] == "int(11)"


@pytest.mark.parametrize("statement", ["ALTER TABLE t ADD COLUMN b INT, ALGORITHM=INPLACE",
                                       "CREATE INDEX i_s ON t (s) LOCK=SHARED"])
def test_executor_runs_a_written_clause_as_written(mysql_db, caplog, statement):
    caplog.set_level(logging.INFO, logger="airmigrate.engines.mysql.ddl")
    MYSQL.run_ddl(mysql_db, statement)
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("SQL> ")] == [f"SQL> {statement}"]


def test_executor_statement_time_limit(mysql_db):
    with db.connect(mysql_db, autocommit=True) as conn:   # 100,000 rows, on MySQL and MariaDB alike
        conn.execute("CREATE TABLE digits (d INT)")
        conn.execute("INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)")
        conn.execute("CREATE TABLE big (id INT PRIMARY KEY, a INT)")
        conn.execute("INSERT INTO big SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d, a.d "
                     "FROM digits a, digits b, digits c, digits e, digits f")
    started = time.monotonic()
    with pytest.raises(Exception) as stopped:
        MYSQL.run_ddl(mysql_db, "CREATE INDEX big_a ON big (a)", statement_timeout_ms=20)
    assert MYSQL.error_kind(stopped.value) == base.STATEMENT_TIMEOUT and not MYSQL.is_transient(stopped.value)
    assert time.monotonic() - started < 5


def _ddl_session(target: Target) -> bool:
    with db.connect(target, autocommit=True) as conn:
        return bool(conn.execute("SELECT 1 FROM information_schema.PROCESSLIST WHERE DB = %s AND "
                                 "STATE = 'Waiting for table metadata lock'", (target.dbname,)).fetchone())


def test_executor_gives_up_behind_a_metadata_lock_naming_the_holder(mysql_db):
    with db.connect(mysql_db) as holder:
        holder.execute("SELECT * FROM t").fetchall()   # an open transaction: its metadata lock stays to the end
        started = time.monotonic()
        with pytest.raises(TransientError) as gave_up:
            MYSQL.run_ddl(mysql_db, "ALTER TABLE t ADD COLUMN b INT", lock_timeout_ms=1000, attempts=2)
        elapsed = time.monotonic() - started
        message = str(gave_up.value)
        assert f"session {holder.thread_id()}" in message and "hit 2 times" in message
        assert elapsed < 10   # two waits of 1 s plus one backoff, never the server's default of a day
    assert "b" not in columns(mysql_db)


def test_executor_retries_until_the_holder_ends(mysql_db, caplog):
    caplog.set_level(logging.WARNING, logger="airmigrate.engines.mysql.ddl")
    holder = db.connect(mysql_db)
    holder.execute("SELECT * FROM t").fetchall()
    errors: list[BaseException] = []

    def run():
        try:
            MYSQL.run_ddl(mysql_db, "ALTER TABLE t ADD COLUMN b INT", lock_timeout_ms=1000, attempts=8)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_for(lambda: _ddl_session(mysql_db), 20, "the ALTER waiting for the metadata lock")
        wait_for(lambda: any("lock wait timeout on attempt 1/8" in r.getMessage() for r in caplog.records), 20,
                 "the first retry")
        retry = next(r.getMessage() for r in caplog.records if "attempt 1/8" in r.getMessage())
        assert f"session {holder.thread_id()}" in retry
    finally:
        holder.rollback()
        holder.close()
    worker.join(timeout=60)
    assert not worker.is_alive() and not errors
    assert columns(mysql_db)["b"] == "int(11)"


def test_executor_runs_a_trigger_body_and_dml_in_one_transaction(mysql_db):
    MYSQL.run_ddl(mysql_db, """
        ALTER TABLE t ADD COLUMN b INT;
        CREATE TRIGGER t_sync BEFORE UPDATE ON t FOR EACH ROW
        BEGIN
            IF NEW.a IS NOT NULL THEN SET NEW.b = NEW.a * 2; END IF;
        END;
        UPDATE t SET a = a + 1 WHERE id BETWEEN 1 AND 2;
        UPDATE t SET a = a WHERE id = 3;
    """)
    with db.connect(mysql_db) as conn:
        assert conn.execute("SELECT a, b FROM t ORDER BY id").fetchall() == ((2, 4), (3, 6), (3, 6))
        assert MYSQL.estimate_rows(conn, mysql_db.dbname, "t") >= 0
        assert MYSQL.estimate_rows(conn, mysql_db.dbname, "missing") == 0
