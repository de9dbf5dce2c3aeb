"""migration.yaml parsing: a valid folder with every field, and invalid folders each with the message a user
needs (file, field, fix). Also the published JSON Schema stays in step with the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from airmigrate.errors import SpecError
from airmigrate.spec import json_schema, load_migration

ROOT = Path(__file__).resolve().parent.parent
SPECS = Path(__file__).resolve().parent / "fixtures" / "specs"
INVALID = sorted(p for p in (SPECS / "invalid").iterdir() if (p / "expected_error.txt").exists())


def test_valid_folder_with_every_field():
    migration = load_migration(SPECS / "valid" / "0001_valid_full", SPECS / "valid")
    spec = migration.spec
    assert (spec.schema_name, spec.table_name, spec.key) == ("public", "users", "id")
    assert (spec.batch_size, spec.shards, spec.lock_timeout_ms, spec.ddl_attempts) == (5000, 3, 750, 4)
    assert spec.connection_id == "other_target" and spec.schedule == "0 2 * * 1-5" and spec.approval is False
    assert spec.backfill.columns == ["email_verified"] and spec.backfill.max_attempts == 5
    assert spec.operations[0].op == "add_index" and spec.acknowledge[0].rule == "ban-drop-column"
    assert "%(lo)s" in migration.backfill_sql and migration.cleanup_sql.startswith("ALTER TABLE")
    assert migration.expectations_file.name == "valid_suite.json"
    assert len(migration.checksum) == 64


def test_checksum_changes_when_any_file_changes(tmp_path):
    folder = tmp_path / "0001_valid_full"
    shutil.copytree(SPECS / "valid" / "0001_valid_full", folder)
    before = load_migration(folder).checksum
    assert load_migration(folder).checksum == before
    (folder / "backfill.sql").write_text("UPDATE users SET email_verified = false WHERE id BETWEEN %(lo)s AND %(hi)s;")
    assert load_migration(folder).checksum != before


@pytest.mark.parametrize("folder", INVALID, ids=[p.name for p in INVALID])
def test_invalid_folder_names_file_field_and_fix(folder):
    assert len(INVALID) >= 10
    with pytest.raises(SpecError) as err:
        load_migration(folder, SPECS / "invalid" / "expectations")
    message = str(err.value)
    for expected in (folder / "expected_error.txt").read_text().split("\n"):
        if expected:
            assert expected in message, f"{expected!r} not in {message!r}"
    assert err.value.file and err.value.field and err.value.fix
    assert "Fix:" in message


@pytest.mark.parametrize("name", ["0001_add_user_email_verified", "0002_normalize_user_phone"])
def test_example_migrations_load(name):
    migration = load_migration(ROOT / "migrations" / name, ROOT / "expectations")
    assert migration.id == name and migration.expectations_file is not None


def test_an_engines_variant_of_a_file_replaces_it_on_that_engine_and_nowhere_else(monkeypatch):
    """up.mysql.sql beside up.sql: MySQL / MariaDB run it, PostgreSQL never reads it (issue 22)."""
    folder = ROOT / "migrations" / "0001_add_user_email_verified"
    on_postgres = load_migration(folder, ROOT / "expectations")
    assert "CONCURRENTLY" in on_postgres.up_sql and "IS DISTINCT FROM" in on_postgres.backfill_sql
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", "mysql://root@127.0.0.1:3306/test")
    on_mysql = load_migration(folder, ROOT / "expectations")
    assert "ALGORITHM=INSTANT" in on_mysql.up_sql and "LOCK=NONE" in on_mysql.up_sql
    assert "<=>" in on_mysql.backfill_sql and "DROP COLUMN email_verified" in on_mysql.down_sql
    assert on_mysql.checksum == on_postgres.checksum, "one folder, one checksum: every file counts on both"
    phone = load_migration(ROOT / "migrations" / "0002_normalize_user_phone", ROOT / "expectations")
    assert "VARCHAR(32)" in phone.up_sql and "ALGORITHM=INSTANT" in phone.down_sql


def test_published_json_schema_matches_the_model_and_the_examples():
    published = json.loads((ROOT / "migration.schema.json").read_text())
    assert published == json_schema(), "run `.venv/bin/airmigrate schema > migration.schema.json`"
    import jsonschema

    for path in (ROOT / "migrations").glob("*/migration.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), published)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"description": "d", "table": "users", "batchsize": 1}, published)
