"""Issue 23 as a user runs it: `airmigrate import flyway`, `migrate --source`, `history`, a rollback and
`baseline`, each a subprocess through Airflow (dag.test) against a fresh database."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from airmigrate.db import connect
from tests.test_cli import CLI, ROOT

FIXTURE = Path(__file__).parent / "fixtures" / "flyway_project"


@pytest.fixture
def tree(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "db")
    (tmp_path / "migrations").mkdir()
    return tmp_path


def cli(target, tree, *args):
    """`airmigrate ...` as a user runs it (each migration a dag.test: up to a minute each on a loaded machine)."""
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": target.url(), "AIRMIGRATE_MIGRATIONS_DIR": str(tree / "migrations"),
           "FLYWAY_PLACEHOLDERS_ROWS": "30000"}
    env.pop("AIRFLOW_CONN_AIRMIGRATE_TARGET", None)
    done = subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    return done, done.stdout + done.stderr


@pytest.mark.server
def test_import_migrate_history_rollback(tree, empty_db):
    before = {p: p.read_bytes() for p in (tree / "db").rglob("*") if p.is_file()}
    done, out = cli(empty_db, tree, "import", "flyway", str(tree / "db"))
    assert done.returncode == 0, out
    assert "flyway_v1_create_accounts" in out and "pending" in out
    assert (tree / "migrations" / "_sources" / "flyway.yaml").read_text().count("location: ../../db") == 1
    again, out = cli(empty_db, tree, "import", "flyway", str(tree / "db"))
    assert again.returncode == 2 and "exists" in out

    done, out = cli(empty_db, tree, "migrate", "--source", "flyway")
    assert done.returncode == 0, out[-4000:]
    assert "every migration applied" in out
    with connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM flyway_schema_history WHERE success").fetchone()[0] == 4
        assert conn.execute("SELECT count(*) FROM accounts WHERE tier = 'basic'").fetchone()[0] == 30000

    done, out = cli(empty_db, tree, "history")
    assert done.returncode == 0, out
    assert "flyway_v2_fill_tier" in out and "applied (flyway)" in out

    done, out = cli(empty_db, tree, "run", "flyway_v2_fill_tier", "--rollback")
    assert done.returncode == 0, out[-4000:]
    assert "rolled back in the flyway history" in out
    done, out = cli(empty_db, tree, "run", "flyway_v2_fill_tier")  # forward again
    assert done.returncode == 0, out[-4000:]
    # the team's folder is untouched
    assert {p: p.read_bytes() for p in (tree / "db").rglob("*") if p.is_file()} == before


@pytest.mark.server
def test_refusals_answer_before_airflow_and_baseline(tree, empty_db):
    assert cli(empty_db, tree, "import", "flyway", str(tree / "db"))[0].returncode == 0
    done, out = cli(empty_db, tree, "run", "flyway_v2_fill_tier")
    assert done.returncode == 1 and "must run after flyway_v1_create_accounts" in out
    assert "dag.test" not in out
    done, out = cli(empty_db, tree, "baseline", "--to", "flyway_v1_1_add_email_index")
    assert done.returncode == 0, out
    with connect(empty_db) as conn:
        assert conn.execute("SELECT version, type FROM flyway_schema_history").fetchall() == [("1.1", "BASELINE")]


@pytest.mark.server
def test_alembic_project_through_airflow(tmp_path, empty_db):
    """The Alembic fixture (a branch, a merge, a Python-only revision) through its DAGs; then Alembic's own API
    says current == heads; `downgrade -1` is the head's rollback DAG."""
    from tests.test_imports_alembic import alembic_config, current_heads

    shutil.copytree(FIXTURE.parent / "alembic_project", tmp_path / "alembic_project")
    (tmp_path / "migrations").mkdir()
    done, out = cli(empty_db, tmp_path, "import", "alembic", str(tmp_path / "alembic_project" / "alembic.ini"),
                    "--name", "shop")
    assert done.returncode == 0, out
    done, out = cli(empty_db, tmp_path, "migrate", "--source", "shop")
    assert done.returncode == 0, out[-4000:]
    cfg = alembic_config(tmp_path, empty_db)
    assert current_heads(cfg) == ("e4000",)
    done, out = cli(empty_db, tmp_path, "run", "shop_e4000_status_from_each_order_s_amount_reads_ro", "--rollback")
    assert done.returncode == 0, out[-4000:]
    assert current_heads(cfg) == ("d3000",)
    done, out = cli(empty_db, tmp_path, "history")
    assert "shop_d3000_merge_the_two_branches" in out and "pending (shop)" in out and "applied (shop)" in out


def native_folder_on_accounts(migrations):
    """A native migration on a table the Flyway project creates: it can only run after the project."""
    folder = migrations / "0001_account_note"
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text("ALTER TABLE accounts ADD COLUMN note text;\n")
    (folder / "down.sql").write_text("ALTER TABLE accounts DROP COLUMN note;\n")
    (folder / "migration.yaml").write_text("description: a note per account\ntable: accounts\nkey: id\n")


@pytest.mark.server
def test_migrate_runs_imported_projects_before_native_folders(tree, empty_db):
    """The order rule (README): `airmigrate migrate` runs every imported project's pending migrations first,
    then the native folders, which may use what the project made."""
    native_folder_on_accounts(tree / "migrations")
    assert cli(empty_db, tree, "import", "flyway", str(tree / "db"))[0].returncode == 0
    done, out = cli(empty_db, tree, "migrate")
    assert done.returncode == 0, out[-4000:]
    with connect(empty_db) as conn:
        order = [r[0] for r in conn.execute("SELECT migration_id FROM airmigrate.runs WHERE migration_id NOT LIKE "
                                            "'%%#%%' ORDER BY run_id")]
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND "
                            "column_name = 'note'").fetchone()[0] == 1
    assert order == ["flyway_v1_create_accounts", "flyway_v1_1_add_email_index", "flyway_v2_fill_tier",
                     "flyway_r_basic_accounts_view", "0001_account_note"]
    assert "not applied" not in out  # nothing imported left behind
    done, out = cli(empty_db, tree, "history")
    assert done.returncode == 0 and "0001_account_note" in out and "flyway_v2_fill_tier" in out, out
    assert "folder missing" not in out  # the imported rows of airmigrate.history are not taken for lost folders
