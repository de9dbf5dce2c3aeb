"""A running Airflow (api-server + scheduler + dag-processor, LocalExecutor) started by the test: a migration
triggered over the REST API as the UI does, and the plugin's status page behind Airflow's auth."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from airmigrate import devdb
from airmigrate.airflow.local import LocalAirflow
from airmigrate.db import connect

pytestmark = [pytest.mark.airflow_server, pytest.mark.xdist_group("airflow_server")]
DAG_ID = "0001_add_user_email_verified"


@pytest.fixture(scope="module")
def target(pg_server, template_db):
    name = f"amtest_server_{uuid.uuid4().hex[:8]}"
    yield devdb.recreate_database(pg_server, name, template=template_db)
    devdb.drop_database(pg_server, name)


@pytest.fixture(scope="module")
def airflow(target, tmp_path_factory):
    server = LocalAirflow(tmp_path_factory.mktemp("airflow-server"), target.airflow_uri(),
                          components=("api-server", "scheduler", "dag-processor"))
    server.start(timeout=240)
    yield server
    server.stop()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    raise TimeoutError(what)


def log_tail(airflow, lines=60):
    logs = sorted((airflow.home / "logs").rglob("*.log")) + sorted((airflow.home / "logs").glob("*.out"))
    return "\n".join(f"== {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) for p in logs[-6:])


def test_trigger_through_the_rest_api_as_the_ui_does(airflow, target):
    wait_for(lambda: airflow.api("GET", f"/api/v2/dags/{DAG_ID}").status_code == 200, 120,
             "the dag-processor did not register the DAG")
    assert airflow.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
    response = airflow.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns",
                           json={"logical_date": None, "conf": {"batch_size": 5000}})
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]

    def finished():
        state = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
        return state if state in ("success", "failed") else None

    state = wait_for(finished, 300, "the DAG run did not finish")
    assert state == "success", log_tail(airflow)
    tasks = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    assert {t["task_id"] for t in tasks} >= {"preflight", "backup", "schema_change", "backfill.plan",
                                             "backfill.shard", "validate", "cleanup"}
    assert sum(t["task_id"] == "backfill.shard" for t in tasks) == 2
    with connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE email_verified IS DISTINCT FROM "
                            "(email_confirmed_at IS NOT NULL)").fetchone()[0] == 0
        assert conn.execute("SELECT status FROM airmigrate.history WHERE migration_id = %s",
                            (DAG_ID,)).fetchone()[0] == "applied"
        assert conn.execute("SELECT count(*) FROM airmigrate.batches").fetchone()[0] == 6  # 30,000 / 5,000


def test_status_page_needs_airflow_auth(airflow):
    assert requests.get(f"{airflow.url}/airmigrate/status", timeout=10).status_code == 401
    response = airflow.api("GET", "/airmigrate/status")
    assert response.status_code == 200
    assert {entry["id"] for entry in response.json()} >= {DAG_ID, "0002_normalize_user_phone"}
