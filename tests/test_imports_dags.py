"""Issue 23: the DAGs of imported projects, built in memory (no database): ids, task order, the chain, and a
broken project shown as an import error naming the file and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from airmigrate.airflow.source_dags import build_source_dags

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def tree(tmp_path):
    shutil.copytree(FIXTURES / "flyway_project", tmp_path / "flyway")
    shutil.copytree(FIXTURES / "alembic_project", tmp_path / "alembic_project")
    sources = tmp_path / "migrations" / "_sources"
    sources.mkdir(parents=True)
    (sources / "flyway.yaml").write_text("kind: flyway\nlocation: ../../flyway\n")
    (sources / "shop.yaml").write_text("kind: alembic\nlocation: ../../alembic_project\n")
    return tmp_path


def test_dags_per_script_and_revision(tree):
    dags, errors = build_source_dags(tree / "migrations")
    assert errors == []
    assert {"flyway_v1_create_accounts", "flyway_v1_create_accounts__rollback", "flyway__migrate",
            "shop_a1000_create_orders", "shop__migrate"} <= set(dags)
    assert [t.task_id for t in dags["flyway_v2_fill_tier"].topological_sort()] == ["preflight", "apply", "validate"]
    assert [t.task_id for t in dags["flyway_v2_fill_tier__rollback"].topological_sort()] == ["down"]
    chain = [t.task_id for t in dags["flyway__migrate"].topological_sort()]
    assert chain == ["flyway_v1_create_accounts", "flyway_v1_1_add_email_index", "flyway_v2_fill_tier",
                     "flyway_r_basic_accounts_view"]
    assert "batch key=id" in dags["flyway_v2_fill_tier"].doc_md
    assert len([d for d in dags if d.startswith("shop_") and not d.endswith(("__rollback", "__migrate"))]) == 5


def test_a_broken_project_is_an_error_naming_file_and_fix(tree):
    settings = tree / "migrations" / "_sources" / "flyway.yaml"
    settings.write_text("kind: flyway\nlocation: ../../flyway\nbatchsize: 3\n")
    dags, errors = build_source_dags(tree / "migrations")
    assert "flyway.yaml: batchsize" in errors[0] and "Fix:" in errors[0]
    assert "shop__migrate" in dags and "flyway__migrate" not in dags
    settings.write_text("kind: flyway\nlocation: ../../flyway\n")
    (tree / "flyway" / "sql" / "V9__uses.sql").write_text("SELECT '${nowhere}';\n")
    dags, errors = build_source_dags(tree / "migrations")
    assert "V9__uses.sql: placeholder ${nowhere}: has no value" in errors[0]
    assert "flyway.placeholders.nowhere" in errors[0]
    assert "shop__migrate" in dags  # the other project still loads


def test_airmigrate_migrate_triggers_imported_projects_first(tree):
    """airmigrate__migrate: each imported project's chain before the native folders (the order rule)."""
    from airmigrate.airflow.dag_factory import build_all
    from tests.test_imports_cli import native_folder_on_accounts

    native_folder_on_accounts(tree / "migrations")
    sources = build_source_dags(tree / "migrations")[0]
    dags, errors = build_all(tree / "migrations", imported_first=tuple(d for d in sources if d.endswith("__migrate")))
    assert errors == []
    chain = [t.task_id for t in dags["airmigrate__migrate"].topological_sort()]
    assert chain == ["validate_history", "flyway__migrate", "shop__migrate", "0001_account_note"]
