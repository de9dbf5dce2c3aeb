"""`airmigrate rehearse` and <id>__rehearsal: the migration and its rollback on a copy, measured; the target
only read, the copy dropped, bad input refused before anything is created."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from psycopg import sql

from airmigrate.airflow.runner import run_dag
from airmigrate.db import connect
from airmigrate.rehearsal import RehearsalError, copy_name, rehearse
from airmigrate.spec import load_migration
from conftest import table_checksum
from test_cli import airmigrate

ROOT = Path(__file__).resolve().parent.parent
FIRST = "0001_add_user_email_verified"


def _copies(target) -> list[str]:
    with connect(target) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                           (f"{target.dbname}__rehearse_%",)).fetchall()]


def _state_schema(target) -> bool:
    with connect(target) as conn:
        return conn.execute("SELECT to_regnamespace('airmigrate') IS NOT NULL").fetchone()[0]


def test_cli_rehearsal_runs_up_and_down_on_a_copy_and_leaves_the_target_as_it_was(fresh_db, tmp_path):
    before = table_checksum(fresh_db)
    docs = tmp_path / "docs"
    done = airmigrate(fresh_db, "rehearse", FIRST, AIRMIGRATE_VAR_DIR=str(tmp_path), AIRMIGRATE_DOCS_DIR=str(docs))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (docs / "CHANGELOG.md").exists(), "a rehearsal is not an application: no changelog entry"
    out = done.stdout
    assert f"rehearsal of {FIRST}: PASSED" in out and "public.users" in out
    for stage in ("copy", "preflight", "backup", "schema_change", "backfill", "validate", "cleanup", "rollback"):
        assert f"  {stage} " in out, out
    assert "rows/s" in out and "WAL" in out and "identical after the rollback: yes" in out
    assert table_checksum(fresh_db) == before and not _state_schema(fresh_db), "the target was only read"
    assert _copies(fresh_db) == [], "the copy is dropped"
    saved = list((tmp_path / "rehearsals" / FIRST).glob("*.json"))
    assert len(saved) == 1 and stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    results = json.loads(saved[0].read_text())
    assert results["status"] == "passed" and results["identical_after_rollback"] is True
    assert results["rows_copied"] == {"public.users": 30_000}
    assert results["wal_bytes"] > 0 and results["stages"][4]["stage"] == "backfill"
    assert isinstance(results["locks"], list)
    assert set(results["sizes"]) == {"before", "after_backfill", "after_contract"}
    assert all(c["status"] == "passed" for phase in results["compat"].values() for c in phase)
    assert "password" not in saved[0].read_text().lower()


def test_sample_copies_whole_key_ranges_and_extrapolates(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path))
    migration = load_migration(ROOT / "migrations" / FIRST)
    results = rehearse(fresh_db, migration, sample=10, keep=True)
    try:
        assert results["rows_copied"]["public.users"] == 3_000  # 3 of 30 ranges of 1,000 keys
        assert set(results["extrapolated_seconds"]) == {"backup", "backfill", "validate", "rollback"}
        copy = fresh_db.with_dbname(copy_name(fresh_db, migration))
        with connect(copy) as conn:  # whole ranges: ids 1-1000, 10001-11000, ...
            assert conn.execute("SELECT min(id), max(id) FROM users WHERE id <= 1000").fetchone() == (1, 1000)
            assert conn.execute("SELECT count(*) FROM users WHERE id BETWEEN 1001 AND 10000").fetchone()[0] == 0
    finally:
        with connect(fresh_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(copy_name(fresh_db, migration))))


def test_bad_input_is_refused_before_anything_is_created(fresh_db, empty_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path))
    migration = load_migration(ROOT / "migrations" / FIRST)
    with pytest.raises(RehearsalError, match="the target has no table users .*Nothing was created"):
        rehearse(empty_db, migration)
    assert _copies(empty_db) == []
    with pytest.raises(RehearsalError, match="between 0 and 100"):
        rehearse(fresh_db, migration, sample=250)
    clash = copy_name(fresh_db, migration)
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(clash)))
    try:
        with pytest.raises(RehearsalError, match=f"database {clash} already exists"):
            rehearse(fresh_db, migration)
        assert _copies(fresh_db) == [clash], "the existing database is left alone"
    finally:
        with connect(fresh_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(clash)))
    assert not (tmp_path / "rehearsals").exists(), "nothing ran, nothing saved"


def test_a_failing_migration_fails_the_rehearsal_reports_and_leaves_nothing_behind(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path))
    folder = tmp_path / "0090_broken"
    folder.mkdir()
    (folder / "up.sql").write_text("ALTER TABLE users ADD COLUMN IF NOT EXISTS score int;")
    (folder / "down.sql").write_text("ALTER TABLE users DROP COLUMN IF EXISTS score;")
    (folder / "backfill.sql").write_text("UPDATE users SET score = 1 / (id - id) WHERE id BETWEEN %(lo)s AND %(hi)s")
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": "divides by zero", "table": "users", "key": "id", "batch_size": 10000,
        "backfill": {"sql": "backfill.sql", "columns": ["score"], "max_attempts": 1}}))
    before = table_checksum(fresh_db)
    with pytest.raises(RehearsalError, match="the rehearsal of 0090_broken failed: .*division by zero"):
        rehearse(fresh_db, load_migration(folder))
    assert _copies(fresh_db) == [] and table_checksum(fresh_db) == before
    saved = json.loads(next((tmp_path / "rehearsals" / "0090_broken").glob("*.json")).read_text())
    assert saved["status"] == "failed" and "division by zero" in saved["error"]
    [page] = (tmp_path / "reports" / "0090_broken").glob("*-rehearsal.html")  # a failed rehearsal's report too
    assert "failed" in page.read_text() and "division by zero" in page.with_suffix(".md").read_text()


def test_the_rehearsal_dag_runs_in_airflow(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path))
    dagrun = run_dag(f"{FIRST}__rehearsal", {"sample": 50})
    assert dagrun.state == "success"
    results = json.loads(next((tmp_path / "rehearsals" / FIRST).glob("*.json")).read_text())
    assert results["status"] == "passed" and results["sample_percent"] == 50
    assert _copies(fresh_db) == [] and not _state_schema(fresh_db)
    # issue 18 §4: the rehearsal has its own report, HTML and Markdown, found from its Airflow run
    [page] = (tmp_path / "reports" / FIRST).glob("*-rehearsal.html")
    html, md = page.read_text(), page.with_suffix(".md").read_text()
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    for text in (html, md):
        assert "rehearsal" in text and "passed" in text and "50% sample" in text and dagrun.run_id in text
        assert "__rehearse_" in text  # the copy it ran on
        assert "backfill" in text and "rollback" in text and "Identical to before after the rollback" in text
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "<script" not in html
    from airmigrate.report import find_report

    assert find_report(FIRST, dagrun.run_id) == page


def test_lock_sampler_measures_how_long_our_session_held_a_lock(fresh_db):
    import time

    from airmigrate.rehearsal.measure import LockSampler

    with LockSampler(fresh_db, ["users"]) as sampler:
        sampler.stage = "schema_change"
        with connect(fresh_db) as conn:  # application_name=airmigrate, like every stage's session
            conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            time.sleep(0.4)
            conn.commit()
        time.sleep(0.1)
    holds = [h for h in sampler.summary() if h["mode"] == "AccessExclusiveLock"]
    assert len(holds) == 1 and holds[0]["stage"] == "schema_change" and holds[0]["relation"] == "users"
    assert 300 <= holds[0]["held_ms"] <= 2000, holds


def test_a_rehearsal_refusal_names_the_missing_object(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path))
    folder = tmp_path / "0091_typo"
    folder.mkdir()
    (folder / "up.sql").write_text("ALTER TABLE users ADD COLUMN IF NOT EXISTS score int;")
    (folder / "down.sql").write_text("ALTER TABLE users DROP COLUMN IF EXISTS score;")
    (folder / "backfill.sql").write_text("UPDATE users SET score = length(emial) WHERE id BETWEEN %(lo)s AND %(hi)s "
                                         "AND score IS DISTINCT FROM length(emial)")
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": "a typo", "table": "users", "backfill": {"sql": "backfill.sql", "columns": ["score"]}}))
    with pytest.raises(RehearsalError, match="has no column 'emial'") as refused:
        rehearse(fresh_db, load_migration(folder))
    assert "changed:." not in str(refused.value) and "Nothing was created" in str(refused.value)
    assert _copies(fresh_db) == []
