"""Issue 23: parsing the DAGs of an imported Alembic project stays cheap. Alembic's offline rendering of each
revision (for the DAG docs, lint and plan) is kept in a cache keyed by the revision file's mtime, size and
sha256: a second DagBag parse renders nothing, an edited revision is rendered again, alone."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from airmigrate.sources.alembic_source import AlembicSource

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "alembic_project"


@pytest.fixture
def tree(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE, tmp_path / "shop")
    sources = tmp_path / "migrations" / "_sources"
    sources.mkdir(parents=True)
    (sources / "shop.yaml").write_text("kind: alembic\nlocation: ../../shop/alembic.ini\n")
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(tmp_path / "migrations"))
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path / "var"))
    return tmp_path


@pytest.fixture
def renders(monkeypatch):
    """Every call of Alembic's offline rendering, by revision and direction."""
    calls = []
    original = AlembicSource.offline_sql

    def counting(self, rev, up, heads, table_exists=False):
        calls.append((rev.revision, up))
        return original(self, rev, up, heads, table_exists)

    monkeypatch.setattr(AlembicSource, "offline_sql", counting)
    return calls


def parse() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dag_parse_renders_a_revision_once_until_its_file_changes(tree, renders):
    first = parse()
    assert first.import_errors == {}
    merge = next(i for i in first.dag_ids if i.startswith("shop_d3000_merge") and not i.endswith("__rollback"))
    assert "shop__migrate" in first.dag_ids
    assert sorted(renders) == sorted((r, up) for r in ("a1000", "b2000", "c2100", "d3000", "e4000")
                                     for up in (True, False))
    docs = first.dags[merge].doc_md
    assert "DELETE FROM alembic_version" in docs  # the DAG docs still show Alembic's offline SQL
    renders.clear()

    second = parse()  # the dag-processor's next parse: nothing changed, nothing rendered
    assert renders == [] and second.import_errors == {}
    assert second.dags[merge].doc_md == docs

    revision = tree / "shop" / "alembic" / "versions" / "b2000_add_status.py"
    revision.write_text(revision.read_text().replace("'new'", "'fresh'"))
    os.utime(revision, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a new mtime even on a coarse clock
    third = parse()
    assert sorted(renders) == [("b2000", False), ("b2000", True)]  # only the edited revision, again
    assert "'fresh'" in next(d for i, d in third.dags.items() if i.startswith("shop_b2000") and not
                                  i.endswith("__rollback")).doc_md
