"""The DagBag over dags/: no import errors, two DAGs per migration folder, stages in order, no DB at parse."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = sorted(p.name for p in (ROOT / "migrations").iterdir() if p.is_dir())
UP_ORDER = ["preflight", "backup", "schema_change", "backfill.plan", "backfill.shard", "validate", "cleanup"]


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_one_dag_one_rollback_and_one_rehearsal_dag_per_folder(dagbag):
    assert len(MIGRATIONS) >= 2
    assert set(dagbag.dag_ids) == {*MIGRATIONS, *(f"{m}__{kind}" for m in MIGRATIONS for kind in ("rollback", "rehearsal")),
                                  "airmigrate__migrate"}


@pytest.mark.parametrize("migration_id", MIGRATIONS)
def test_stage_order_params_and_docs(dagbag, migration_id):
    dag = dagbag.get_dag(migration_id)
    assert [t.task_id for t in dag.topological_sort()] == UP_ORDER
    assert dag.max_active_runs == 1
    assert {"batch_size", "shards", "dry_run", "retry_failed", "until"} <= set(dag.params.keys())
    assert dag.params["dry_run"] is False and dag.params["until"] == "contract"
    assert migration_id in dag.doc_md and "```sql" in dag.doc_md
    assert type(dag.get_task("backfill.shard")).__name__.endswith("MappedOperator")
    rollback = dagbag.get_dag(f"{migration_id}__rollback")
    gate = ["approve_rollback"]  # both examples drop the column they added
    assert [t.task_id for t in rollback.topological_sort()] == [
        "preflight", *gate, "down", "restore.plan", "restore.shard", "finish"]
    assert {"batch_size", "shards", "dry_run", "retry_failed", "approve_rollback"} <= set(rollback.params.keys())


def test_parsing_opens_no_database_connection(monkeypatch):
    """DAG files are parsed every 30 s: with an unreachable target, parsing still succeeds."""
    monkeypatch.setenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", "postgresql://nobody@192.0.2.1:1/none")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert set(MIGRATIONS) <= set(bag.dag_ids)


def test_bad_folder_is_an_import_error_and_the_others_still_load(tmp_path, monkeypatch):
    migrations = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", migrations)
    bad = migrations / "0099_broken"
    bad.mkdir()
    (bad / "migration.yaml").write_text("description: broken\ntable: users\nbatchsize: 10\n")
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(migrations))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert set(MIGRATIONS) <= set(bag.dag_ids)
    assert "0099_broken" not in bag.dag_ids
    (path, message), = bag.import_errors.items()
    assert path.endswith("airmigrate_errors.py")
    assert "0099_broken/migration.yaml" in message and "batchsize" in message and "Fix:" in message


def test_trigger_form_numbers_are_refused_with_the_reason_not_clamped():
    from airmigrate.airflow.tasks import check_run_params
    from airmigrate.errors import PreflightError

    for params, said in (({"batch_size": -5}, "param batch_size=-5: give a whole number of rows from 1 to 2,000,000"),
                         ({"shards": 0}, "param shards=0"), ({"app_latency_ratio": 0.5}, "above 1")):
        with pytest.raises(PreflightError, match=said):
            check_run_params(params)
    check_run_params({"batch_size": 5000, "shards": 2, "app_latency_ratio": None})
