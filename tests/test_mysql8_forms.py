"""MySQL 8.0 forms of what the MySQL engine sends (issue 22: "MySQL 8 / MariaDB 10.11+"), without a server: each
MariaDB-only construct rendered in MySQL 8's form (engines.mysql.dialect), the guards that keep a retried step from
doing anything twice, and the static check: every operation's plan (`plan --sql` and the rollback script) in MySQL 8
mode holds none of MariaDB's forms. The same forms against a real MariaDB: tests/test_mysql8_forms_server.py."""

from __future__ import annotations

import re

import pytest
import yaml

from airmigrate import plan
from airmigrate.engines.mysql import console_sql, dialect, leases, op_rows, pacing_sql, state_sql
from airmigrate.engines.mysql.catalog import as_written
from airmigrate.spec import load_migration

MYSQL_URL = "mysql://root@127.0.0.1:3306/shop"

# Each MariaDB-only construct, and why MySQL 8.0 refuses it (MySQL 8.0 Reference Manual: ALTER TABLE, RENAME TABLE,
# "Restrictions on Stored Programs"/compound statements, SET, InnoDB online DDL). Matched outside comments.
MARIADB_ONLY = [
    (r"\bADD\s+(COLUMN\s+)?IF\s+NOT\s+EXISTS\b", "ALTER TABLE ... ADD COLUMN has no IF NOT EXISTS on MySQL 8.0"),
    (r"\bDROP\s+(COLUMN\s+)?IF\s+EXISTS\b", "ALTER TABLE ... DROP COLUMN has no IF EXISTS on MySQL 8.0"),
    (r"\b(INDEX|KEY)\s+IF\s+(NOT\s+)?EXISTS\b", "ADD/DROP/RENAME INDEX take no IF [NOT] EXISTS on MySQL 8.0"),
    (r"\bCONSTRAINT\s+IF\s+(NOT\s+)?EXISTS\b", "ADD/DROP CONSTRAINT take no IF [NOT] EXISTS on MySQL 8.0"),
    (r"\bFOREIGN\s+KEY\s+IF\s+(NOT\s+)?EXISTS\b", "ADD/DROP FOREIGN KEY take no IF [NOT] EXISTS on MySQL 8.0"),
    (r"\bRENAME\s+TABLE\s+IF\s+EXISTS\b", "MySQL 8.0's RENAME TABLE is tbl_name TO new_tbl_name only"),
    (r"\bSET\s+STATEMENT\b", "SET STATEMENT ... FOR is MariaDB's per-query variable; MySQL 8.0 has no such form"),
    (r"\bBEGIN\s+NOT\s+ATOMIC\b", "MySQL 8.0 runs compound statements (IF, WHILE) only inside stored programs"),
    (r"\bALGORITHM\s*=\s*NOCOPY\b", "MySQL 8.0's ALGORITHM is DEFAULT, INSTANT, INPLACE or COPY"),
    (r"\bCREATE\s+OR\s+REPLACE\s+(?!(ALGORITHM\s*=\s*\w+\s+)?(DEFINER\s*=\s*\S+\s+)?(SQL\s+SECURITY\s+\w+\s+)?VIEW\b)",
     "MySQL 8.0 has CREATE OR REPLACE for views only"),
    (r"\bWAIT\s+\d+\b|(?<!UPDATE )(?<!SHARE )\bNOWAIT\b", "ALTER TABLE ... WAIT n / NOWAIT is MariaDB's (MySQL 8: "
                                                          "lock_wait_timeout; NOWAIT only after FOR UPDATE/SHARE)"),
    (r"\bmax_statement_time\b", "MariaDB's statement limit; MySQL 8.0: max_execution_time (SELECTs only)"),
    (r"\bseq_\d+_to_\d+\b", "MariaDB's SEQUENCE engine"),
    (r"\b(NEXTVAL|LASTVAL|SETVAL)\s*\(|\bCREATE\s+SEQUENCE\b", "sequences are MariaDB's"),
    (r"\b(DELETE|INSERT|REPLACE)\b[^;]*\bRETURNING\b", "MySQL 8.0 has no RETURNING"),
    (r"\bON\s+DUPLICATE\s+KEY\s+UPDATE\b[^;]*\bVALUES\s*\(", "VALUES(col) in ON DUPLICATE KEY UPDATE is deprecated "
     "from MySQL 8.0.20, to be removed (MySQL 8.0.19+: a row alias, VALUES (...) AS new ... new.col; INSERT ... "
     "SELECT: the SELECT's columns by name)"),
]

OPERATIONS = [
    {"op": "add_column", "column": "score", "type": "int", "default": "0", "backfill": "a * 2", "not_null": True},
    {"op": "drop_column", "column": "s"},
    {"op": "rename_column", "column": "s", "to": "label"},
    {"op": "change_column_type", "column": "a", "type": "bigint"},
    {"op": "add_index", "name": "items_a", "columns": ["a"]},
    {"op": "add_unique", "name": "items_s", "columns": ["s"]},
    {"op": "add_check", "name": "items_a_positive", "expression": "a >= 0"},
    {"op": "add_foreign_key", "name": "items_parent", "columns": ["a"], "references_table": "parents",
     "references_columns": ["id"]},
    {"op": "drop_table", "table": "old_items"},
    {"op": "rename_table", "to": "goods"},
    {"op": "rename_index", "name": "items_a_old", "to": "items_a_new"},
    {"op": "create_table", "columns": {"id": "bigint", "n": "varchar(20)"}, "checks": {"fresh_n": "n <> ''"}},
    {"op": "delete_rows", "where": "a = 7", "keep_archive_days": 0},
    {"op": "move_rows", "to": "items_old", "where": "a = 7"},
    {"op": "split_table", "new_table": "items_text", "columns": ["s"]},
]


@pytest.fixture
def mysql(monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", MYSQL_URL)
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
    monkeypatch.delenv(dialect.SWITCH, raising=False)
    return monkeypatch


def without_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", re.sub(r"(?m)--[^\n]*$", "", text), flags=re.S)


def mariadb_only(text: str) -> list[str]:
    body = without_comments(text)
    return [f"{why}: {m.group(0)!r}" for pattern, why in MARIADB_ONLY for m in re.finditer(pattern, body, re.I)]


def rendered(tmp_path, operation: dict) -> str:
    """`plan --sql` and the rollback script of a migration of this one operation, offline."""
    folder = tmp_path / f"0001_{operation['op']}"
    folder.mkdir()
    table = "fresh" if operation["op"] == "create_table" else "items"
    (folder / "migration.yaml").write_text(yaml.safe_dump(
        {"description": "x", "table": f"shop.{table}", "key": "id", "operations": [operation]}))
    migration = load_migration(folder)
    return plan.render_sql(migration) + plan.render_rollback(migration, None, sql=True) + \
        plan.render(migration, plan.static_plan(migration))


@pytest.mark.parametrize("operation", OPERATIONS, ids=[o["op"] for o in OPERATIONS])
def test_every_operations_plan_in_mysql8_mode_has_no_mariadb_only_construct(mysql, tmp_path, operation):
    mysql.setenv(dialect.SWITCH, "mysql8")
    text = rendered(tmp_path, operation)
    assert mariadb_only(text) == [], text


def test_the_check_finds_mariadbs_forms_in_mariadb_mode(mysql, tmp_path):
    """Without the switch the plan shows MariaDB's forms, and the check sees them (it is not blind)."""
    found = set()
    for operation in OPERATIONS:
        found |= {problem.split(":")[0] for problem in mariadb_only(rendered(tmp_path, operation))}
    assert len(found) >= 8, found


def test_the_check_sees_values_in_an_upsert_and_no_state_statement_has_it():
    """The VALUES() pattern is not blind (and leaves an INSERT's own VALUES list alone); the statements the engine
    sends outside a migration's plan (the state and pacing tables', module constants) hold none either: they are
    the same on MariaDB and MySQL 8 (a derived table's columns by name, MySQL's WL#6312)."""
    assert mariadb_only("INSERT INTO t (a, b) VALUES (1, 2) ON DUPLICATE KEY UPDATE b = VALUES(b)")
    assert mariadb_only("INSERT INTO t (a, b) VALUES (1, 2) ON DUPLICATE KEY UPDATE b = b + 1; SELECT VALUES(a)") == []
    values = re.compile(MARIADB_ONLY[-1][0], re.I)
    found = []
    for module in (state_sql, pacing_sql, console_sql, leases, op_rows):
        for name, value in vars(module).items():
            texts = value if isinstance(value, (tuple, list)) else (value,)
            found += [f"{module.__name__}.{name}" for text in texts
                      if not name.startswith("_") and isinstance(text, str) and values.search(text)]
    assert found == []


def test_alter_clauses_lose_if_exists_and_carry_their_guard(mysql):
    mysql.setenv(dialect.SWITCH, "mysql8")
    assert dialect.shown("ALTER TABLE `s`.`t` ADD COLUMN IF NOT EXISTS `c` int AFTER `b`") == [
        "ALTER TABLE `s`.`t` ADD COLUMN `c` int AFTER `b` /* airmigrate: left out when information_schema.COLUMNS "
        "has column c */"]
    assert dialect.shown("ALTER TABLE `s`.`t` DROP FOREIGN KEY IF EXISTS `f`, DROP INDEX IF EXISTS `f`") == [
        "ALTER TABLE `s`.`t` DROP FOREIGN KEY `f` /* airmigrate: left out unless information_schema.TABLE_CONSTRAINTS "
        "has foreign key f */, DROP INDEX `f` /* airmigrate: left out unless information_schema.STATISTICS has "
        "index f */"]
    assert dialect.shown("RENAME TABLE IF EXISTS `airmigrate`.`r` TO `s`.`t`") == [
        "RENAME TABLE `airmigrate`.`r` TO `s`.`t` /* airmigrate: left out unless information_schema.TABLES has "
        "table r */"]
    # without the switch (a MariaDB server or no server): as written
    mysql.delenv(dialect.SWITCH)
    assert dialect.shown("ALTER TABLE t DROP INDEX IF EXISTS i") == ["ALTER TABLE t DROP INDEX IF EXISTS i"]


def test_set_statement_is_set_then_restored_and_a_block_is_a_procedure_called_once(mysql):
    mysql.setenv(dialect.SWITCH, "mysql8")
    fk = ("SET STATEMENT foreign_key_checks = 0 FOR ALTER TABLE `s`.`t` ADD CONSTRAINT `f` FOREIGN KEY IF NOT EXISTS "
          "(`a`) REFERENCES `s`.`p` (`id`) ON DELETE RESTRICT, ALGORITHM=INPLACE, LOCK=NONE")
    shown = dialect.shown(fk)
    assert shown[:2] == ["SET @airmigrate_saved_foreign_key_checks = @@SESSION.foreign_key_checks",
                         "SET SESSION foreign_key_checks = 0"]
    assert shown[2].startswith("ALTER TABLE `s`.`t` ADD CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES")
    assert shown[3] == "SET SESSION foreign_key_checks = @airmigrate_saved_foreign_key_checks"
    assert [s.always for s in dialect.steps(fk)] == [False, False, False, True]
    block = dialect.shown("BEGIN NOT ATOMIC IF 1 = 1 THEN DROP VIEW `s`.`v`; END IF; END")
    name = block[0].split()[-1]
    assert block == [f"DROP PROCEDURE IF EXISTS {name}", f"CREATE PROCEDURE {name}() BEGIN IF 1 = 1 THEN DROP VIEW "
                     "`s`.`v`; END IF; END", f"CALL {name}()", f"DROP PROCEDURE IF EXISTS {name}"]


class FakeConnection:
    """Answers the guards' information_schema queries from a set of (view, name) present."""
    is_mariadb = True
    state_database = "airmigrate__shop"

    def __init__(self, present: set[tuple[str, str]]):
        self.present, self.asked = present, []

    def execute(self, query, params=()):
        self.asked.append((query, params))
        view = re.search(r"information_schema\.(\w+)", query)
        found = int(bool(view) and (view.group(1), params[-1]) in self.present)
        return type("Cursor", (), {"fetchone": lambda self: (found,)})()


def test_a_step_done_already_sends_nothing_and_a_half_done_one_only_what_is_left(mysql):
    mysql.setenv(dialect.SWITCH, "mysql8")
    drop = "ALTER TABLE `s`.`t` DROP FOREIGN KEY IF EXISTS `f`, DROP INDEX IF EXISTS `f`"
    assert dialect.to_run(FakeConnection(set()), drop) == []
    assert dialect.to_run(FakeConnection({("STATISTICS", "f")}), drop) == [("ALTER TABLE `s`.`t` DROP INDEX `f`",
                                                                            False)]
    add = "ALTER TABLE `s`.`t` ADD INDEX IF NOT EXISTS `i` (`a`), ALGORITHM=INPLACE, LOCK=NONE"
    assert dialect.to_run(FakeConnection({("STATISTICS", "i")}), add) == []  # options alone change nothing
    assert dialect.to_run(FakeConnection(set()), add) == [
        ("ALTER TABLE `s`.`t` ADD INDEX `i` (`a`), ALGORITHM=INPLACE, LOCK=NONE", False)]
    conn = FakeConnection({("TABLES", "r")})
    assert dialect.to_run(conn, "RENAME TABLE IF EXISTS `airmigrate`.`r` TO `s`.`t`") == [
        ("RENAME TABLE `airmigrate`.`r` TO `s`.`t`", False)]
    assert conn.asked[-1][1] == ("airmigrate__shop", "r")  # the state qualifier is the target's state database


def test_the_server_decides_without_the_switch(mysql):
    class MySQL:
        is_mariadb = False
    assert dialect.flavor(MySQL()) == dialect.MYSQL8
    assert dialect.flavor(FakeConnection(set())) == dialect.MARIADB
    assert dialect.flavor(None) == dialect.MARIADB


def test_a_mysql8_column_default_is_read_back_as_a_default_clause_takes_it():
    """MySQL 8's information_schema.COLUMNS gives a literal default bare and an expression marked
    DEFAULT_GENERATED; MariaDB's is already written as a DEFAULT clause takes it (restated by op_columns)."""
    assert as_written("'x'", "", True) == "'x'" and as_written("NULL", "", True) == "NULL"
    assert as_written("it's", "", False) == "'it\\'s'"
    assert as_written("0", "", False) == "'0'"
    assert as_written(None, "", False) is None
    assert as_written("CURRENT_TIMESTAMP(6)", "DEFAULT_GENERATED", False) == "CURRENT_TIMESTAMP(6)"
    assert as_written("rand()", "DEFAULT_GENERATED", False) == "(rand())"
