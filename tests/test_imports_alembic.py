"""Issue 23: an Alembic project with a branch, a merge and a Python-only revision, run revision by revision;
afterwards Alembic's own API says current == heads and `alembic upgrade head` does nothing; the rollback is
downgrade(), one revision at a time."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from airmigrate.db import connect
from airmigrate.errors import PreflightError
from airmigrate.sources import lifecycle, load_sources

FIXTURE = Path(__file__).parent / "fixtures" / "alembic_project"


@pytest.fixture
def project(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "alembic_project")
    migrations = tmp_path / "migrations"
    (migrations / "_sources").mkdir(parents=True)
    (migrations / "_sources" / "alembic.yaml").write_text("kind: alembic\nlocation: ../../alembic_project/alembic.ini\n")
    return tmp_path


def alembic_config(project, target) -> Config:
    cfg = Config(str(project / "alembic_project" / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", target.url().replace("postgresql://", "postgresql+psycopg://", 1))
    return cfg


def current_heads(cfg) -> tuple[str, ...]:
    engine = create_engine(cfg.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as conn:
        return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


def test_order_follows_the_revision_graph(project):
    (source,) = load_sources(project / "migrations")
    order = [m.ref.revision for m in source.migrations()]
    assert order[0] == "a1000" and set(order[1:3]) == {"b2000", "c2100"} and order[3:] == ["d3000", "e4000"]
    merge = source.migrations()[3]
    assert "DELETE FROM alembic_version" in merge.up_sql  # Alembic's own merge bookkeeping, from offline mode
    assert source.migrations()[4].up_sql is None  # reads rows into Python: runs online, through Alembic
    assert "-- airmigrate: batch key=id size=500" in source.migrations()[2 if order[2] == "b2000" else 1].up_sql


@pytest.mark.server
def test_run_revisions_then_alembic_agrees(project, empty_db, caplog):
    (source,) = load_sources(project / "migrations")
    revisions = source.migrations()
    with pytest.raises(PreflightError, match="must run after"):
        lifecycle.apply(empty_db, source, revisions[3])  # the merge before its branches
    for migration in revisions:
        lifecycle.apply(empty_db, source, migration)
        if migration.ref.revision in ("b2000", "c2100"):
            with connect(empty_db) as conn:  # one row per head while the branches are apart
                heads = {r[0] for r in conn.execute("SELECT version_num FROM alembic_version")}
            assert "a1000" not in heads
    cfg = alembic_config(project, empty_db)
    script = ScriptDirectory.from_config(cfg)
    assert current_heads(cfg) == tuple(sorted(script.get_heads())) == ("e4000",)
    with connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FILTER (WHERE status = 'large'), count(*) FILTER (WHERE status = "
                            "'small') FROM orders").fetchone() == (2500, 2500)
    # the real `alembic upgrade head`, through the project's own env.py: nothing to run
    caplog.set_level(logging.INFO, logger="alembic.runtime.migration")
    caplog.clear()  # our own runs of the revisions logged "Running upgrade" too
    command.upgrade(cfg, "head")
    assert "Running upgrade" not in caplog.text
    assert current_heads(cfg) == ("e4000",)

    # the rollback DAG's step: downgrade() of the head (Python here), then the merge comes apart into two heads
    with pytest.raises(PreflightError, match="roll it back first"):
        lifecycle.rollback(empty_db, source, revisions[3])
    lifecycle.rollback(empty_db, source, revisions[4])
    assert current_heads(cfg) == ("d3000",)
    lifecycle.rollback(empty_db, source, revisions[3])
    assert current_heads(cfg) == ("b2000", "c2100")
    with connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM orders WHERE status = 'new'").fetchone()[0] == 5000
    command.upgrade(cfg, "heads")  # and Alembic takes it from there
    assert current_heads(cfg) == ("e4000",)


@pytest.mark.server
def test_stamp_as_baseline(project, empty_db):
    (source,) = load_sources(project / "migrations")
    revisions = source.migrations()
    lifecycle.baseline(empty_db, source, revisions[3])
    cfg = alembic_config(project, empty_db)
    assert current_heads(cfg) == ("d3000",)
    with connect(empty_db) as conn:
        statuses = source.statuses(conn)
    assert [statuses[m.id].state for m in revisions] == ["applied"] * 4 + ["pending"]
