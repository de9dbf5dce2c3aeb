"""The MySQL / MariaDB engine (airmigrate.engines.mysql) against a real server: AIRMIGRATE_TEST_MYSQL_URL, else
MariaDB/MySQL at 127.0.0.1:3306 as root. Without one, the server tests skip with one line; the parsing tests at
the bottom need no server (and run in `make check`). Each server test gets a database of its own
(``am_mysql_<worker>_<random>``), dropped after it. Waits are on conditions (the processlist, the log), not sleeps.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

import pytest

from airmigrate import db, engines
from airmigrate.engines import base, sql
from airmigrate.engines.target import Target
from airmigrate.errors import TransientError

URL = os.environ.get("AIRMIGRATE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
MYSQL = engines.named("mysql")


@pytest.fixture(scope="module")
def mysql_server() -> Target:
    target = Target.from_url(URL)
    try:
        db.connect(target).close()
    except Exception as exc:
        pytest.skip(f"no MySQL/MariaDB answers at {target.describe()} (set AIRMIGRATE_TEST_MYSQL_URL): "
                    f"{type(exc).__name__}")
    return target


@pytest.fixture
def mysql_db(mysql_server):
    """A fresh database with one table t(id, a INT, s VARCHAR) of three rows."""
    name = f"am_mysql_{WORKER}_{uuid.uuid4().hex[:8]}"
    with db.connect(mysql_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = mysql_server.with_dbname(name)
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY, a INT, s VARCHAR(20))")
        conn.execute("INSERT INTO t VALUES (1, 1, 'x'), (2, 2, 'y'), (3, 3, 'z')")
    yield target
    with db.connect(mysql_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def columns(target: Target, table: str = "t") -> dict[str, str]:
    with db.connect(target) as conn:
        return dict(conn.execute("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE "
                                 "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", (table,)).fetchall())


# ---------------------------------------------------------------------------------------------------------------
# URL -> Target -> connection

def test_url_to_target_defaults_and_secrets():
    target = Target.from_url("mysql://app:p%40ss%3Aw@db.example:3307/shop")
    assert (target.engine, target.host, target.port, target.user, target.dbname) == \
        ("mysql", "db.example", 3307, "app", "shop")
    assert target.password == "p@ss:w" and "p@ss" not in repr(target) and "p@ss" not in target.describe()
    assert Target.from_url("mariadb://db.example").engine == "mysql"
    bare = Target.from_url("mysql://db.example")
    assert (bare.user, bare.port, bare.dbname) == ("root", 3306, "mysql")
    assert Target.from_url(target.url()) == target
    assert Target.from_airflow_uri("mysql://app:secret@h:3306/shop").engine == "mysql"
    assert engines.configured_name({"AIRMIGRATE_TARGET_URL": "mariadb://root@127.0.0.1/test"}) == "mysql"


@pytest.mark.server
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


@pytest.mark.server
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


def test_render_without_connection():
    piece = sql.SQL("SELECT {} FROM {} WHERE s = {}").format(sql.Identifier("a`b"), sql.Identifier("d", "t"),
                                                              sql.Literal("it's"))
    assert MYSQL.render(piece) == "SELECT `a``b` FROM `d`.`t` WHERE s = 'it\\'s'"
    assert MYSQL.render(sql.Placeholder("lo")) == "%(lo)s"


@pytest.mark.server
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

@pytest.mark.server
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

@pytest.mark.server
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
    offline = MYSQL.analyze("ALTER TABLE t MODIFY a BIGINT")
    assert offline.lock in MYSQL.write_blocking and "static" in offline.notes[0]


# ---------------------------------------------------------------------------------------------------------------
# the safe DDL executor

@pytest.mark.server
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


def _ddl_session(target: Target) -> bool:
    with db.connect(target, autocommit=True) as conn:
        return bool(conn.execute("SELECT 1 FROM information_schema.PROCESSLIST WHERE DB = %s AND "
                                 "STATE = 'Waiting for table metadata lock'", (target.dbname,)).fetchone())


@pytest.mark.server
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


@pytest.mark.server
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
        wait_for(lambda: _ddl_session(mysql_db), what="the ALTER waiting for the metadata lock")
        wait_for(lambda: any("lock wait timeout on attempt 1/8" in r.getMessage() for r in caplog.records),
                 what="the first retry")
        retry = next(r.getMessage() for r in caplog.records if "attempt 1/8" in r.getMessage())
        assert f"session {holder.thread_id()}" in retry
    finally:
        holder.rollback()
        holder.close()
    worker.join(timeout=60)
    assert not worker.is_alive() and not errors
    assert columns(mysql_db)["b"] == "int(11)"


@pytest.mark.server
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


# ---------------------------------------------------------------------------------------------------------------
# SQL text, no server

def test_split_keeps_strings_comments_placeholders_and_trigger_bodies():
    text = ("UPDATE t SET s = 'a;b' -- c;\nWHERE id BETWEEN %(lo)s AND %(hi)s;\n/* ; */ SELECT `x;y` FROM t;\n"
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN CASE WHEN NEW.a > 1 THEN SET NEW.s = 'x'; "
            "END CASE; IF NEW.a IS NULL THEN SET NEW.a = 0; END IF; END;\nALTER TABLE t ADD COLUMN c INT")
    statements = MYSQL.split_statements(text)
    assert len(statements) == 4
    assert statements[0].endswith("BETWEEN %(lo)s AND %(hi)s") and statements[1] == "SELECT `x;y` FROM t"
    assert statements[2].startswith("CREATE TRIGGER") and statements[2].endswith("END IF; END")
    assert MYSQL.group_statements(["UPDATE t SET a = 1", "DELETE FROM t WHERE id = 1", "ALTER TABLE t ADD c INT",
                                   "UPDATE t SET a = 2"]) == [
        (False, ["UPDATE t SET a = 1", "DELETE FROM t WHERE id = 1"]), (True, ["ALTER TABLE t ADD c INT"]),
        (False, ["UPDATE t SET a = 2"])]


def test_syntax_checks_and_rerendering():
    assert MYSQL.syntax_error("UPDATE t SET a = 1;\n\nUPDATE t SET a = WHERE id = 1;")[0] == 3
    assert MYSQL.syntax_error("UPDATE t SET a = 1 WHERE id BETWEEN '%(lo)s' AND '%(hi)s'") is None
    assert MYSQL.syntax_error("ALTER TABLE t ADD INDEX IF NOT EXISTS i (a)") is None  # MariaDB's: the server judges
    assert MYSQL.check_type("bigint unsigned") == "BIGINT UNSIGNED"
    assert MYSQL.check_type("varchar(20) -- trailing") == "VARCHAR(20)"
    for bad in ("int int", "int; DROP TABLE t"):
        with pytest.raises(ValueError):
            MYSQL.check_type(bad)
    assert MYSQL.check_expression("length(full_name)") == "LENGTH(full_name)"
    with pytest.raises(ValueError):
        MYSQL.check_expression("a AS b")
    assert MYSQL.on_record("length(full_name) + t.x", "NEW") == "LENGTH(NEW.full_name) + t.x"
    assert MYSQL.columns_read("concat(first, ' ', last) || first") == ["first", "last"]
    assert MYSQL.one_select("select count(*) from t") == "SELECT COUNT(*) FROM t"


def test_what_sql_touches_and_drops():
    touched = MYSQL.sql_touched("ALTER TABLE t ADD COLUMN b INT, DROP COLUMN c;\nCREATE INDEX i ON t (d);\n"
                                "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (uid) REFERENCES u (id)", "shop", "t")
    assert {("column", "shop.t.b"), ("column", "shop.t.c"), ("index", "shop.i"), (base.USES, "shop.t.d"),
            ("constraint", "shop.o.fk"), (base.USES, "shop.o.uid"), (base.USES, "shop.u.id")} <= touched
    assert MYSQL.drops_anything("ALTER TABLE t DROP COLUMN c") and not MYSQL.drops_anything("ALTER TABLE t ADD d INT")
    assert MYSQL.data_losing_statements("DROP TABLE x; TRUNCATE y; ALTER TABLE t MODIFY a BIGINT") == \
        ["DROP TABLE", "TRUNCATE", "MODIFY COLUMN"]
    assert MYSQL.mirror_index("CREATE UNIQUE INDEX u_a ON t (a, s)", "a", "a_new", "u_a_new") == \
        "CREATE UNIQUE INDEX `u_a_new` ON t(`a_new`, s)"
    assert not MYSQL.not_null_proofs().skips_scan("ALTER TABLE t MODIFY a INT NOT NULL")


def test_lint_rules(tmp_path):
    def rules(text, role="up", generated=False):
        return sorted(f.rule for f in MYSQL.lint_sql(tmp_path / f"{role}.sql", text, role, "", ("id",), generated))

    assert rules("ALTER TABLE t MODIFY a BIGINT") == ["mysql-table-copy"]
    assert rules("ALTER TABLE t MODIFY a BIGINT, ALGORITHM=INPLACE, LOCK=NONE") == []   # the server will say
    assert rules("ALTER TABLE t ADD COLUMN b INT") == []
    assert rules("ALTER TABLE t DROP COLUMN b") == ["destructive-in-expand"]
    assert rules("ALTER TABLE t DROP COLUMN b", role="cleanup") == []
    assert rules("UPDATE t SET a = 1") == ["unbatched-update"]
    assert rules("DELETE FROM t WHERE a = 1", role="cleanup") == ["unbatched-delete"]
    assert rules("UPDATE t SET a = 1 WHERE id BETWEEN '%(lo)s' AND '%(hi)s'", role="backfill") == []
    assert rules("UPDATE t SET a = 1 WHERE id > 0 OR id BETWEEN '%(lo)s' AND '%(hi)s'", role="backfill") == \
        ["backfill-unbounded"]
    assert rules("UPDATE t SET a = 1 WHERE id BETWEEN '%(lo)s' AND '%(hi)s'; UPDATE t SET a = 2", role="backfill") \
        == ["backfill-single-update", "backfill-unbounded"]
