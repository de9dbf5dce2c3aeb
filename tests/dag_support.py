"""What the tests that run airmigrate's DAGs through `dag.test()` share: a migration folder where the DAGs find it,
and a DAG run that must succeed."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from airmigrate.airflow.runner import run_dag


def write_migration(root: Path, migration_id: str, spec: dict, files: dict[str, str] | None = None) -> str:
    """root/migrations/<migration_id> (the folder AIRMIGRATE_MIGRATIONS_DIR names in these tests) with its
    migration.yaml from `spec` and `files` (name -> text); the migration's id."""
    folder = root / "migrations" / migration_id
    folder.mkdir(parents=True)
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    return migration_id


def run_to_success(dag_id: str, **conf) -> float:
    """The DAG through dag.test() with `conf`; its duration in seconds. It must succeed: the assertion names the
    DAG and how it ended.

    At full speed unless `conf` says otherwise (app_latency_ratio=None, the trigger form's "empty"): these tests'
    subject is the operations under a writer (its errors and its slowest statement against the lock wait limit),
    not pacing (tests/test_pacing*.py), and a paced backfill starts at a twentieth of the ceiling and probes
    after 2 s, a few seconds each DAG run (test_add_column_with_backfill_and_not_null_rollback_... 36.3 s paced,
    28.4 s unpaced)."""
    conf.setdefault("app_latency_ratio", None)
    started = time.monotonic()
    dagrun = run_dag(dag_id, conf)
    assert str(dagrun.state) == "success", f"{dag_id} ended {dagrun.state}"
    return time.monotonic() - started
