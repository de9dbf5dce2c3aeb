"""split_table on MySQL / MariaDB and what surrounds the moved columns, on a real server with the steps run by hand (no
DAG, a few rows): a prefix index goes to the new table with its prefix and comes back with it; the application's
triggers and the generated columns the contract or the rollback would break are refused at preflight, each named with
why and the fix, while the triggers that are safe are not refused and run as before through expand, batch, contract
and the rollback; a staying ON UPDATE CURRENT_TIMESTAMP column keeps its stamps through the rollback."""

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


def split_then_roll_back(target, op, recorded, live_before: set[str], live_after: set[str], while_mirrored=()):
    """Expand, the application's statements `while_mirrored`, the batches, the contract; then the rollback after the
    contract, by hand (the steps the DAGs run, without Airflow)."""
    up = by_hand(target, op, recorded, live_before)
    run(target, up.expand)
    if while_mirrored:
        execute(target, *while_mirrored)
    batch(target, up.backfill)
    run(target, up.contract)
    back = by_hand(target, op, recorded, live_after)
    run(target, back.down)
    batch(target, back.down_backfill)
    run(target, back.down_contract)


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


def application_triggers(target) -> None:
    """notes and its application's triggers: two that name the moved column s (one on notes, one on tags writing
    notes.s), one on notes' updates; an audit of inserts and deletes that names no moved column."""
    execute(target,
            "CREATE TABLE notes (id INT PRIMARY KEY, a INT NOT NULL, s VARCHAR(40), changed_at DATETIME(6))",
            "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, note INT, what VARCHAR(20))",
            "CREATE TABLE tags (id INT PRIMARY KEY, note INT)",
            "CREATE TRIGGER notes_s_upper BEFORE INSERT ON notes FOR EACH ROW SET NEW.s = UPPER(NEW.s)",
            "CREATE TRIGGER notes_touched BEFORE UPDATE ON notes FOR EACH ROW SET NEW.changed_at = NOW(6)",
            "CREATE TRIGGER notes_added AFTER INSERT ON notes FOR EACH ROW INSERT INTO audit (note, what) "
            "VALUES (NEW.id, 'added')",
            "CREATE TRIGGER notes_gone AFTER DELETE ON notes FOR EACH ROW INSERT INTO audit (note, what) "
            "VALUES (OLD.id, 'deleted')",
            "CREATE TRIGGER tags_label AFTER INSERT ON tags FOR EACH ROW UPDATE notes SET s = 'tagged' "
            "WHERE id = NEW.note",
            f"INSERT INTO notes (id, a, s) SELECT seq, seq % 7, CONCAT('row ', seq) FROM seq_1_to_{ROWS}")


def test_the_applications_triggers_the_contract_or_the_rollback_would_break_are_refused(target):
    application_triggers(target)
    structure, _ = structure_of(target)
    why = split_table.refusals(split("s"), structure, ("id",))
    assert sorted(w.split(" ", 2)[1] for w in why) == ["notes_s_upper", "notes_touched", "tags_label"], why
    named = {w.split(" ", 2)[1]: w for w in why}
    assert named["notes_s_upper"].startswith(
        f"trigger notes_s_upper (BEFORE INSERT on {target.dbname}.notes) names moved column s: MySQL does not look "
        "into triggers when the contract drops a column")
    assert named["tags_label"].startswith(f"trigger tags_label (AFTER INSERT on {target.dbname}.tags) names moved "
                                          "column s")
    assert "a rollback after the contract copies back" in named["notes_touched"] and "Drop it" in named["notes_touched"]
    # moving `a` instead: no trigger names it, but notes_touched still runs on every row the rollback copies back
    [why] = split_table.refusals(split("a"), structure, ("id",))
    assert why.startswith("trigger notes_touched (BEFORE UPDATE on")
    # the server agrees on the first reason: once s is gone, every insert fails in notes_s_upper
    execute(target, "ALTER TABLE notes DROP COLUMN s")
    with pytest.raises(pymysql.err.OperationalError, match="Unknown column 's'"):
        execute(target, "INSERT INTO notes (id, a) VALUES (1000, 1)")


def test_a_trigger_in_another_database_naming_a_moved_column_is_refused_too(target):
    """A trigger of another database writing db.notes.s breaks the same way at the contract; the database is named
    with the trigger (trigger names are per database)."""
    application_triggers(target)
    execute(target, "DROP TRIGGER notes_s_upper", "DROP TRIGGER notes_touched", "DROP TRIGGER tags_label")
    other = fresh_database("amtest_opsplit_other")
    try:
        execute(other, "CREATE TABLE events (id INT PRIMARY KEY, note INT)",
                f"CREATE TRIGGER events_mark AFTER INSERT ON events FOR EACH ROW UPDATE `{target.dbname}`.notes "
                "SET s = 'marked' WHERE id = NEW.note")
        structure, _ = structure_of(target)
        [why] = split_table.refusals(split("s"), structure, ("id",))
        assert why.startswith(f"trigger {other.dbname}.events_mark (AFTER INSERT on {other.dbname}.events) names "
                              "moved column s"), why
        assert split_table.refusals(split("a"), structure, ("id",)) == [], "it names no other column"
        execute(target, "ALTER TABLE notes DROP COLUMN s")  # what the contract would leave behind
        with pytest.raises(pymysql.err.OperationalError, match="Unknown column 's'"):
            execute(other, "INSERT INTO events VALUES (1, 1)")
    finally:
        drop_database(other)


def test_the_applications_insert_and_delete_triggers_naming_no_moved_column_run_as_before(target):
    """The audit of inserts and deletes stays (not refused): through expand, batch, contract and the rollback after
    it, the audit holds the application's own inserts and deletes and nothing of airmigrate's steps."""
    application_triggers(target)
    execute(target, "DROP TRIGGER notes_s_upper", "DROP TRIGGER notes_touched", "DROP TRIGGER tags_label",
            "DELETE FROM audit")
    op, recorded = split("s"), structure_of(target)
    assert split_table.refusals(op, recorded[0], ("id",)) == []
    split_then_roll_back(target, op, recorded, {"id", "a", "s", "changed_at"}, {"id", "a", "changed_at"},
                         ("INSERT INTO notes (id, a, s) VALUES (1001, 1, 'new')", "DELETE FROM notes WHERE id = 2"))
    assert one(target, "SELECT GROUP_CONCAT(note, ' ', what ORDER BY id) FROM audit") == ("1001 added,2 deleted",)
    assert one(target, "SELECT s FROM notes WHERE id = 1001") == ("new",)
    assert one(target, "SELECT COUNT(*) FROM notes WHERE s = CONCAT('row ', id)")[0] == ROWS - 1


def test_a_generated_column_reading_a_moved_column_or_moved_itself_is_refused(target):
    execute(target, "CREATE TABLE notes (id INT PRIMARY KEY, s VARCHAR(40), n INT, s_len INT AS (CHAR_LENGTH(s)) "
                    "VIRTUAL, n2 INT AS (n * 2) STORED)")
    structure, _ = structure_of(target)
    [why] = split_table.refusals(split("s"), structure, ("id",))
    assert why.startswith(f"generated column s_len of {target.dbname}.notes is computed from moved column s "
                          "(char_length(`s`)): the contract could not drop s"), why
    [why] = split_table.refusals(split("n", "n2"), structure, ("id",))  # n2 moves with what it reads: still refused
    assert why.startswith(f"{target.dbname}.notes.n2 is a generated column: the new table would hold a plain copy")
    assert split_table.refusals(split("n"), structure, ("id",))[0].startswith("generated column n2 of")
    with pytest.raises(pymysql.err.OperationalError, match="s"):  # what the contract would have met
        execute(target, "ALTER TABLE notes DROP COLUMN s")


def test_the_rollback_after_the_contract_leaves_an_on_update_timestamp_as_it_was(target):
    """`changed_at ... ON UPDATE CURRENT_TIMESTAMP`: the rollback's batches copy the moved column home with an UPDATE
    of each row, which would stamp every row with the rollback's time. Moving changed_at itself is refused: the new
    table's copy would not be stamped."""
    execute(target,
            "CREATE TABLE notes (id INT PRIMARY KEY, a INT NOT NULL, s VARCHAR(40), changed_at TIMESTAMP(6) NOT NULL "
            "DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))",
            f"INSERT INTO notes (id, a, s, changed_at) SELECT seq, seq % 7, CONCAT('row ', seq), "
            f"'2020-01-01 00:00:00' + INTERVAL seq MINUTE FROM seq_1_to_{ROWS}")
    before = one(target, "SELECT MD5(GROUP_CONCAT(id, a, s, changed_at ORDER BY id)) FROM notes")
    op, recorded = split("s"), structure_of(target)
    [why] = split_table.refusals(split("s", "changed_at"), recorded[0], ("id",))
    assert why.startswith(f"{target.dbname}.notes.changed_at is stamped by the server on every update (ON UPDATE "
                          "current_timestamp(6))"), why
    split_then_roll_back(target, op, recorded, {"id", "a", "s", "changed_at"}, {"id", "a", "changed_at"})
    assert one(target, "SELECT MD5(GROUP_CONCAT(id, a, s, changed_at ORDER BY id)) FROM notes") == before
