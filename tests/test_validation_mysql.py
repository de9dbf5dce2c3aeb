"""The Great Expectations stage on MariaDB/MySQL (issue 22): the same suites through GX's SQL data source over
``mysql+pymysql://``, the table found in the target's database, failures named, a missing table refused. Needs the
server test_engine_mysql.py uses (its module skips, with one line, when none answers; so does this one)."""

from __future__ import annotations

import json

import pytest

from airmigrate import db
from airmigrate.errors import ValidationFailed
from airmigrate.validation import run_suite
from test_engine_mysql import URL, mysql_db, mysql_server  # noqa: F401 (fixtures, and the skip without a server)

pytestmark = pytest.mark.server

SUITE = {"name": "t_ok", "expectations": [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "s"}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "a", "min_value": 1, "max_value": 3}},
    {"type": "unexpected_rows_expectation",
     "kwargs": {"unexpected_rows_query": "SELECT id FROM {batch} WHERE s NOT IN ('x', 'y', 'z')",
                "description": "every s is one of x, y, z"}},
]}


def _suite(tmp_path, suite) -> str:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    return path


def test_a_suite_validates_a_mariadb_table_in_the_targets_database(mysql_db, tmp_path):
    outcome = run_suite(mysql_db.url(), "t", _suite(tmp_path, SUITE), tmp_path / "docs")
    assert outcome.success and outcome.evaluated == 3 and outcome.failed == [], outcome.failed
    assert outcome.data_docs_index and outcome.data_docs_index.is_file()


def test_failures_on_mariadb_are_named_and_a_missing_table_is_refused(mysql_db, tmp_path):
    with db.connect(mysql_db, autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (4, 9, NULL), (5, 2, 'q')")
    outcome = run_suite(mysql_db.url(), "t", _suite(tmp_path, SUITE), tmp_path / "docs")
    assert not outcome.success and len(outcome.failed) == 3, outcome.failed
    assert outcome.failed[0].startswith("expect_column_values_to_not_be_null [s]: 1"), outcome.failed
    assert "e.g. [9]" in outcome.failed[1] and "every s is one of x, y, z" in outcome.failed[2], outcome.failed
    with pytest.raises(ValidationFailed, match="does not exist"):
        run_suite(mysql_db.url(), "no_such_table", _suite(tmp_path, SUITE), tmp_path / "docs")
