"""split_table on MySQL / MariaDB and what surrounds the moved columns, on a real server with the steps run by hand (no
DAG, a few rows): a prefix index goes to the new table with its prefix and comes back with it."""

from __future__ import annotations

import pymysql
import pytest
from mysql_support import drop_database, fresh_database, skip_without_server
from pydantic import TypeAdapter

from airmigrate import db, engines
from airmigrate.operations import OpContext, Operation, split_table, steps_for

skip_without_server()

pytestmark = pytest.mark.server

ROWS = 60


@pytest.fixture
def target(monkeypatch):
    made = fresh_database("amtest_opsplit_shape")
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", made.url())
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
    yield made
    drop_database(made)


def split(*columns: str):
    return TypeAdapter(Operation).validate_python({"op": "split_table", "new_table": "note_texts",
                                                   "columns": list(columns)})


def execute(target, *statements: str, params=None):
    with db.connect(target, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement, params)


def one(target, query: str):
    with db.connect(target) as conn:
        return conn.execute(query).fetchone()


def structure_of(target, table: str = "notes") -> tuple[dict, dict]:
    engine = engines.current()
    with db.connect(target) as conn:
        return (engine.read_table_structure(conn, target.dbname, table),
                engine.column_types(conn, target.dbname, table))


def by_hand(target, op, recorded: tuple[dict, dict], live: set[str]):
    structure, types = recorded
    return steps_for(op, OpContext("0003_by_hand", 0, target.dbname, "notes", "id", types, frozenset(live), structure))


def run(target, statements: list[str]) -> None:
    engines.current().run_ddl(target, ";\n".join(statements))


def batch(target, statements: list[str]) -> None:
    for statement in statements:
        execute(target, statement, params={"lo": 1, "hi": 10 ** 6})


def prefixes(target, table: str) -> dict[str, list[tuple]]:
    """index -> [(column, SUB_PART, NON_UNIQUE)] in order, PRIMARY left out."""
    out: dict[str, list[tuple]] = {}
    with db.connect(target) as conn:
        for name, column, length, non_unique in conn.execute(
                "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART, NON_UNIQUE FROM information_schema.STATISTICS WHERE "
                "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND INDEX_NAME <> 'PRIMARY' ORDER BY INDEX_NAME, "
                "SEQ_IN_INDEX", (table,)).fetchall():
            out.setdefault(name, []).append((column, length, non_unique))
    return out


def test_a_prefix_index_goes_to_the_new_table_and_back_with_its_prefix(target):
    """KEY (body(10)) on a TEXT and UNIQUE (title(12)) on a VARCHAR: built on the whole value, the first is another
    index (MariaDB makes it body(768); MySQL 8 refuses a TEXT key without a length) and the second another rule
    (unique over the whole title, not its first 12 characters)."""
    execute(target,
            "CREATE TABLE notes (id INT PRIMARY KEY, a INT NOT NULL, body TEXT, title VARCHAR(200), "
            "KEY notes_body (body(10)), UNIQUE KEY notes_title (title(12)))",
            f"INSERT INTO notes SELECT seq, seq % 7, REPEAT(CHAR(64 + seq % 26), 50), CONCAT('title ', seq, ' ', "
            f"REPEAT('y', 40)) FROM seq_1_to_{ROWS}")
    original = prefixes(target, "notes")
    assert original == {"notes_body": [("body", 10, 1)], "notes_title": [("title", 12, 0)]}
    before = one(target, "SELECT MD5(GROUP_CONCAT(id, a, body, title ORDER BY id)) FROM notes")
    op, recorded = split("body", "title"), structure_of(target)
    assert split_table.refusals(op, recorded[0], ("id",)) == []  # the UNIQUE one's columns are (title), no prefix
    up = by_hand(target, op, recorded, {"id", "a", "body", "title"})
    run(target, up.expand)
    batch(target, up.backfill)
    run(target, up.contract)
    assert prefixes(target, "note_texts") == original
    with pytest.raises(pymysql.err.IntegrityError):  # the rule is the prefix's: the first 12 characters are unique
        execute(target, "INSERT INTO note_texts (id, title) VALUES (%(id)s, 'title 1 yyyy and more')",
                params={"id": 10 * ROWS})

    back = by_hand(target, op, recorded, {"id", "a"})  # the rollback after the contract
    run(target, back.down)
    batch(target, back.down_backfill)
    run(target, back.down_contract)
    assert prefixes(target, "notes") == original
    assert one(target, "SELECT MD5(GROUP_CONCAT(id, a, body, title ORDER BY id)) FROM notes") == before
