"""Issue 23: imported migrations in airmigrate's own record beside native ones: an airmigrate.history row and a
runs row per imported run (the tool's checksum: Flyway's CRC32, the sha256 of an Alembic revision file), the
per-run report, `airmigrate history` listing them, and drift judged by those checksums (a Flyway script or an
Alembic revision file edited after it ran), named with the file and the fix."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from airmigrate import settings
from airmigrate.db import connect
from airmigrate.errors import PreflightError
from airmigrate.lifecycle import history
from airmigrate.report import imported as imported_report
from airmigrate.sources import lifecycle, load_sources
from tests.test_console import client  # noqa: F401 (the console's test client, a fixture)
from tests.test_imports_flyway import FIXTURE, golden_checksum

ALEMBIC = Path(__file__).parent / "fixtures" / "alembic_project"
ROWS = 20_000


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A native migrations tree with the Flyway fixture and the Alembic fixture imported beside it."""
    shutil.copytree(FIXTURE, tmp_path / "flyway")
    shutil.copytree(ALEMBIC, tmp_path / "shop")
    sources = tmp_path / "migrations" / "_sources"
    sources.mkdir(parents=True)
    (sources / "flyway.yaml").write_text("kind: flyway\nlocation: ../../flyway\n")
    (sources / "shop.yaml").write_text("kind: alembic\nlocation: ../../shop/alembic.ini\n")
    monkeypatch.setenv("FLYWAY_PLACEHOLDERS_ROWS", str(ROWS))
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(tmp_path / "migrations"))
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path / "var"))
    return tmp_path


def listing(target):
    """What `airmigrate history` prints, as entries (cli.status.cmd_history's composition)."""
    from airmigrate.cli.imports import history_entries

    with connect(target) as conn:
        imported = history_entries(conn)
        return history.listing(conn, settings.migrations_dir(), None, {e.id for e in imported}) + imported


def history_rows(target):
    with connect(target) as conn:
        return {r[0]: r[1:] for r in conn.execute("SELECT migration_id, status, checksum, files, applied_by IS NOT "
                                                   "NULL, duration_s >= 0 FROM airmigrate.history")}


@pytest.mark.server
def test_imported_runs_write_history_runs_and_reports(tree, empty_db, client):
    flyway, shop = load_sources(tree / "migrations")
    for source in (flyway, shop):
        for migration in source.migrations():
            lifecycle.apply(empty_db, source, migration)
    rows = history_rows(empty_db)
    for name, migration_id in (("V1__create_accounts.sql", "flyway_v1_create_accounts"),
                               ("V1_1__add_email_index.sql", "flyway_v1_1_add_email_index"),
                               ("V2__fill_tier.sql", "flyway_v2_fill_tier")):
        crc = str(golden_checksum(FIXTURE / "sql" / name))  # Flyway's CRC32, computed here without the importer
        assert rows[migration_id] == ("applied", crc, {name: crc}, True, True)
    view = rows["flyway_r_basic_accounts_view"]
    assert view[1] == str(golden_checksum(FIXTURE / "sql" / "R__basic_accounts_view.sql",
                                          {b"email_domain": b"example.com"}))
    for path in sorted((ALEMBIC / "alembic" / "versions").glob("*.py")):
        (migration,) = [m for m in shop.migrations() if m.file.name == path.name]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert rows[migration.id] == ("applied", digest, {path.name: digest}, True, True), path.name
    with connect(empty_db) as conn:
        runs = conn.execute("SELECT migration_id, direction, status FROM airmigrate.runs WHERE migration_id NOT LIKE "
                            "'%%#%%' ORDER BY run_id").fetchall()
    assert [r[0] for r in runs] == [m.id for m in flyway.migrations()] + [m.id for m in shop.migrations()]
    assert {(r[1], r[2]) for r in runs} == {("up", "succeeded")}

    # `airmigrate history`: every imported one applied, beside (not as) native entries; rows the batches wrote
    entries = {e.id: e for e in listing(empty_db)}
    assert not history.has_problems(list(entries.values()))
    assert entries["flyway_v2_fill_tier"].state == "applied (flyway)"
    assert entries["flyway_v2_fill_tier"].rows_backfilled == ROWS
    assert all(e.state.startswith("applied (") for e in entries.values()), entries
    assert len(entries) == 4 + 5

    # the console's Migrations page: after the native folders, each with the state airmigrate recorded
    from airmigrate.console import imported as console_imported, web

    os.environ["AIRFLOW_CONN_AIRMIGRATE_TARGET"] = empty_db.url()
    try:
        page = web._overview()
        html = client.get("/", headers={"Accept": "text/html"})  # the page renders them like native lines
        assert html.status_code == 200 and 'data-migration="flyway_v2_fill_tier" data-state="applied"' in html.text
        one = client.get("/migrations/flyway_v2_fill_tier", follow_redirects=False)  # no page yet: its DAG's
        assert one.status_code == 303 and one.headers["location"] == "/dags/flyway_v2_fill_tier"
        assert client.get("/api/migrations/flyway_v2_fill_tier").json()["state"] == "applied"
    finally:
        os.environ.pop("AIRFLOW_CONN_AIRMIGRATE_TARGET")
    lines = {e["id"]: e for e in page}
    assert [e["id"] for e in page] == console_imported.ids(tree / "migrations")  # no native folder in this tree
    assert lines["flyway_v2_fill_tier"]["state"] == "applied" and lines["flyway_v2_fill_tier"]["position"] == 3
    assert lines["flyway_v2_fill_tier"]["rows_backfilled"] == ROWS
    assert lines["flyway_v2_fill_tier"]["history"]["checksum"] == str(golden_checksum(FIXTURE / "sql" /
                                                                                      "V2__fill_tier.sql"))
    assert {e["state"] for e in page} == {"applied"}

    # the per-run report, as a native run's: HTML and Markdown, private, with the tool's checksum and row
    v2 = flyway.migrations()[2]
    path = imported_report.write_report(empty_db, flyway, v2, "up")
    text = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.name == v2.id
    assert f"checksum <code>{golden_checksum(FIXTURE / 'sql' / 'V2__fill_tier.sql')}</code>" in text
    assert "rank 3, version 2, SQL V2__fill_tier.sql" in text and f"{ROWS:,}" in text
    assert "flyway_v2_fill_tier#1" in path.with_suffix(".md").read_text()

    # a rollback: the history row says rolled back (U2 through the executor; e4000's downgrade() through Alembic)
    lifecycle.rollback(empty_db, flyway, v2)
    lifecycle.rollback(empty_db, shop, shop.migrations()[-1])
    rows = history_rows(empty_db)
    assert rows["flyway_v2_fill_tier"][0] == rows[shop.migrations()[-1].id][0] == "rolled_back"
    report = imported_report.write_report(empty_db, flyway, v2, "down")
    assert "UNDO_SQL U2__fill_tier.sql" in report.read_text() and "-rollback-run" in report.name


@pytest.mark.server
def test_drift_is_judged_with_the_tools_checksums(tree, empty_db):
    flyway, shop = load_sources(tree / "migrations")
    for source in (flyway, shop):
        for migration in source.migrations():
            lifecycle.apply(empty_db, source, migration)
    v1 = tree / "flyway" / "sql" / "V1__create_accounts.sql"
    v1.write_bytes(v1.read_bytes().replace(b"email text NOT NULL", b"email text"))
    revision = tree / "shop" / "alembic" / "versions" / "b2000_add_status.py"
    revision.write_text(revision.read_text() + "\n# edited after it was applied\n")
    entries = {e.id: e for e in listing(empty_db)}
    assert history.has_problems(list(entries.values()))  # `airmigrate history` exits 1, like `flyway validate`
    drifted = entries["flyway_v1_create_accounts"]
    assert drifted.state == "changed since applied (flyway)" and drifted.problem
    before, after = golden_checksum(FIXTURE / "sql" / "V1__create_accounts.sql"), golden_checksum(v1)
    assert drifted.detail == (f"changed since applied: V1__create_accounts.sql (Flyway checksum {before} applied, "
                              f"{after} now; flyway validate fails too): restore the script that ran; put the change "
                              "in a new version")
    shop_id = next(m.id for m in shop.migrations() if m.ref.revision == "b2000")
    drifted = entries[shop_id]
    assert drifted.state == "changed since applied (shop)" and drifted.problem
    assert str(revision) in drifted.detail and "restore the revision file that ran" in drifted.detail
    assert hashlib.sha256((ALEMBIC / "alembic" / "versions" / "b2000_add_status.py").read_bytes()).hexdigest()[:12] \
        in drifted.detail
    # restored: no drift any more
    shutil.copy(ALEMBIC / "alembic" / "versions" / "b2000_add_status.py", revision)
    shutil.copy(FIXTURE / "sql" / "V1__create_accounts.sql", v1)
    assert not history.has_problems(listing(empty_db))
    # an edited revision is refused by a rollback's order of events too: apply refuses a changed one
    revision.write_text(revision.read_text() + "\n# again\n")
    (_, shop) = load_sources(tree / "migrations")
    with connect(empty_db) as conn:
        assert shop.statuses(conn)[shop_id].state == "changed since applied"
    with pytest.raises(PreflightError, match="changed since applied"):
        lifecycle.apply(empty_db, shop, next(m for m in shop.migrations() if m.id == shop_id))


@pytest.mark.server
def test_baseline_of_an_imported_project_records_both_histories(tree, empty_db):
    """`airmigrate baseline --to <imported id>`: the tool's baseline (Flyway's BASELINE row, Alembic's stamp) and
    airmigrate's rows, as the native baseline writes them; the migrations after it then run as usual."""
    flyway, shop = load_sources(tree / "migrations")
    v1, v11, v2, view = flyway.migrations()
    with connect(empty_db, autocommit=True) as conn:  # the schema the baselined scripts made, there already
        conn.execute("CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL)")
        conn.execute(f"INSERT INTO accounts SELECT g, 'u' || g || '@example.com' FROM generate_series(1, {ROWS}) g")
    assert lifecycle.baseline(empty_db, flyway, v11) == [v1.id, v11.id]
    rows = history_rows(empty_db)
    assert set(rows) == {v1.id, v11.id}
    assert rows[v11.id][:3] == ("applied", str(golden_checksum(FIXTURE / "sql" / "V1_1__add_email_index.sql")),
                                {"V1_1__add_email_index.sql": str(golden_checksum(FIXTURE / "sql" /
                                                                                  "V1_1__add_email_index.sql"))})
    with connect(empty_db) as conn:
        assert conn.execute("SELECT applied_by FROM airmigrate.history WHERE migration_id = %s",
                            (v1.id,)).fetchone()[0].startswith("baseline by ")
    lifecycle.apply(empty_db, flyway, v2)
    lifecycle.apply(empty_db, flyway, view)
    entries = {e.id: e for e in listing(empty_db)}
    assert [entries[m.id].state for m in flyway.migrations()] == ["baseline (flyway)"] * 2 + ["applied (flyway)"] * 2
    with connect(empty_db) as conn:
        assert conn.execute("SELECT version, type FROM flyway_schema_history ORDER BY installed_rank").fetchall() == \
            [("1.1", "BASELINE"), ("2", "SQL"), (None, "SQL")]

    revisions = shop.migrations()
    assert lifecycle.baseline(empty_db, shop, revisions[3]) == [m.id for m in revisions[:4]]
    rows = history_rows(empty_db)
    assert all(rows[m.id][0] == "applied" and rows[m.id][1] == m.checksum for m in revisions[:4])
    with connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, amount_cents integer NOT NULL, status text)")
        conn.execute("INSERT INTO orders SELECT g, g % 1000, 'new' FROM generate_series(1, 100) g")
    lifecycle.apply(empty_db, shop, revisions[4])  # the Python revision after the stamp
    assert history_rows(empty_db)[revisions[4].id][0] == "applied"
    assert not history.has_problems(listing(empty_db))
