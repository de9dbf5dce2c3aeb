"""What the tests that run airmigrate's DAGs through `dag.test()` share: a DAG run that must succeed."""

from __future__ import annotations

import time

from airmigrate.airflow.runner import run_dag


def run_to_success(dag_id: str, **conf) -> float:
    """The DAG through dag.test() with `conf`; its duration in seconds. It must succeed: the assertion names the
    DAG and how it ended."""
    started = time.monotonic()
    dagrun = run_dag(dag_id, conf)
    assert str(dagrun.state) == "success", f"{dag_id} ended {dagrun.state}"
    return time.monotonic() - started
