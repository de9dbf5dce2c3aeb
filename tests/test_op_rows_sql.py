"""The SQL delete_rows and move_rows generate on MySQL / MariaDB, rendered without a server (in `make check`):
the archive in the airmigrate database, the trigger a batch turns on, one row-counting statement per batch,
the drops behind a procedure's checks, each statement one statement to the engine's splitter and clean to its
lint. The same operations on a real server: test_operations_mysql_rows.py."""

from __future__ import annotations

import pytest
import yaml

from airmigrate import engines, operations
from airmigrate.lint import lint_migration, unacknowledged
from airmigrate.operations.base import OpContext
from airmigrate.operations.delete_rows import DeleteRows
from airmigrate.operations.move_rows import MoveRows
from airmigrate.spec import load_migration

STRUCTURE = {"columns": {"id": {}, "email": {}, "email_lower": {"generated": True}}}


@pytest.fixture(autouse=True)
def mysql_target(monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", "mysql://root@127.0.0.1:3306/shop")
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)


def steps_of(op, structure=STRUCTURE):
    return operations.steps_for(op, OpContext("0007_old_users", 0, "shop", "users", "id", {}, None, structure))


def test_the_row_operations_are_no_longer_refused_on_mysql():
    assert engines.named("mysql").operation_refusal("delete_rows") is None
    assert engines.named("mysql").operation_refusal("move_rows") is None
    assert engines.named("mysql").operation_refusal("split_table") is None


def test_delete_rows_archives_through_a_trigger_the_batch_turns_on():
    steps = steps_of(DeleteRows(op="delete_rows", where="created_at < NOW() - INTERVAL 90 DAY"))
    archive, drop_trigger, trigger = steps.expand
    assert archive == ("CREATE TABLE IF NOT EXISTS `airmigrate`.`archive_0007_old_users` (PRIMARY KEY (`id`)) "
                       "SELECT `id`, `email` FROM `shop`.`users` WHERE 1 = 0")  # no generated column, no index
    assert drop_trigger == "DROP TRIGGER IF EXISTS `shop`.`am_rows_0007_old_users_0`"
    assert trigger == ("CREATE TRIGGER `shop`.`am_rows_0007_old_users_0` AFTER DELETE ON `shop`.`users` FOR EACH ROW "
                       "BEGIN IF @airmigrate_rows = '0007_old_users' THEN INSERT INTO "
                       "`airmigrate`.`archive_0007_old_users` (`id`, `email`) VALUES (OLD.`id`, OLD.`email`); "
                       "END IF; END")
    on, delete, off = steps.backfill  # only the DELETE counts rows: the batch's rows are the rows deleted
    assert on == "SET @airmigrate_rows = '0007_old_users'" and off == "SET @airmigrate_rows = NULL"
    assert delete == ("DELETE FROM `shop`.`users` WHERE `id` BETWEEN %(lo)s AND %(hi)s AND "
                      "(created_at < NOW() - INTERVAL '90' DAY)")
    assert steps.down == ["DROP TRIGGER IF EXISTS `shop`.`am_rows_0007_old_users_0`"]
    assert steps.down_backfill == [
        "INSERT INTO `shop`.`users` (`id`, `email`) SELECT `id`, `email` FROM `airmigrate`.`archive_0007_old_users` "
        "WHERE `id` BETWEEN %(lo)s AND %(hi)s ON DUPLICATE KEY UPDATE `shop`.`users`.`id` = `shop`.`users`.`id`"]
    assert steps.down_walk == ("airmigrate", "archive_0007_old_users")
    assert steps.sweep == "created_at < NOW() - INTERVAL '90' DAY"  # the final sweep's condition


def test_the_contract_drops_only_after_keep_archive_days_inside_a_procedure():
    steps = steps_of(DeleteRows(op="delete_rows", where="id < 10", keep_archive_days=30))
    drop_trigger, drop_old, create, call, drop = steps.contract
    assert drop_trigger.startswith("DROP TRIGGER IF EXISTS `shop`.`am_rows_")
    assert drop_old == drop == "DROP PROCEDURE IF EXISTS `airmigrate`.`am_rows_0007_old_users_0`"
    assert call == "CALL `airmigrate`.`am_rows_0007_old_users_0`()"
    assert "> UTC_TIMESTAMP(6) - INTERVAL 30 DAY THEN SIGNAL SQLSTATE '45000'" in create
    assert create.endswith("END IF; DROP TABLE IF EXISTS `airmigrate`.`archive_0007_old_users`; END")
    message = create.split("MESSAGE_TEXT = '")[1].split("'")[0]
    assert "keep_archive_days (30)" in message and len(message) <= 128  # the server's limit
    finish = steps.down_contract
    assert "THEN SIGNAL SQLSTATE '01000'" in finish[1] and "ELSE DROP TABLE `airmigrate`.`archive_" in finish[1]


def test_move_rows_computes_the_destination_row_in_the_trigger_and_has_a_way_back():
    steps = steps_of(MoveRows(op="move_rows", to="users_old", where="id < 10",
                              columns={"id": "id", "email": "lower(email)"}))
    assert ("INSERT INTO `shop`.`users_old` (`id`, `email`) VALUES (OLD.id, LOWER(OLD.email)); END IF; END"
            in steps.expand[-1])
    drop_up, drop_back, back = steps.down
    assert back.startswith("CREATE TRIGGER `shop`.`am_rows_0007_old_users_0_back` AFTER INSERT ON `shop`.`users`")
    assert "DELETE FROM `shop`.`users_old` WHERE `id` = NEW.`id`" in back  # the computed row goes as the original
    assert steps.down_backfill[1] == ("INSERT INTO `shop`.`users` (`id`, `email`) SELECT `id`, `email` FROM "
                                      "`airmigrate`.`archive_0007_old_users` WHERE `id` BETWEEN %(lo)s AND %(hi)s")
    assert steps.down_backfill[0] == "SET @airmigrate_rows = '0007_old_users:down'"

    same = steps_of(MoveRows(op="move_rows", to="users_old", where="id < 10", create=True))
    assert same.expand[0] == "CREATE TABLE IF NOT EXISTS `shop`.`users_old` LIKE `shop`.`users`"
    assert same.down[-1].startswith("CREATE TRIGGER `shop`.`am_rows_0007_old_users_0_back` AFTER DELETE ON "
                                    "`shop`.`users_old`")
    assert same.down_backfill[1] == (
        "DELETE FROM `shop`.`users_old` WHERE `id` BETWEEN %(lo)s AND %(hi)s AND `id` IN (SELECT `id` FROM "
        "`airmigrate`.`archive_0007_old_users` WHERE `id` BETWEEN %(lo)s AND %(hi)s)")
    assert "IF NOT EXISTS (SELECT 1 FROM `shop`.`users_old`) THEN DROP TABLE `shop`.`users_old`" in \
        same.down_contract[2]


@pytest.mark.parametrize("op", [
    DeleteRows(op="delete_rows", where="id < 10"),
    MoveRows(op="move_rows", to="users_old", where="id < 10", create=True),
    MoveRows(op="move_rows", to="users_old", where="id < 10", columns={"id": "id", "email": "lower(email)"}),
], ids=["delete_rows", "move_rows", "move_rows_columns"])
def test_every_phase_splits_back_into_the_same_statements(op):
    """The stages join a phase's statements into one script and split it again: a trigger's or a procedure's
    body (with its `;`) stays one statement."""
    engine = engines.current()
    steps = steps_of(op)
    for phase in ("expand", "backfill", "contract", "down", "down_backfill", "down_contract"):
        statements = getattr(steps, phase)
        assert engine.split_statements(";\n".join(statements) + ";\n") == statements, phase


def test_lint_finds_nothing_in_the_generated_sql(tmp_path):
    for i, op in enumerate(({"op": "delete_rows", "where": "id % 3 = 0"},
                            {"op": "move_rows", "to": "users_old", "where": "id % 3 = 0", "create": True})):
        folder = tmp_path / f"000{i}_rows"
        folder.mkdir()
        (folder / "migration.yaml").write_text(yaml.safe_dump({
            "description": "rows", "table": "shop.users", "key": "id", "operations": [op]}))
        assert unacknowledged(lint_migration(load_migration(folder))) == []


def test_without_a_target_the_plan_shows_every_column_as_a_star():
    steps = steps_of(DeleteRows(op="delete_rows", where="id < 10"), structure=None)
    assert steps.expand[0].endswith("SELECT * FROM `shop`.`users` WHERE 1 = 0")
    assert "VALUES (OLD.*)" in steps.expand[-1]
