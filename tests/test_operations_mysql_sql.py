"""The MySQL / MariaDB SQL of add_index, add_unique, add_check, add_foreign_key, drop_table, rename_table,
rename_index, create_table's rollback and split_table, rendered without a server (issue 22); the refusals of what MySQL cannot
do (rename_constraint, a partial index) naming the field, the reason and the fix; and the engine's reading of that
SQL (one statement per anonymous block, the online guess and lint without findings). The same operations on a real
server: tests/test_operations_mysql_constraints.py."""

from __future__ import annotations

import pytest
import yaml
from pydantic import TypeAdapter

from airmigrate import engines
from airmigrate.errors import SpecError
from airmigrate.operations import OpContext, Operation, split_table, steps_for
from airmigrate.spec import load_migration

MYSQL_URL = "mysql://root@127.0.0.1:3306/shop"


@pytest.fixture
def mysql(monkeypatch):
    """The configured target is a MySQL one (nothing connects)."""
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", MYSQL_URL)
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
    assert engines.current().name == "mysql"


def steps(op: dict, types: dict | None = None):
    return steps_for(TypeAdapter(Operation).validate_python(op),
                     OpContext("0001_x", 0, "shop", "items", "id", types if types is not None else {"id": "int(11)"}))


def test_add_index_and_add_unique_are_online_alters_with_their_undoing(mysql):
    index = steps({"op": "add_index", "name": "items_a", "columns": ["a", "b"]})
    assert index.expand == ["ALTER TABLE `shop`.`items` ADD INDEX IF NOT EXISTS `items_a` (`a`, `b`)"]
    assert index.down == ["ALTER TABLE `shop`.`items` DROP INDEX IF EXISTS `items_a`"]
    unique = steps({"op": "add_unique", "name": "items_s", "columns": ["s"]})
    assert unique.expand == ["ALTER TABLE `shop`.`items` ADD UNIQUE INDEX IF NOT EXISTS `items_s` (`s`)"]
    assert unique.down == ["ALTER TABLE `shop`.`items` DROP INDEX IF EXISTS `items_s`"]
    both = steps({"op": "add_index", "name": "items_u", "columns": ["s"], "unique": True})
    assert both.expand == ["ALTER TABLE `shop`.`items` ADD UNIQUE INDEX IF NOT EXISTS `items_u` (`s`)"]


def test_add_check_is_one_alter_the_executor_judges(mysql):
    check = steps({"op": "add_check", "name": "items_a_positive", "expression": "a >= 0"})
    assert check.expand == ["ALTER TABLE `shop`.`items` ADD CONSTRAINT IF NOT EXISTS `items_a_positive` CHECK (a >= 0)"]
    assert check.down == ["ALTER TABLE `shop`.`items` DROP CONSTRAINT IF EXISTS `items_a_positive`"]
    # no ALGORITHM written: the executor asks the server (COPY) and refuses it unless `executor: pt-osc`
    assert engines.current().analyze(check.expand[0]).lock == "LOCK=SHARED"


def test_add_foreign_key_in_place_with_checks_off_then_a_batched_orphan_scan(mysql):
    fk = steps({"op": "add_foreign_key", "name": "items_parent", "columns": ["a"], "references_table": "parents",
                "references_columns": ["id"], "on_delete": "CASCADE"})
    add, scan = fk.expand
    assert add == ("SET STATEMENT foreign_key_checks = 0 FOR ALTER TABLE `shop`.`items` ADD CONSTRAINT `items_parent` "
                   "FOREIGN KEY IF NOT EXISTS (`a`) REFERENCES `shop`.`parents` (`id`) ON DELETE CASCADE, "
                   "ALGORITHM=INPLACE, LOCK=NONE")
    assert scan.startswith("BEGIN NOT ATOMIC DECLARE lo int(11); DECLARE hi int(11);") and scan.endswith("END")
    assert "LIMIT 10000" in scan and "c.`id` BETWEEN lo AND hi AND c.`a` IS NOT NULL AND NOT EXISTS " \
        "(SELECT 1 FROM `shop`.`parents` r WHERE r.`id` = c.`a`)" in scan
    assert "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = orphans" in scan
    # the plan: the ALTER inside SET STATEMENT ... FOR in place without a lock; the scan consistent reads only
    assert engines.current().analyze(add).lock == "LOCK=NONE"
    assert engines.current().analyze(scan).locks == () and engines.current().analyze(scan).effect == "scan"
    assert fk.down == ["ALTER TABLE `shop`.`items` DROP FOREIGN KEY IF EXISTS `items_parent`, "
                       "DROP INDEX IF EXISTS `items_parent`"]
    other_schema = steps({"op": "add_foreign_key", "name": "f", "columns": ["a", "b"], "references_table": "x.p",
                          "references_columns": ["c", "d"]})
    assert "REFERENCES `x`.`p` (`c`, `d`)" in other_schema.expand[0]
    assert "r.`c` = c.`a` AND r.`d` = c.`b`" in other_schema.expand[1]


def test_drop_table_moves_it_into_the_airmigrate_database_and_back(mysql):
    drop = steps({"op": "drop_table", "table": "old_items"})
    assert drop.contract == ["RENAME TABLE IF EXISTS `shop`.`old_items` TO `airmigrate`.`dropped_0001_x_old_items`"]
    assert drop.down == ["RENAME TABLE IF EXISTS `airmigrate`.`dropped_0001_x_old_items` TO `shop`.`old_items`"]
    assert drop.destructive


def test_rename_table_view_first_then_one_atomic_swap(mysql):
    rename = steps({"op": "rename_table", "to": "goods"})
    assert rename.expand == ["CREATE OR REPLACE ALGORITHM = MERGE VIEW `shop`.`goods` AS SELECT * FROM `shop`.`items`"]
    assert "RENAME TABLE `shop`.`goods` TO `shop`.`am_parked_goods`, `shop`.`items` TO `shop`.`goods`; " \
        "DROP VIEW `shop`.`am_parked_goods`;" in rename.contract[0]
    assert "CREATE ALGORITHM = MERGE VIEW `shop`.`items` AS SELECT * FROM `shop`.`goods`" in rename.down[0]
    assert "RENAME TABLE `shop`.`items` TO `shop`.`am_parked_items`, `shop`.`goods` TO `shop`.`items`" in \
        rename.down_contract[0]
    assert "DROP VIEW `shop`.`goods`" in rename.down_contract[1]
    assert engines.current().analyze(rename.contract[0]).lock == "LOCK=EXCLUSIVE"  # a moment's metadata lock


def test_rename_index_and_create_tables_rollback(mysql):
    rename = steps({"op": "rename_index", "name": "a_old", "to": "a_new"})
    assert rename.expand == ["ALTER TABLE `shop`.`items` RENAME INDEX IF EXISTS `a_old` TO `a_new`"]
    assert rename.down == ["ALTER TABLE `shop`.`items` RENAME INDEX IF EXISTS `a_new` TO `a_old`"]
    create = steps({"op": "create_table", "columns": {"id": "bigint", "n": "varchar(20)"}, "checks": {"c": "n <> ''"}})
    assert create.expand == ["CREATE TABLE IF NOT EXISTS `shop`.`items` (`id` BIGINT NOT NULL, `n` VARCHAR(20), "
                             "PRIMARY KEY (`id`), CONSTRAINT `c` CHECK (n <> ''))"]
    assert "IF EXISTS (SELECT 1 FROM `shop`.`items`) THEN RENAME TABLE `shop`.`items` TO " \
        "`airmigrate`.`created_0001_x_items`; ELSE DROP TABLE `shop`.`items`; END IF;" in create.down[0]


def test_every_generated_statement_is_one_statement_the_executor_runs_alone_and_lint_accepts(mysql, tmp_path):
    engine = engines.current()
    ops = [{"op": "add_index", "name": "i", "columns": ["a"]}, {"op": "add_unique", "name": "u", "columns": ["s"]},
           {"op": "add_foreign_key", "name": "f", "columns": ["a"], "references_table": "p",
            "references_columns": ["id"]}, {"op": "drop_table", "table": "t2"}, {"op": "rename_table", "to": "goods"},
           {"op": "rename_index", "name": "i", "to": "j"}]
    for op in ops:
        generated = steps(op)
        for phase in ("expand", "contract", "down", "down_contract"):
            statements = getattr(generated, phase)
            text = ";\n".join(statements)
            assert engine.split_statements(text) == statements, (op, phase)
            assert all(auto for auto, _ in engine.group_statements(statements))
            role = {"expand": "up", "contract": "cleanup"}.get(phase, "down")
            findings = engine.lint_sql(tmp_path / "x.sql", text, role, "", ("id",), True)
            assert findings == [], (op, phase, findings)


def test_the_online_guess_reads_mariadbs_if_exists_clauses():
    from_engine = engines.named("mysql")
    for statement, mode in (("ALTER TABLE t ADD INDEX IF NOT EXISTS i (a)", "LOCK=NONE"),
                            ("ALTER TABLE t RENAME INDEX IF EXISTS a TO b", "LOCK=NONE"),
                            ("ALTER TABLE t ADD CONSTRAINT IF NOT EXISTS c CHECK (a <> 'IF EXISTS')", "LOCK=SHARED")):
        assert from_engine.analyze(statement).lock == mode, statement


def write(tmp_path, operations: list[dict]):
    folder = tmp_path / "0001_on_mysql"
    folder.mkdir()
    (folder / "migration.yaml").write_text(yaml.safe_dump(
        {"description": "x", "table": "items", "operations": operations}))
    return folder


def test_rename_constraint_is_refused_at_load_naming_the_field_the_reason_and_the_fix(mysql, tmp_path):
    folder = write(tmp_path, [{"op": "rename_constraint", "name": "items_chk", "to": "items_a_chk"}])
    with pytest.raises(SpecError) as error:
        load_migration(folder)
    assert "operations" in error.value.field and "op" in error.value.field
    assert "no RENAME CONSTRAINT" in error.value.problem
    assert "op: rename_index" in error.value.fix and "up.mysql.sql" in error.value.fix


def test_a_partial_index_is_refused_at_load_naming_where_and_the_fix(mysql, tmp_path):
    folder = write(tmp_path, [{"op": "add_index", "name": "i", "columns": ["a"], "where": "a > 0"}])
    with pytest.raises(SpecError) as error:
        load_migration(folder)
    assert "where" in error.value.field
    assert "no partial indexes" in error.value.problem and "generated column" in error.value.fix


def test_the_operations_that_run_on_mysql_load_there(mysql, tmp_path):
    folder = write(tmp_path, [{"op": "add_index", "name": "i", "columns": ["a"]},
                              {"op": "add_unique", "name": "u", "columns": ["s"]},
                              {"op": "add_check", "name": "c", "expression": "a >= 0"},
                              {"op": "rename_index", "name": "i", "to": "j"}])
    assert [op.op for op in load_migration(folder).spec.operations] == ["add_index", "add_unique", "add_check",
                                                                          "rename_index"]


# split_table: the table before the migration as catalog.read_table records it (s: indexed, n: NOT NULL with a
# default and a comment, an index of the key and n)
SPLIT_STRUCTURE = {
    "schema": "shop", "table": "items", "comment": None, "privileges": [], "triggers": {}, "referenced_by": {},
    "dependents": {},
    "columns": {name: {"type": type_, "not_null": not_null, "default": default, "collation": collation,
                       "comment": comment, "generated": None, "identity": None, "statistics": None,
                       "owns_sequence": None, "privileges": []}
                for name, type_, not_null, default, collation, comment in (
                    ("id", "int(11)", True, None, None, None), ("a", "int(11)", True, None, None, None),
                    ("s", "varchar(40)", False, "NULL", "utf8mb4_general_ci", None),
                    ("n", "int(11)", True, "7", None, "the n"))},
    "indexes": {"PRIMARY": {"definition": "UNIQUE BTREE (id)", "columns": ["id"], "constraint": "PRIMARY"},
                "items_s": {"definition": "BTREE (s)", "columns": ["s"], "constraint": None},
                "items_id_n": {"definition": "UNIQUE BTREE (id, n)", "columns": ["id", "n"], "constraint": "items_id_n"}},
    "constraints": {"PRIMARY": {"kind": "p", "definition": "UNIQUE BTREE (id)", "columns": ["id"],
                                "index": "UNIQUE BTREE (id)"},
                    "items_id_n": {"kind": "u", "definition": "UNIQUE BTREE (id, n)", "columns": ["id", "n"],
                                   "index": "UNIQUE BTREE (id, n)"}}}
SPLIT_TYPES = {"id": "int(11)", "a": "int(11)", "s": "varchar(40)", "n": "int(11)"}


def split(live: frozenset | None, structure=SPLIT_STRUCTURE):
    op = TypeAdapter(Operation).validate_python({"op": "split_table", "new_table": "item_texts", "columns": ["s", "n"]})
    return steps_for(op, OpContext("0001_x", 0, "shop", "items", "id", SPLIT_TYPES, live, structure))


def test_split_table_new_table_three_after_triggers_and_batches_that_lock_what_they_copy(mysql):
    up = split(frozenset(SPLIT_TYPES))
    new, items = "`shop`.`item_texts`", "`shop`.`items`"
    upsert = (f"INSERT INTO {new} (`id`, `s`, `n`) VALUES (NEW.`id`, NEW.`s`, NEW.`n`) ON DUPLICATE KEY UPDATE "
              "`s` = NEW.`s`, `n` = NEW.`n`")  # the trigger's row by name: no VALUES(), deprecated on MySQL 8
    assert up.expand == [
        f"CREATE TABLE IF NOT EXISTS {new} (`id` int(11) NOT NULL, `s` varchar(40) COLLATE utf8mb4_general_ci NULL, "
        "`n` int(11) NULL, PRIMARY KEY (`id`))",
        f"ALTER TABLE {new} ADD INDEX `items_s__am` (`s`)",  # built while the table is empty
        f"ALTER TABLE {new} ADD UNIQUE INDEX `items_id_n__am` (`id`, `n`)",
        "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_x_0_d`",  # delete first: no copied row outlives its delete
        f"CREATE TRIGGER `shop`.`am_sync_0001_x_0_d` AFTER DELETE ON {items} FOR EACH ROW DELETE FROM {new} "
        "WHERE `id` = OLD.`id`",
        "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_x_0_u`",
        f"CREATE TRIGGER `shop`.`am_sync_0001_x_0_u` AFTER UPDATE ON {items} FOR EACH ROW BEGIN IF NOT "
        f"(CAST(NEW.`id` AS BINARY) <=> CAST(OLD.`id` AS BINARY)) THEN DELETE FROM {new} WHERE `id` = OLD.`id`; "
        f"END IF; {upsert}; END",
        "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_x_0_i`",
        f"CREATE TRIGGER `shop`.`am_sync_0001_x_0_i` AFTER INSERT ON {items} FOR EACH ROW {upsert}"]
    assert up.backfill == [
        f"INSERT INTO {new} (`id`, `s`, `n`) SELECT `id`, `s`, `n` FROM {items} AS `am_row` WHERE `id` BETWEEN %(lo)s "
        "AND %(hi)s LOCK IN SHARE MODE ON DUPLICATE KEY UPDATE `s` = `am_row`.`s`, `n` = `am_row`.`n`"]
    assert up.contract == [
        "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_x_0_i`", "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_x_0_u`",
        "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_x_0_d`",
        f"ALTER TABLE {items} DROP INDEX `items_id_n`",  # else MySQL would shrink it to (id)
        f"ALTER TABLE {items} DROP INDEX `items_s`",
        f"ALTER TABLE {items} DROP COLUMN `s`, DROP COLUMN `n`",
        f"ALTER TABLE {new} RENAME INDEX `items_s__am` TO `items_s`",
        f"ALTER TABLE {new} RENAME INDEX `items_id_n__am` TO `items_id_n`",
        f"ALTER TABLE {new} MODIFY COLUMN `n` int(11) NOT NULL DEFAULT 7 COMMENT 'the n', ALGORITHM=INPLACE, "
        "LOCK=NONE"]
    assert up.destructive and not up.dropped_columns  # the new table keeps the values: no snapshot needed


def test_split_table_rollback_before_and_after_the_contract(mysql):
    new, items = "`shop`.`item_texts`", "`shop`.`items`"
    before = split(frozenset(SPLIT_TYPES))
    after = split(frozenset({"id", "a"}))
    mirror = (f"UPDATE {items} SET `s` = NEW.`s`, `n` = NEW.`n` WHERE `id` = NEW.`id` AND (NOT (CAST(`s` AS BINARY) "
              "<=> CAST(NEW.`s` AS BINARY)) OR NOT (CAST(`n` AS BINARY) <=> CAST(NEW.`n` AS BINARY)))")
    drop_up = ["DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_x_0_i`", "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_x_0_u`",
               "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_x_0_d`"]
    back = ["DROP TRIGGER IF EXISTS `shop`.`am_back_0001_x_0_i`",
            f"CREATE TRIGGER `shop`.`am_back_0001_x_0_i` AFTER INSERT ON {new} FOR EACH ROW {mirror}",
            "DROP TRIGGER IF EXISTS `shop`.`am_back_0001_x_0_u`",
            f"CREATE TRIGGER `shop`.`am_back_0001_x_0_u` AFTER UPDATE ON {new} FOR EACH ROW {mirror}"]
    assert before.down == drop_up  # the old table still holds every value: nothing to copy back
    assert after.down == drop_up + [
        f"ALTER TABLE {items} ADD COLUMN `s` varchar(40) COLLATE utf8mb4_general_ci NULL DEFAULT NULL AFTER `a`",
        f"ALTER TABLE {items} ADD COLUMN `n` int(11) NULL DEFAULT 7 COMMENT 'the n' AFTER `s`"] + back
    batch = (f"UPDATE {new} AS x STRAIGHT_JOIN {items} AS o ON o.`id` = x.`id` SET o.`s` = x.`s`, o.`n` = x.`n` "
             "WHERE x.`id` BETWEEN %(lo)s AND %(hi)s AND (NOT (CAST(o.`s` AS BINARY) <=> CAST(x.`s` AS BINARY)) OR "
             "NOT (CAST(o.`n` AS BINARY) <=> CAST(x.`n` AS BINARY)))")
    assert before.down_backfill == [] and after.down_backfill == [batch]
    assert before.down_contract == [f"DROP TABLE IF EXISTS {new}"]
    assert after.down_contract == [
        f"ALTER TABLE {items} ADD INDEX `items_s` (`s`)",
        f"ALTER TABLE {items} MODIFY COLUMN `n` int(11) NOT NULL DEFAULT 7 COMMENT 'the n', ALGORITHM=INPLACE, LOCK=NONE",
        f"ALTER TABLE {items} ADD UNIQUE INDEX `items_id_n` (`id`, `n`)",
        f"DROP TABLE IF EXISTS {new}"]


def test_split_table_statements_run_alone_lint_clean_and_common_to_mariadb_and_mysql_8(mysql, tmp_path):
    engine = engines.current()
    for generated in (split(frozenset(SPLIT_TYPES)), split(frozenset({"id", "a"})), split(None, None)):
        for phase in ("expand", "backfill", "contract", "down", "down_backfill", "down_contract"):
            statements = getattr(generated, phase)
            text = ";\n".join(statements)
            assert engine.split_statements(text) == statements, phase
            if "backfill" not in phase:
                assert all(auto for auto, _ in engine.group_statements(statements)), phase
            role = {"expand": "up", "contract": "cleanup", "backfill": "backfill"}.get(phase, "down")
            findings = engine.lint_sql(tmp_path / "x.sql", text, role, "", ("id",), True)
            assert findings == [], (phase, findings)
            for statement in statements:  # MariaDB-only forms the other helper removes: none added here
                assert "NOT ATOMIC" not in statement and "SET STATEMENT" not in statement
                assert not (statement.startswith("ALTER") and " IF " in statement), statement


def test_split_table_refuses_what_the_new_table_cannot_take(mysql):
    op = TypeAdapter(Operation).validate_python({"op": "split_table", "new_table": "item_texts", "columns": ["s"]})
    assert split_table.refusals(op, SPLIT_STRUCTURE, ("id",)) == []
    fulltext = {**SPLIT_STRUCTURE, "indexes": {**SPLIT_STRUCTURE["indexes"], "items_s_text": {
        "definition": "FULLTEXT (s)", "columns": ["s"], "constraint": None}}}
    [why] = split_table.refusals(op, fulltext, ("id",))
    assert "index items_s_text (FULLTEXT (s))" in why and "Drop it first" in why
    spanning = {**SPLIT_STRUCTURE, "indexes": {**SPLIT_STRUCTURE["indexes"], "items_a_s": {
        "definition": "BTREE (a, s)", "columns": ["a", "s"], "constraint": None}}}
    assert any("spans moved and staying columns" in why for why in split_table.refusals(op, spanning, ("id",)))
    key = TypeAdapter(Operation).validate_python({"op": "split_table", "new_table": "t", "columns": ["id"]})
    assert any("primary key" in why for why in split_table.refusals(key, SPLIT_STRUCTURE, ("id",)))


def test_split_table_refuses_checks_foreign_keys_and_cascades_the_triggers_cannot_follow(mysql):
    op = TypeAdapter(Operation).validate_python({"op": "split_table", "new_table": "item_texts", "columns": ["s"]})
    check = {**SPLIT_STRUCTURE, "checks": {"s_short": {"definition": "char_length(`s`) < 30", "columns": ["s"]},
                                            "a_positive": {"definition": "`a` > 0", "columns": ["a"]}}}
    [why] = split_table.refusals(op, check, ("id",))
    assert why.startswith("CHECK s_short (char_length(`s`) < 30) on shop.items uses a moved column") and \
        "add_check" in why
    fk = {"columns": ["s"], "definition": "FOREIGN KEY (s) REFERENCES shop.codes (code) ON DELETE RESTRICT ON UPDATE "
          "RESTRICT", "on_delete": "RESTRICT", "on_update": "RESTRICT"}
    [why] = split_table.refusals(op, {**SPLIT_STRUCTURE, "references": {"items_code": fk}}, ("id",))
    assert "foreign key items_code" in why and "cannot drop a column a foreign key uses" in why
    cascade = {**fk, "columns": ["a"], "on_delete": "CASCADE"}
    [why] = split_table.refusals(op, {**SPLIT_STRUCTURE, "references": {"items_parent": cascade}}, ("id",))
    assert "MySQL runs no trigger for them" in why and "RESTRICT" in why
    set_null = {**fk, "columns": ["a"], "on_delete": "SET NULL"}  # a staying column set NULL: the new table is fine
    assert split_table.refusals(op, {**SPLIT_STRUCTURE, "references": {"items_parent": set_null}}, ("id",)) == []
