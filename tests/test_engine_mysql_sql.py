"""The MySQL / MariaDB engine without a server: URLs, rendering, splitting, checks, what SQL touches, lint rules
(the server tests are in test_engine_mysql.py)."""

from __future__ import annotations

from collections import deque

import pytest

from airmigrate import engines
from airmigrate.engines import base, sql
from airmigrate.engines.base import Executor
from airmigrate.engines.mysql import clients, ptosc
from airmigrate.engines.mysql import operations as mysql_operations
from airmigrate.engines.target import Target
from airmigrate.errors import SpecError
from airmigrate.lint import lint_migration, unacknowledged
from airmigrate.spec import load_migration

MYSQL = engines.named("mysql")


def test_url_to_target_defaults_and_secrets():
    target = Target.from_url("mysql://app:p%40ss%3Aw@db.example:3307/shop")
    assert (target.engine, target.host, target.port, target.user, target.dbname) == \
        ("mysql", "db.example", 3307, "app", "shop")
    assert target.password == "p@ss:w" and "p@ss" not in repr(target) and "p@ss" not in target.describe()
    assert Target.from_url("mariadb://db.example").engine == "mysql"
    bare = Target.from_url("mysql://db.example")
    assert (bare.user, bare.port, bare.dbname) == ("root", 3306, "mysql")
    assert Target.from_url(target.url()) == target
    socket = Target.from_url("mysql://root@/shop?unix_socket=/run/mysqld/mysqld.sock")
    assert socket.host == "/run/mysqld/mysqld.sock" and Target.from_url(socket.url()) == socket
    assert "MYSQL_PWD" in MYSQL.client_env(target) and "p@ss" not in " ".join(MYSQL.client_env(bare).values())
    assert Target.from_airflow_uri("mysql://app:secret@h:3306/shop").engine == "mysql"
    assert engines.configured_name({"AIRMIGRATE_TARGET_URL": "mariadb://root@127.0.0.1/test"}) == "mysql"


def test_render_without_connection():
    piece = sql.SQL("SELECT {} FROM {} WHERE s = {}").format(sql.Identifier("a`b"), sql.Identifier("d", "t"),
                                                              sql.Literal("it's"))
    assert MYSQL.render(piece) == "SELECT `a``b` FROM `d`.`t` WHERE s = 'it\\'s'"
    assert MYSQL.render(sql.Placeholder("lo")) == "%(lo)s"



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
    assert MYSQL.sql_touched("ALTER TABLE t RENAME COLUMN a TO b, CHANGE d e INT", "s", "t") == {
        ("column", "s.t.a"), ("column", "s.t.b"), ("column", "s.t.d"), ("column", "s.t.e")}
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
    assert rules("ALTER TABLE t ADD COLUMN b INT, ALGORITHM=COPY") == ["mysql-table-copy"]
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


def test_pt_osc_command_progress_and_option_file():
    """pt-osc's argv holds no credential (the DSN's F= names the option file); its progress lines become
    percentages; the option file quotes what a password may hold."""
    target = Target.from_url('mysql://app:se%22cr%5Cet%23@db.example:3307/shop')
    assert ptosc.split("ALTER TABLE `shop`.`orders` MODIFY a BIGINT NOT NULL;", "x") == \
        ("shop", "orders", "MODIFY a BIGINT NOT NULL")
    assert ptosc.split("ALTER TABLE orders ADD COLUMN b INT", "shop") == ("shop", "orders", "ADD COLUMN b INT")
    assert ptosc.takes("ALTER TABLE t MODIFY a BIGINT") and not ptosc.takes("CREATE INDEX i ON t (a)")
    assert not ptosc.takes("ALTER TABLE t RENAME TO u")
    argv = ptosc.command("/tmp/x/client.cnf", "shop", "orders", "MODIFY a BIGINT", Executor("pt-osc", 0.25))
    assert argv[-1] == "F=/tmp/x/client.cnf,D=shop,t=orders" and "--chunk-time=0.25" in argv
    assert "--max-load=Threads_running=25" in argv and "--no-version-check" in argv
    assert not any("se\"cr" in a for a in argv)
    last, tail = {"percent": None}, deque(maxlen=3)
    ptosc._log_line("Copying `shop`.`orders`:  42% 00:12 remain", last, tail)
    assert last["percent"] == 42
    text = clients.option_text(target)
    assert 'password="se\\"cr\\\\et#"' in text and 'host="db.example"' in text and "port=3307" in text


@pytest.mark.parametrize("extra, refused", [("", True), ("executor: pt-osc\n", False)])
def test_executor_pt_osc_answers_the_table_copy_lint(tmp_path, monkeypatch, extra, refused):
    """Without an executor a copying ALTER is refused by lint (recipe: executor: pt-osc); with one it is taken as
    acknowledged, with the reason said."""
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", "mysql://root@127.0.0.1:3306/shop")
    folder = tmp_path / "0001_widen"
    folder.mkdir()
    (folder / "migration.yaml").write_text(f"description: widen\ntable: shop.big\n{extra}")
    (folder / "up.sql").write_text("ALTER TABLE big MODIFY a BIGINT NOT NULL;\n")
    (folder / "down.sql").write_text("SELECT 1;\n")
    findings = [f for f in lint_migration(load_migration(folder)) if f.rule == "mysql-table-copy"]
    assert len(findings) == 1 and "executor: pt-osc" in findings[0].recipe
    assert bool(unacknowledged(findings)) is refused
    if not refused:
        assert findings[0].acknowledged == "executor: pt-osc runs it online"


def test_an_operation_without_mysql_steps_is_refused_at_load(tmp_path, monkeypatch):
    """An operation the engine has no steps for is refused when the spec loads, naming the field, why and the way
    around it (SQL files for the engine); on PostgreSQL the same folder loads. Every operation has MySQL steps now
    (split_table was the last): the table of refusals is given one for the test."""
    folder = tmp_path / "0001_add"
    folder.mkdir()
    (folder / "migration.yaml").write_text(
        "description: add\ntable: users\nkey: id\noperations:\n  - op: split_table\n    columns: [bio]\n"
        "    new_table: user_bios\n")
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", "mysql://root@127.0.0.1:3306/shop")
    assert load_migration(folder).spec.operations[0].op == "split_table"  # it runs on MySQL now
    monkeypatch.setitem(mysql_operations.NOT_ON_MYSQL, "split_table", mysql_operations.NOT_YET)
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", "postgresql://postgres@127.0.0.1/x")
    assert load_migration(folder).spec.operations[0].op == "split_table"
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", "mysql://root@127.0.0.1:3306/shop")
    with pytest.raises(SpecError) as caught:
        load_migration(folder)
    assert caught.value.field == "operations.0.split_table.op"
    assert "split_table has no MySQL / MariaDB steps" in caught.value.problem
    assert "up.mysql.sql" in caught.value.fix and str(folder / "migration.yaml") == caught.value.file
