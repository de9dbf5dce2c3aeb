"""Issue 23: a Flyway project run in place; flyway_schema_history written exactly as Flyway writes it.

The golden rows are computed here without the importer: the checksum from the files' bytes split at line
endings (Flyway's ChecksumCalculator), the rest from the file names (Flyway's naming rules)."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import pytest

from airmigrate.db import connect
from airmigrate.errors import PreflightError
from airmigrate.sources import lifecycle, load_sources
from airmigrate.sources.flyway import checksum
from airmigrate.sources.flyway_history import flyway_lock, java_hash, lock_key

FIXTURE = Path(__file__).parent / "fixtures" / "flyway_project"
ROWS = 50_000  # the fixture says a million (flyway.conf); the environment overrides it, as Flyway allows


def golden_checksum(path: Path, placeholders: dict[bytes, bytes] | None = None) -> int:
    """Independently of the importer: bytes split at \\n, a trailing \\r dropped, BOM dropped, CRC32, signed; a
    repeatable script's placeholders replaced first (Flyway's SqlMigrationResolver)."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    for name, value in (placeholders or {}).items():
        data = data.replace(b"${" + name + b"}", value)
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    value = zlib.crc32(b"".join(line.removesuffix(b"\r") for line in lines))
    return value - 2**32 if value >= 2**31 else value


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The fixture project beside a migrations tree pointing at it (as `airmigrate import flyway` writes it)."""
    shutil.copytree(FIXTURE, tmp_path / "flyway")
    migrations = tmp_path / "migrations"
    (migrations / "_sources").mkdir(parents=True)
    (migrations / "_sources" / "flyway.yaml").write_text("kind: flyway\nlocation: ../../flyway\n")
    monkeypatch.setenv("FLYWAY_PLACEHOLDERS_ROWS", str(ROWS))
    return tmp_path


def test_checksum_is_flyways():
    """LF and CRLF give the same checksum; a BOM does not count; known CRC32 values (Java's CRC32 as int)."""
    assert checksum("a\nb\n") == checksum("a\r\nb\r\n") == checksum("\ufeffa\rb") == \
        zlib.crc32(b"ab") - 2**32 * (zlib.crc32(b"ab") >= 2**31)
    assert checksum("") == 0
    for script in (FIXTURE / "sql").glob("V*.sql"):  # versioned: the file as written
        assert checksum(script.read_bytes()) == golden_checksum(script), script.name
    assert java_hash('"public"."flyway_schema_history"') == hash_java('"public"."flyway_schema_history"')


def hash_java(text: str) -> int:
    h = 0
    for ch in text:  # ASCII: one UTF-16 unit per character
        h = (h * 31 + ord(ch)) % 2**32
    return h - 2**32 if h >= 2**31 else h


def test_order_and_names(project):
    (source,) = load_sources(project / "migrations")
    titles = [m.title for m in source.migrations()]
    assert titles == ["V1 create accounts", "V1.1 add email index", "V2 fill tier", "R basic accounts view"]
    assert [m.id for m in source.migrations()] == ["flyway_v1_create_accounts", "flyway_v1_1_add_email_index",
                                                   "flyway_v2_fill_tier", "flyway_r_basic_accounts_view"]
    v2 = source.migrations()[2]
    assert "'basic'" in v2.up_sql and v2.down_sql.startswith("ALTER TABLE accounts DROP COLUMN tier")


def migrate_all(target, source):
    for migration in source.migrations():
        lifecycle.apply(target, source, migration)


def history(target):
    with connect(target) as conn:
        return conn.execute("SELECT installed_rank, version, description, type, script, checksum, installed_by, "
                            "execution_time >= 0, success FROM flyway_schema_history ORDER BY 1").fetchall()


def golden(name, version, description, rank, user="postgres", type_="SQL", placeholders=None):
    path = FIXTURE / "sql" / name
    return (rank, version, description, type_, name, golden_checksum(path, placeholders), user, True, True)


@pytest.mark.server
def test_fresh_database_gets_flyways_history(project, empty_db, monkeypatch):
    """The fixture as written: a million rows (flyway.conf's placeholder), their UPDATE batched by the marker."""
    monkeypatch.delenv("FLYWAY_PLACEHOLDERS_ROWS")
    rows = 1_000_000
    (source,) = load_sources(project / "migrations")
    migrate_all(empty_db, source)
    assert history(empty_db) == [
        golden("V1__create_accounts.sql", "1", "create accounts", 1),
        golden("V1_1__add_email_index.sql", "1.1", "add email index", 2),
        golden("V2__fill_tier.sql", "2", "fill tier", 3),
        golden("R__basic_accounts_view.sql", None, "basic accounts view", 4,
               placeholders={b"email_domain": b"example.com"}),
    ]
    with connect(empty_db) as conn:
        assert conn.execute("SELECT count(*), count(*) FILTER (WHERE tier = 'basic') FROM accounts").fetchone() \
            == (rows, rows)
        assert conn.execute("SELECT count(*) FROM basic_accounts").fetchone()[0] == rows
        # the UPDATE ran in key-range batches through the backfill engine, not in one transaction
        batches = conn.execute("SELECT count(*), sum(rows) FROM airmigrate.batches b JOIN airmigrate.runs r "
                               "USING (run_id) WHERE r.migration_id = 'flyway_v2_fill_tier#1'").fetchone()
        assert batches[0] > 1 and batches[1] == rows  # how many: the adaptive batch sizer's call (timing)
        # Flyway's own table shape: its primary key and index names
        assert {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = "
                                           "'flyway_schema_history'")} == {"flyway_schema_history_pk",
                                                                           "flyway_schema_history_s_idx"}
    # a second migrate does nothing: every script is applied, the repeatable's checksum is unchanged
    migrate_all(empty_db, source)
    assert len(history(empty_db)) == 4
    statuses = _statuses(empty_db, source)
    assert set(statuses.values()) == {"applied"}


def _statuses(target, source):
    with connect(target) as conn:
        return {k: v.state for k, v in source.statuses(conn).items()}


@pytest.mark.server
def test_repeatable_runs_again_when_changed_and_drift_is_detected(project, empty_db, monkeypatch):
    (source,) = load_sources(project / "migrations")
    migrate_all(empty_db, source)
    view = project / "flyway" / "sql" / "R__basic_accounts_view.sql"
    view.write_text(view.read_text().replace("SELECT id, email", "SELECT id, email, tier"))
    (source,) = load_sources(project / "migrations")
    assert _statuses(empty_db, source)["flyway_r_basic_accounts_view"] == "outdated"
    migrate_all(empty_db, source)
    rows = history(empty_db)
    assert len(rows) == 5 and rows[-1][4] == "R__basic_accounts_view.sql"
    assert rows[-1][5] == golden_checksum(view, {b"email_domain": b"example.com"})
    # a new placeholder value runs a repeatable script again (its checksum is taken after replacement)
    monkeypatch.setenv("FLYWAY_PLACEHOLDERS_EMAIL_DOMAIN", "example.org")
    (source,) = load_sources(project / "migrations")
    assert _statuses(empty_db, source)["flyway_r_basic_accounts_view"] == "outdated"
    assert _statuses(empty_db, source)["flyway_v1_create_accounts"] == "applied"  # versioned: the file as written
    monkeypatch.delenv("FLYWAY_PLACEHOLDERS_EMAIL_DOMAIN")
    # an applied versioned script edited afterwards: drift, with Flyway's checksums, and refused
    v1 = project / "flyway" / "sql" / "V1__create_accounts.sql"
    v1.write_bytes(v1.read_bytes() + b"-- an edit\n")
    (source,) = load_sources(project / "migrations")
    with connect(empty_db) as conn:
        status = source.statuses(conn)["flyway_v1_create_accounts"]
    assert status.state == "changed since applied" and status.problem
    assert str(golden_checksum(FIXTURE / "sql" / "V1__create_accounts.sql")) in status.detail
    # an applied script deleted from the folder: flyway validate's "not resolved locally"
    (project / "flyway" / "sql" / "V1_1__add_email_index.sql").unlink()
    (source,) = load_sources(project / "migrations")
    with connect(empty_db) as conn:
        (label, gone), = source.unresolved(conn)
    assert label == "flyway V1.1 (V1_1__add_email_index.sql)" and gone.problem and "restore it" in gone.detail


@pytest.mark.server
def test_order_lint_undo_and_flyways_lock(project, empty_db):
    (source,) = load_sources(project / "migrations")
    v1, v11, v2, view = source.migrations()
    with pytest.raises(PreflightError, match="must run after flyway_v1_create_accounts"):
        lifecycle.apply(empty_db, source, v2)
    lifecycle.apply(empty_db, source, v1)
    lifecycle.apply(empty_db, source, v11)
    # Flyway's advisory lock: while another session holds it, we wait (here: give up quickly)
    with connect(empty_db, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (lock_key(source.project),))
        with pytest.raises(Exception, match="advisory lock"):
            with flyway_lock(empty_db, source.project, wait_s=1):
                pass
        other.execute("SELECT pg_advisory_unlock(%s)", (lock_key(source.project),))
    lifecycle.apply(empty_db, source, v2)
    with connect(empty_db) as conn:  # V2 overwrites accounts.tier: a pg_dump of accounts first (backup: auto)
        facts = conn.execute("SELECT facts FROM airmigrate.runs WHERE migration_id = %s", (v2.id,)).fetchone()[0]
        assert len(facts["up_backup_paths"]) == 1 and Path(facts["up_backup_paths"][0]).stat().st_size > 0
        facts = conn.execute("SELECT facts FROM airmigrate.runs WHERE migration_id = %s", (v11.id,)).fetchone()[0]
        assert facts["up_backup_paths"] == []  # an index only: nothing to dump
    # the undo: U2 runs, an UNDO_SQL row as Flyway Teams writes it, and V2 is pending again
    with pytest.raises(PreflightError, match="repeatable script has no undo"):
        lifecycle.rollback(empty_db, source, view)
    with pytest.raises(PreflightError, match="has no undo script"):
        lifecycle.rollback(empty_db, source, v11)
    lifecycle.rollback(empty_db, source, v2)
    rows = history(empty_db)
    assert rows[-1][1:6] == ("2", "fill tier", "UNDO_SQL", "U2__fill_tier.sql",
                             golden_checksum(FIXTURE / "sql" / "U2__fill_tier.sql"))
    assert _statuses(empty_db, source)["flyway_v2_fill_tier"] == "rolled back"
    with connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND "
                            "column_name = 'tier'").fetchone()[0] == 0
    lifecycle.apply(empty_db, source, v2)  # and forward again
    assert _statuses(empty_db, source)["flyway_v2_fill_tier"] == "applied"


@pytest.mark.server
def test_unbatched_update_and_plain_index_are_refused_with_the_recipe(project, empty_db):
    sql = project / "flyway" / "sql"
    (sql / "V3__bad.sql").write_text("UPDATE accounts SET email = lower(email);\n"
                                     "CREATE INDEX accounts_tier_idx ON accounts (tier);\n")
    (source,) = load_sources(project / "migrations")
    migrate = source.migrations()
    for migration in migrate[:3]:
        lifecycle.apply(empty_db, source, migration)
    with pytest.raises(PreflightError) as refused:
        lifecycle.apply(empty_db, source, migrate[3])
    text = str(refused.value)
    assert "unbatched-update" in text and "-- airmigrate: batch key=" in text
    assert "require-concurrent-index-creation" in text
    assert len(history(empty_db)) == 3  # nothing written


@pytest.mark.server
def test_baseline_writes_flyways_baseline_row(project, empty_db):
    (source,) = load_sources(project / "migrations")
    v1, v11, v2, _ = source.migrations()
    assert lifecycle.baseline(empty_db, source, v11) == [v1.id, v11.id]
    assert history(empty_db) == [(1, "1.1", "<< Flyway Baseline >>", "BASELINE", "<< Flyway Baseline >>", None,
                                  "postgres", True, True)]
    assert _statuses(empty_db, source)[v1.id] == "baseline"
    with pytest.raises(PreflightError, match="baseline"):
        lifecycle.baseline(empty_db, source, v2)


@pytest.mark.server
def test_partial_failure_writes_flyways_failed_row_and_resume_replaces_it(project, empty_db):
    """A script with a statement outside a transaction (CONCURRENTLY) that fails after it: Flyway's
    success = false row; fixed and run again: the failed row is replaced (as `flyway repair` + migrate)."""
    sql = project / "flyway" / "sql"
    bad = sql / "V3__tier_index.sql"
    bad.write_text("CREATE INDEX CONCURRENTLY accounts_tier_idx ON accounts (tier);\n"
                   "ALTER TABLE no_such_table ADD COLUMN x integer;\n")
    (source,) = load_sources(project / "migrations")
    for migration in source.migrations()[:3]:
        lifecycle.apply(empty_db, source, migration)
    v3 = source.migrations()[3]
    with pytest.raises(Exception, match="no_such_table"):
        lifecycle.apply(empty_db, source, v3)
    last = history(empty_db)[-1]
    assert (last[1], last[2], last[3], last[4], last[-1]) == ("3", "tier index", "SQL", "V3__tier_index.sql", False)
    assert _statuses(empty_db, source)[v3.id] == "failed"
    bad.write_text(bad.read_text().replace("no_such_table", "accounts"))
    (source,) = load_sources(project / "migrations")
    lifecycle.apply(empty_db, source, source.migrations()[3])
    last = history(empty_db)[-1]
    assert last[1] == "3" and last[5] == golden_checksum(bad) and last[-1] is True
    assert [r[1] for r in history(empty_db)].count("3") == 1


@pytest.mark.server
def test_expectations_validate_an_imported_migration(project, empty_db, monkeypatch):
    """expectations/<id>.json with a "table": Great Expectations on what the script changed."""
    from airmigrate.errors import ValidationFailed

    expectations = project / "expectations"
    expectations.mkdir()
    monkeypatch.setenv("AIRMIGRATE_EXPECTATIONS_DIR", str(expectations))
    (source,) = load_sources(project / "migrations")
    v1, v11, v2, _ = source.migrations()
    assert lifecycle.validate(empty_db, v2) == {"validation": "no suite"}
    for migration in (v1, v11, v2):
        lifecycle.apply(empty_db, source, migration)
    suite = expectations / f"{v2.id}.json"
    suite.write_text('{"table": "public.accounts", "expectations": [{"type": "expect_column_values_to_not_be_null", '
                     '"kwargs": {"column": "tier"}}]}')
    assert lifecycle.validate(empty_db, v2)["validation"] == "passed"
    suite.write_text('{"table": "accounts", "expectations": [{"type": "expect_column_values_to_be_in_set", '
                     '"kwargs": {"column": "tier", "value_set": ["gold"]}}]}')
    with pytest.raises(ValidationFailed, match="roll back"):
        lifecycle.validate(empty_db, v2)


@pytest.mark.server
def test_default_schema_is_where_unqualified_names_go(project, empty_db, monkeypatch):
    """flyway.defaultSchema: Flyway puts it first on the search_path and keeps its history table there."""
    conf = project / "flyway" / "flyway.conf"
    conf.write_text(conf.read_text() + "flyway.defaultSchema=app\n")
    with connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app")
    (source,) = load_sources(project / "migrations")
    migrate_all(empty_db, source)
    with connect(empty_db) as conn:
        assert conn.execute("SELECT count(*), count(tier) FROM app.accounts").fetchone() == (ROWS, ROWS)
        assert conn.execute("SELECT to_regclass('public.accounts'), to_regclass('app.accounts_email_idx') IS NOT NULL, "
                            "to_regclass('app.basic_accounts') IS NOT NULL").fetchone() == (None, True, True)
        assert conn.execute("SELECT count(*) FROM app.flyway_schema_history WHERE success").fetchone()[0] == 4


@pytest.mark.server
def test_native_migrate_says_what_imported_projects_still_have(project, empty_db, monkeypatch):
    from airmigrate.cli.imports import pending_note

    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(project / "migrations"))
    assert pending_note(empty_db) == ["flyway: 4 imported migration(s) not applied: `airmigrate migrate --source "
                                      "flyway`"]
    (source,) = load_sources(project / "migrations")
    migrate_all(empty_db, source)
    assert pending_note(empty_db) == []


@pytest.mark.server
def test_a_broken_project_keeps_the_rest_working(project, empty_db, monkeypatch):
    """A project that does not load is listed by history as such (exit 1), and never keeps a command about a
    native folder or another project from working."""
    from airmigrate.cli.imports import find, history_entries

    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(project / "migrations"))
    (project / "migrations" / "_sources" / "broken.yaml").write_text("kind: flyway\nlocation: ../../nowhere\n")
    assert find(None, "0001_add_user_email_verified") is None
    assert find(None, "flyway_v2_fill_tier")[1].title == "V2 fill tier"
    with connect(empty_db) as conn:
        entries = history_entries(conn)
    assert entries[0].id == "broken.yaml" and entries[0].state == "does not load" and entries[0].problem
    assert "is not a folder" in entries[0].detail and len(entries) == 5
