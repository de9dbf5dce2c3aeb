"""Issue 23 as a user runs it: `airmigrate import flyway`, `migrate --source`, `history`, a rollback and
`baseline`, each a subprocess through Airflow (dag.test) against a fresh database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import os
import subprocess

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
