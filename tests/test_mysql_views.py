"""A view reading a column on MySQL / MariaDB: the server lets the column be dropped or renamed and leaves the view
broken ("references invalid table(s) or column(s)"), where PostgreSQL refuses. Preflight finds such views (in
any database) and refuses drop_column, rename_column, change_column_type and split_table before anything runs;
a view reading other columns refuses nothing."""

from __future__ import annotations

import pymysql
import pytest
import yaml
from mysql_support import drop_database, fill, fresh_database, scratch_database, skip_without_server

from airmigrate import db
from airmigrate.errors import PreflightError
from airmigrate.spec import load_migration
from airmigrate.stages import preflight

pytestmark = pytest.mark.server
skip_without_server()


@pytest.fixture
def target(monkeypatch):
    with scratch_database("am_views", monkeypatch) as made:
        fill(made, "users", 20)
        other = fresh_database("am_views_other")  # a view in another database reads it too
        with db.connect(made, autocommit=True) as conn:
            conn.execute("CREATE VIEW user_names AS SELECT id, s FROM users")
            conn.execute(f"CREATE VIEW `{other.dbname}`.big_a AS SELECT u.id AS id FROM `{made.dbname}`.users u "
                         "WHERE u.a > 10")
        try:
            yield made
        finally:
            drop_database(other)


def migration(tmp_path, target, operation: dict):
    folder = tmp_path / f"0001_{operation['op']}"
    folder.mkdir()
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": f"{operation['op']} under a view", "table": f"{target.dbname}.users", "key": "id",
        "batch_size": 100, "operations": [operation]}))
    return load_migration(folder)


def columns(target) -> list[str]:
    with db.connect(target) as conn:
        return [r[0] for r in conn.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND "
            "TABLE_NAME = 'users' ORDER BY ORDINAL_POSITION").fetchall()]


@pytest.mark.parametrize("operation", [
    {"op": "drop_column", "column": "s"},
    {"op": "rename_column", "column": "s", "to": "label"},
    {"op": "change_column_type", "column": "s", "type": "VARCHAR(80)"},
    {"op": "split_table", "new_table": "user_texts", "columns": ["s"]},
])
def test_an_operation_that_would_break_a_view_reading_its_column_is_refused_before_anything_runs(
        target, tmp_path, operation):
    before = columns(target)
    with pytest.raises(PreflightError) as refused:
        preflight.preflight(target, migration(tmp_path, target, operation))
    assert f"view {target.dbname}.user_names" in str(refused.value) and f"{target.dbname}.users.s" in str(
        refused.value), str(refused.value)
    assert "big_a" not in str(refused.value), "that view reads a, not s"
    assert columns(target) == before, "nothing ran"
    with db.connect(target) as conn:
        assert len(conn.execute("SELECT * FROM user_names").fetchall()) == 20


def test_a_view_in_another_database_counts_and_what_the_server_does_without_the_check(target, tmp_path):
    with pytest.raises(PreflightError, match=r"view am_views_other_\w+\.big_a reads .*\.users\.a: dropping the "
                                             r"column would break it"):
        preflight.preflight(target, migration(tmp_path, target, {"op": "drop_column", "column": "a"}))
    with db.connect(target, autocommit=True) as conn:  # the server itself lets it go and leaves the view broken
        conn.execute("ALTER TABLE users DROP COLUMN s")
        with pytest.raises(pymysql.err.OperationalError, match="invalid table"):
            conn.execute("SELECT * FROM user_names").fetchall()
