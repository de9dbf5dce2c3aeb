

def test_rename_column_on_mysql_moves_the_index_and_the_definition_and_goes_back_by_the_live_columns(mysql):
    structure = {**STRUCTURE, "columns": {**STRUCTURE["columns"], "s": {**STRUCTURE["columns"]["s"],
                                                                       "not_null": True, "comment": "the s"}}}
    op = rename_column.RenameColumn(op="rename_column", column="s", to="label")
    steps = rename_column.steps(op, context(structure, {"s": "varchar(40)"}))
    assert steps.expand[0] == ("ALTER TABLE `shop`.`items` ADD COLUMN IF NOT EXISTS `label` varchar(40) COLLATE "
                               "utf8mb4_general_ci")
    assert steps.backfill == ["UPDATE `shop`.`items` SET `label` = `s` WHERE `id` BETWEEN %(lo)s AND %(hi)s AND "
                              "NOT (`label` <=> `s`)"]
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
