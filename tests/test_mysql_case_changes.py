"""A change of case only is a change: on MySQL's default case-insensitive collations 'row' = 'ROW', so a sync
trigger or a backfill that compared with ``<=>`` alone kept the old spelling beside the application's new one (a
lost write). The engine's ``distinct`` compares byte for byte; here on a real server, with the statements the
column operations generate."""

from __future__ import annotations

import pytest
from mysql_support import drop_database, fresh_database, skip_without_server

from airmigrate import db
from airmigrate.engines.mysql import op_columns

skip_without_server()

pytestmark = pytest.mark.server


@pytest.fixture
def target():
    made = fresh_database("amtest_case")
    with db.connect(made, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id INT PRIMARY KEY, s VARCHAR(20) COLLATE utf8mb4_general_ci, "
                     "label VARCHAR(20) COLLATE utf8mb4_general_ci)")
        conn.execute("INSERT INTO items VALUES (1, 'row', 'row'), (2, 'ROW', 'row'), (3, NULL, 'x'), (4, 'y', NULL)")
    yield made
    drop_database(made)


def labels(conn) -> list[tuple]:
    return [tuple(row) for row in conn.execute("SELECT id, s, label FROM items ORDER BY id").fetchall()]


def test_the_sync_trigger_copies_a_change_of_case(target):
    with db.connect(target, autocommit=True) as conn:
        for statement in op_columns.two_way_sync_trigger("am_sync_case", (target.dbname, "items"), "s", "label"):
            conn.execute(statement)
        assert conn.execute("SELECT 'row' = 'ROW'").fetchone()[0] == 1  # the collation the bug needed
        conn.execute("UPDATE items SET s = 'Row' WHERE id = 1")      # the old version changes only the case
        conn.execute("UPDATE items SET label = 'LABEL' WHERE id = 4")  # the new version writes its column
        assert labels(conn)[0] == (1, "Row", "Row")
        assert labels(conn)[3] == (4, "LABEL", "LABEL")


def test_the_backfill_writes_a_value_that_differs_only_in_case(target):
    with db.connect(target, autocommit=True) as conn:
        changed = conn.execute("UPDATE items SET label = s WHERE id BETWEEN 1 AND 4 AND "
                               + op_columns.distinct("label", "s")).rowcount
        assert changed == 3  # row 2 (case only), 3 and 4 (NULL on one side); row 1 is the same bytes
        assert labels(conn) == [(1, "row", "row"), (2, "ROW", "ROW"), (3, None, None), (4, "y", "y")]
