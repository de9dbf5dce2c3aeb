"""The column operations' SQL on MySQL / MariaDB without a server (the server tests are in
test_operations_mysql_columns.py), and the same operations' PostgreSQL SQL unchanged by the engine seam."""

from __future__ import annotations

import pytest

from airmigrate import engines, operations
from airmigrate.engines.mysql import op_columns
from airmigrate.engines.mysql.operations import NOT_ON_MYSQL
from airmigrate.operations import add_column, change_column_type, drop_column, rename_column
from airmigrate.operations.base import OpContext
from airmigrate.stages.generated import restore_statement

MYSQL = engines.named("mysql")
MYSQL_URL, PG_URL = "mysql://root@127.0.0.1:3306/shop", "postgresql://postgres@127.0.0.1/x"


@pytest.fixture
def mysql(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", MYSQL_URL)


@pytest.fixture
def postgres(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", PG_URL)


def context(structure: dict | None = None, types: dict | None = None) -> OpContext:
    return OpContext("0001_m", 0, "shop", "items", "id", types or {}, None, structure)


def column(type_: str, not_null: bool, default: str | None, collation: str | None = None,
           comment: str | None = None) -> dict:
    """A column as engines/mysql/catalog.read_table gives it."""
    return {"type": type_, "not_null": not_null, "default": default, "identity": None, "generated": None,
            "collation": collation, "comment": comment, "statistics": None, "owns_sequence": None, "privileges": []}


STRUCTURE = {"schema": "shop", "table": "items", "comment": None, "privileges": [], "triggers": {},
             "dependents": {}, "referenced_by": {},
             "columns": {"id": column("int(11)", True, None), "a": column("int(11)", True, "7", comment="the a"),
                         "s": column("varchar(40)", False, "NULL", "utf8mb4_general_ci")},
             "constraints": {"PRIMARY": {"kind": "p", "definition": "UNIQUE BTREE (id)", "columns": ["id"],
                                         "index": "UNIQUE BTREE (id)"}},
             "indexes": {"PRIMARY": {"definition": "UNIQUE BTREE (id)", "columns": ["id"], "constraint": "PRIMARY"},
                         "items_a_s": {"definition": "BTREE (a, s)", "columns": ["a", "s"], "constraint": None},
                         "items_ft": {"definition": "FULLTEXT (s)", "columns": ["s"], "constraint": None}}}


def test_add_column_on_mysql_two_triggers_null_safe_batches_and_not_null_in_place(mysql):
    op = add_column.AddColumn(op="add_column", column="score", type="int", default="0", backfill="CHAR_LENGTH(s) + a",
                              not_null=True)
    steps = add_column.steps(op, context())
    assert steps.expand == [
        "ALTER TABLE `shop`.`items` ADD COLUMN IF NOT EXISTS `score` INT DEFAULT 0",
        "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_m_0_i`", "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_m_0_u`",
        "CREATE TRIGGER `shop`.`am_sync_0001_m_0_i` BEFORE INSERT ON `shop`.`items` FOR EACH ROW "
        "SET NEW.`score` = CHAR_LENGTH(new.s) + new.a",
        "CREATE TRIGGER `shop`.`am_sync_0001_m_0_u` BEFORE UPDATE ON `shop`.`items` FOR EACH ROW "
        "SET NEW.`score` = CHAR_LENGTH(new.s) + new.a"]
    assert steps.backfill == ["UPDATE `shop`.`items` SET `score` = CHAR_LENGTH(s) + a WHERE `id` BETWEEN %(lo)s AND "
                              "%(hi)s AND NOT (CAST(`score` AS BINARY) <=> CAST((CHAR_LENGTH(s) + a) AS BINARY))"]
    assert steps.contract == [
        "ALTER TABLE `shop`.`items` MODIFY COLUMN `score` INT NOT NULL DEFAULT 0, ALGORITHM=INPLACE, LOCK=NONE",
        "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_m_0_i`", "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_m_0_u`"]
    assert steps.down[-1] == "ALTER TABLE `shop`.`items` DROP COLUMN IF EXISTS `score`"


def test_add_column_on_postgresql_is_what_it_was(postgres):
    op = add_column.AddColumn(op="add_column", column="verified", type="boolean", backfill="confirmed_at IS NOT NULL",
                              not_null=True)
    steps = add_column.steps(op, OpContext("0001_m", 0, "public", "users", "id"))
    assert steps.expand[1:] == [
        'CREATE OR REPLACE FUNCTION "airmigrate"."am_sync_0001_m_0"() RETURNS trigger LANGUAGE plpgsql AS '
        "'BEGIN NEW.\"verified\" := new.confirmed_at IS NOT NULL; RETURN NEW; END'",
        'CREATE OR REPLACE TRIGGER "am_sync_0001_m_0" BEFORE INSERT OR UPDATE ON "public"."users" FOR EACH ROW '
        'EXECUTE FUNCTION "airmigrate"."am_sync_0001_m_0"()']
    assert steps.backfill == ['UPDATE "public"."users" SET "verified" = confirmed_at IS NOT NULL WHERE "id" BETWEEN '
                              '%(lo)s AND %(hi)s AND "verified" IS DISTINCT FROM (confirmed_at IS NOT NULL)']
    assert steps.contract[0] == ('ALTER TABLE "public"."users" ADD CONSTRAINT "verified_not_null" CHECK ("verified" '
                                 'IS NOT NULL) NOT VALID')
    assert steps.contract[-2:] == ['DROP TRIGGER IF EXISTS "am_sync_0001_m_0" ON "public"."users"',
                                   'DROP FUNCTION IF EXISTS "airmigrate"."am_sync_0001_m_0"()']


def test_drop_column_rollback_on_mysql_puts_it_back_in_place_with_its_definition_and_indexes(mysql):
    steps = drop_column.steps(drop_column.DropColumn(op="drop_column", column="s"),
                              context(STRUCTURE, {"s": "varchar(40)"}))
    assert steps.contract == ["ALTER TABLE `shop`.`items` DROP COLUMN IF EXISTS `s`"]
    assert steps.down == ["ALTER TABLE `shop`.`items` ADD COLUMN IF NOT EXISTS `s` varchar(40) COLLATE "
                          "utf8mb4_general_ci NULL DEFAULT NULL AFTER `a`"]
    # nullable: no NOT NULL step; the plain index comes back, the FULLTEXT one is not rebuilt
    assert steps.down_contract == ["ALTER TABLE `shop`.`items` ADD INDEX `items_a_s` (`a`, `s`)"]
    steps = drop_column.steps(drop_column.DropColumn(op="drop_column", column="a"),
                              context(STRUCTURE, {"a": "int(11)"}))
    assert steps.down == ["ALTER TABLE `shop`.`items` ADD COLUMN IF NOT EXISTS `a` int(11) NULL DEFAULT 7 COMMENT "
                          "'the a' AFTER `id`"]
    assert steps.down_contract[0] == ("ALTER TABLE `shop`.`items` MODIFY COLUMN `a` int(11) NOT NULL DEFAULT 7 "
                                      "COMMENT 'the a', ALGORITHM=INPLACE, LOCK=NONE")


def test_drop_column_rollback_on_postgresql_is_what_it_was(postgres):
    steps = drop_column.steps(drop_column.DropColumn(op="drop_column", column="bio"),
                              OpContext("0001_m", 0, "public", "users", "id", {"bio": "text"}))
    assert steps.down == ['ALTER TABLE "public"."users" ADD COLUMN IF NOT EXISTS "bio" text']
    assert steps.down_contract == []


def test_restore_from_the_snapshot_per_engine(mysql, monkeypatch):
    class Spec:
        key_columns, schema_name, table_name = ("id",), "shop", "items"

    class Migration:
        spec = Spec()

    assert restore_statement(Migration(), "snapshot_m", ["s"]) == (
        "UPDATE `shop`.`items` AS t JOIN `airmigrate`.`snapshot_m` AS s ON t.`id` = s.`id` SET t.`s` = s.`s` "
        "WHERE t.`id` BETWEEN %(lo)s AND %(hi)s AND (NOT (CAST(t.`s` AS BINARY) <=> CAST(s.`s` AS BINARY)))")
    # byte for byte: MariaDB's default collation would take 'ROW 1' and 'row 1' for the same value
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", PG_URL)
    assert restore_statement(Migration(), "snapshot_m", ["s"]) == (
        'UPDATE "shop"."items" AS t SET "s" = s."s" FROM "airmigrate"."snapshot_m" AS s WHERE t."id" = s."id" AND '
        't."id" BETWEEN %(lo)s AND %(hi)s AND (t."s" IS DISTINCT FROM s."s")')


def test_row_trigger_names_fit_mysql_and_long_ones_stay_apart():
    short = op_columns.trigger_names("am_sync_0001_m_0")
    assert short == ("am_sync_0001_m_0_i", "am_sync_0001_m_0_u")
    long_a, long_b = (op_columns.trigger_names("am_sync_" + "x" * 60 + tail) for tail in ("_0", "_1"))
    assert all(len(n) <= 64 for n in long_a + long_b) and set(long_a).isdisjoint(long_b)


def test_two_way_sync_and_cast_back_bodies():
    statements = op_columns.two_way_sync_trigger("am_sync_m_0", ("shop", "items"), "s", "t")
    assert statements[-1] == (
        "CREATE TRIGGER `shop`.`am_sync_m_0_u` BEFORE UPDATE ON `shop`.`items` FOR EACH ROW BEGIN IF NOT "
        "(CAST(NEW.`s` AS BINARY) <=> CAST(OLD.`s` AS BINARY)) THEN SET NEW.`t` = NEW.`s`; ELSEIF NOT "
        "(CAST(NEW.`t` AS BINARY) <=> CAST(OLD.`t` AS BINARY)) THEN SET NEW.`s` = NEW.`t`; END IF; END")
    assert "IF NEW.`t` IS NULL THEN SET NEW.`t` = NEW.`s`; ELSEIF NEW.`s` IS NULL" in statements[-2]
    back = op_columns.cast_back_trigger("am_back_m_0", ("shop", "items"), "a", "a__old", "int")
    assert back[-2].endswith("FOR EACH ROW SET NEW.`a__old` = NEW.`a`")


def test_the_column_operations_mysql_runs_are_not_refused():
    """add_column, drop_column, rename_column and change_column_type load on MySQL (the others are still refused at load, naming the
    way around)."""
    assert set(operations.MODULES) - set(NOT_ON_MYSQL) >= {"add_column", "drop_column", "rename_column",
                                                            "change_column_type"}


def test_rename_column_on_mysql_moves_the_index_and_the_definition_and_goes_back_by_the_live_columns(mysql):
    structure = {**STRUCTURE, "columns": {**STRUCTURE["columns"], "s": {**STRUCTURE["columns"]["s"],
                                                                       "not_null": True, "comment": "the s"}}}
    op = rename_column.RenameColumn(op="rename_column", column="s", to="label")
    steps = rename_column.steps(op, context(structure, {"s": "varchar(40)"}))
    assert steps.expand[0] == ("ALTER TABLE `shop`.`items` ADD COLUMN IF NOT EXISTS `label` varchar(40) COLLATE "
                               "utf8mb4_general_ci AFTER `s`")  # in its place once `s` is dropped
    assert steps.backfill == ["UPDATE `shop`.`items` SET `label` = `s` WHERE `id` BETWEEN %(lo)s AND %(hi)s AND "
                              "NOT (CAST(`label` AS BINARY) <=> CAST(`s` AS BINARY))"]
    assert steps.contract == [
        "ALTER TABLE `shop`.`items` ADD INDEX `items_a_s__am` (`a`, `label`)",
        "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_m_0_i`", "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_m_0_u`",
        "ALTER TABLE `shop`.`items` DROP COLUMN IF EXISTS `s`",
        "ALTER TABLE `shop`.`items` RENAME INDEX `items_a_s__am` TO `items_a_s`",
        "ALTER TABLE `shop`.`items` MODIFY COLUMN `label` varchar(40) COLLATE utf8mb4_general_ci NOT NULL COMMENT "
        "'the s'"]
    before = OpContext("0001_m", 0, "shop", "items", "id", {"s": "varchar(40)"}, frozenset({"id", "a", "s", "label"}))
    assert rename_column.steps(op, before).down[-1] == "ALTER TABLE `shop`.`items` DROP COLUMN IF EXISTS `label`"
    after = OpContext("0001_m", 0, "shop", "items", "id", {"s": "varchar(40)"}, frozenset({"id", "a", "label"}))
    assert rename_column.steps(op, after).down[-1] == "ALTER TABLE `shop`.`items` RENAME COLUMN `label` TO `s`"


def test_rename_column_on_postgresql_keeps_its_do_block(postgres):
    op = rename_column.RenameColumn(op="rename_column", column="bio", to="about")
    steps = rename_column.steps(op, OpContext("0001_m", 0, "public", "users", "id", {"bio": "text"}))
    assert steps.down[-1].startswith("DO $am$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.columns WHERE "
                                     "table_schema = 'public' AND table_name = 'users' AND column_name = 'bio')")
    assert "NEW.\"about\" := NEW.\"bio\"" in steps.expand[1] and steps.expand[2].startswith(
        'CREATE OR REPLACE TRIGGER "am_sync_0001_m_0" BEFORE INSERT OR UPDATE ON "public"."users"')


def test_change_column_type_on_mysql_swaps_under_a_moment_of_lock_tables_and_goes_back_the_same_way(mysql):
    structure = {**STRUCTURE, "columns": {**STRUCTURE["columns"], "a": {**STRUCTURE["columns"]["a"], "comment": None}}}
    op = change_column_type.ChangeColumnType(op="change_column_type", column="a", type="bigint")
    steps = change_column_type.steps(op, context(structure, {"a": "int(11)"}))
    assert steps.expand[0] == "ALTER TABLE `shop`.`items` ADD COLUMN IF NOT EXISTS `a__new` BIGINT AFTER `a`"
    assert steps.expand[-1].endswith("FOR EACH ROW SET NEW.`a__new` = `new`.`a`")  # the assignment converts
    assert steps.backfill == ["UPDATE `shop`.`items` SET `a__new` = `a` WHERE `id` BETWEEN %(lo)s AND %(hi)s AND "
                              "NOT (CAST(`a__new` AS BINARY) <=> CAST((`a`) AS BINARY))"]
    assert steps.contract == [
        "ALTER TABLE `shop`.`items` ADD INDEX `items_a_s__am` (`a__new`, `s`)",
        "LOCK TABLES `shop`.`items` WRITE",
        "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_m_0_i`", "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_m_0_u`",
        "ALTER TABLE `shop`.`items` RENAME COLUMN `a` TO `a__old`, RENAME COLUMN `a__new` TO `a`, ALGORITHM=INSTANT, "
        "LOCK=NONE", "UNLOCK TABLES",
        "ALTER TABLE `shop`.`items` DROP COLUMN `a__old`",
        "ALTER TABLE `shop`.`items` RENAME INDEX `items_a_s__am` TO `items_a_s`",
        "ALTER TABLE `shop`.`items` MODIFY COLUMN `a` BIGINT NOT NULL DEFAULT 7"]
    # the executor keeps LOCK TABLES ... UNLOCK TABLES in one session
    groups = MYSQL.group_statements(steps.contract)
    assert [len(g) for _, g in groups] == [1, 5, 1, 1, 1] and all(auto for auto, _ in groups)
    after = OpContext("0001_m", 0, "shop", "items", "id", {"a": "int(11)"}, frozenset({"id", "a", "s"}), structure)
    down = change_column_type.steps(op, after)
    assert down.down[0:1] + down.down[-2:] == [
        "DROP TRIGGER IF EXISTS `shop`.`am_sync_0001_m_0_i`",
        "CREATE TRIGGER `shop`.`am_back_0001_m_0_i` BEFORE INSERT ON `shop`.`items` FOR EACH ROW SET NEW.`a__old` = "
        "NEW.`a`",
        "CREATE TRIGGER `shop`.`am_back_0001_m_0_u` BEFORE UPDATE ON `shop`.`items` FOR EACH ROW BEGIN IF NOT "
        "(CAST(NEW.`a` AS BINARY) <=> CAST(OLD.`a` AS BINARY)) THEN SET NEW.`a__old` = NEW.`a`; END IF; END"]
    # the table read only as the rows written: no shared locks for the application's writes to deadlock with
    assert down.down_backfill == [
        "UPDATE `shop`.`items` AS t LEFT JOIN `airmigrate`.`snapshot_0001_m` AS s ON s.`id` = t.`id` SET t.`a__old` "
        "= CASE WHEN s.`id` IS NULL THEN t.`a` ELSE s.`a` END WHERE t.`id` BETWEEN %(lo)s AND %(hi)s AND t.`a__old` "
        "IS NULL AND (CASE WHEN s.`id` IS NULL THEN t.`a` ELSE s.`a` END) IS NOT NULL"]
    assert down.down_contract[-1] == "ALTER TABLE `shop`.`items` MODIFY COLUMN `a` int(11) NOT NULL DEFAULT 7"
    assert op_columns.type_change_probe(structure, "a", "date")[2] == (
        "ALTER TABLE `am_probe` MODIFY COLUMN `a` date NOT NULL DEFAULT 7")


def test_what_the_mysql_carry_cannot_take_over_is_refused_with_the_fix(mysql):
    structure = {**STRUCTURE, "referenced_by": {"shop.fk_order_item": {
        "definition": "FOREIGN KEY (item_s) REFERENCES items (s)", "columns": ["item_s"], "name": "fk_order_item",
        "table": ["shop", "orders"]}}}
    problems = rename_column.refusals(rename_column.RenameColumn(op="rename_column", column="s", to="label"),
                                      structure, ("id",))
    assert len(problems) == 2
    assert problems[0].startswith("foreign key shop.fk_order_item (FOREIGN KEY (item_s) REFERENCES items (s)) "
                                  "references shop.items.s: MySQL cannot drop the old column")
    assert "index items_ft (FULLTEXT (s))" in problems[1] and "Drop it first" in problems[1]
    assert rename_column.refusals(rename_column.RenameColumn(op="rename_column", column="a", to="b"), structure,
                                  ("id",)) == []
