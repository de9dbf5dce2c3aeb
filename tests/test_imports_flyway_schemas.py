"""Issue 23: Flyway's schema creation (flyway.schemas / defaultSchema, flyway.createSchemas): the schemas that do
not exist are created before the history table, and Flyway's SCHEMA row says which, as Flyway writes it
(SchemaHistory.addSchemasMarker: installed_rank 0, no version, "<< Flyway Schema Creation >>", the created
schemas' quoted names joined by commas, no checksum, execution_time 0). The golden rows are written out here
from Flyway's rules, not by the importer."""

from __future__ import annotations

import shutil

import pytest

from airmigrate.db import connect
from airmigrate.errors import PreflightError
from airmigrate.sources import lifecycle, load_sources
from tests.test_imports_flyway import FIXTURE, golden_checksum

ROWS = 5_000


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE, tmp_path / "flyway")
    sources = tmp_path / "migrations" / "_sources"
    sources.mkdir(parents=True)
    (sources / "flyway.yaml").write_text("kind: flyway\nlocation: ../../flyway\n")
    monkeypatch.setenv("FLYWAY_PLACEHOLDERS_ROWS", str(ROWS))
    return tmp_path


def configure(project, *lines):
    conf = project / "flyway" / "flyway.conf"
    conf.write_text(conf.read_text() + "".join(f"{line}\n" for line in lines))


def schemas(target) -> set[str]:
    with connect(target) as conn:
        return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname IN ('app', 'audit', "
                                           "'Reporting')")}


@pytest.mark.server
def test_missing_schemas_are_created_with_flyways_schema_row(project, empty_db):
    configure(project, "flyway.defaultSchema=app", "flyway.schemas=audit,Reporting")
    with connect(empty_db, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Reporting"')  # exists already: not Flyway's to create, not in its row
    (source,) = load_sources(project / "migrations")
    for migration in source.migrations():
        lifecycle.apply(empty_db, source, migration)
    assert schemas(empty_db) == {"app", "audit", "Reporting"}
    with connect(empty_db) as conn:
        rows = conn.execute("SELECT installed_rank, version, description, type, script, checksum, installed_by, "
                            "execution_time, success FROM app.flyway_schema_history ORDER BY 1").fetchall()
        assert conn.execute("SELECT count(*) FROM app.accounts").fetchone()[0] == ROWS

    def golden(rank, name, version, description):
        return (rank, version, description, "SQL", name, golden_checksum(FIXTURE / "sql" / name), "postgres")

    assert rows[0] == (0, None, "<< Flyway Schema Creation >>", "SCHEMA", '"app","audit"', None, "postgres", 0, True)
    assert [r[:7] for r in rows[1:4]] == [golden(1, "V1__create_accounts.sql", "1", "create accounts"),
                                         golden(2, "V1_1__add_email_index.sql", "1.1", "add email index"),
                                         golden(3, "V2__fill_tier.sql", "2", "fill tier")]
    assert rows[4][:5] == (4, None, "basic accounts view", "SQL", "R__basic_accounts_view.sql")
    assert all(r[8] for r in rows) and len(rows) == 5
    with connect(empty_db) as conn:  # the SCHEMA row is no migration: every script applied, nothing unresolved
        assert {s.state for s in source.statuses(conn).values()} == {"applied"}
        assert source.unresolved(conn) == []


@pytest.mark.server
def test_schemas_exist_already_no_schema_row(project, empty_db):
    configure(project, "flyway.schemas=app")
    with connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app")
    (source,) = load_sources(project / "migrations")
    lifecycle.apply(empty_db, source, source.migrations()[0])
    with connect(empty_db) as conn:
        assert conn.execute("SELECT installed_rank, type FROM app.flyway_schema_history").fetchall() == [(1, "SQL")]


@pytest.mark.server
def test_create_schemas_false_refuses_a_missing_history_schema(project, empty_db):
    configure(project, "flyway.schemas=app", "flyway.createSchemas=false")
    (source,) = load_sources(project / "migrations")
    with pytest.raises(PreflightError, match='schema "app" does not exist and flyway.createSchemas is false'):
        lifecycle.apply(empty_db, source, source.migrations()[0])
    assert schemas(empty_db) == set()
