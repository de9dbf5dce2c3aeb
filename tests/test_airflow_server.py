"""A running Airflow (api-server + scheduler + dag-processor, LocalExecutor) started by the test: a migration
triggered over the REST API as the UI does, and the plugin's status page behind Airflow's auth."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import requests

from airmigrate import devdb
from airmigrate.airflow.local import HTTP_TIMEOUT, LocalAirflow
from airmigrate.db import connect

pytestmark = [pytest.mark.airflow_server, pytest.mark.xdist_group("airflow_server")]  # one worker, one Airflow
DAG_ID = "0001_add_user_email_verified"
APPROVAL_DAG = "0110_drop_last_login"
FRAGILE_DAG = "0111_fragile_backfill"
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Deadlines for conditions, not for speed: on a loaded 2-core machine a DAG run takes minutes.
REGISTERED_S, FINISHED_S, PARKED_S = 300, 900, 600


@pytest.fixture(scope="module")
def target(pg_server, template_db):
    name = f"amtest_server_{uuid.uuid4().hex[:8]}"
    yield devdb.recreate_database(pg_server, name, template=template_db)
    devdb.drop_database(pg_server, name)


@pytest.fixture(scope="module")
def airflow(target, tmp_path_factory, airflow_metadata):
    """The project's migrations plus one whose contract needs approval and one with a failing batch;
    metadata in a PostgreSQL database of its own. A triggerer: airmigrate__migrate's tasks wait deferred."""
    migrations = tmp_path_factory.mktemp("migrations")
    fixtures = [FIXTURES / "migrations" / name for name in (APPROVAL_DAG, FRAGILE_DAG)]
    for folder in [*ROOT.joinpath("migrations").iterdir(), *fixtures]:
        shutil.copytree(folder, migrations / folder.name)
    server = LocalAirflow(tmp_path_factory.mktemp("airflow-server"), target.airflow_uri(),
                          components=("api-server", "scheduler", "dag-processor", "triggerer"),
                          # the migrate chain looks at the run it triggered every second (10 s by default)
                          extra_env={"AIRMIGRATE_MIGRATIONS_DIR": str(migrations), "AIRMIGRATE_MIGRATE_POKE_S": "1"},
                          metadata_url=airflow_metadata())
    server.start(timeout=420, migrate=False)  # airflow_metadata() is migrated already
    yield server
    server.stop()


def wait_for(airflow, predicate, timeout, what):
    """Poll until the condition holds (a dead Airflow component ends the wait at once)."""
    return airflow.wait_for(predicate, timeout, what)


def log_tail(airflow, lines=60):
    logs = sorted((airflow.home / "logs").rglob("*.log")) + sorted((airflow.home / "logs").glob("*.out"))
    return "\n".join(f"== {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) for p in logs[-6:])


def trigger(airflow, dag_id, conf=None) -> str:
    """What the UI's Trigger button does: unpause, then POST a run with the params form as conf."""
    wait_for(airflow, lambda: airflow.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200, REGISTERED_S,
             f"the dag-processor did not register {dag_id}")
    response = airflow.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    assert response.status_code == 200, response.text
    return airflow.trigger(dag_id, conf)


def run_state(airflow, dag_id, run_id) -> str | None:
    response = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
    return response.json()["state"] if response.status_code == 200 else None


def wait_finished(airflow, dag_id, run_id) -> str:
    def finished():
        state = run_state(airflow, dag_id, run_id)
        return state if state in ("success", "failed") else None

    return wait_for(airflow, finished, FINISHED_S, f"{dag_id} run did not finish")


def task_state(airflow, dag_id, run_id, task_id):
    response = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
    return response.json().get("state") if response.status_code == 200 else None


def answer_approval(airflow, dag_id, run_id, option) -> str:
    """Answer as a person in the UI would, a few seconds after the task parks; answer again if Airflow's
    parking race put the task back into a retry (it parks and asks again). Returns the run's final state."""
    def parked_or_finished():
        state = run_state(airflow, dag_id, run_id)
        if state in ("success", "failed"):
            return state
        return "parked" if task_state(airflow, dag_id, run_id, "approve_contract") == "awaiting_input" else None

    answers = 0
    while (seen := wait_for(airflow, parked_or_finished, PARKED_S,
                            "approval task neither parked nor finished")) == "parked":
        assert answers < 3, "asked more than three times"
        time.sleep(6)  # answering right after the task parks races the scheduler
        response = airflow.api("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve_contract/"
                                        "-1/hitlDetails", json={"chosen_options": [option], "params_input": {}})
        assert response.status_code == 200, response.text
        answers += 1
        time.sleep(3)
    return seen


def last_login_exists(target):
    with connect(target) as conn:
        return conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' "
                            "AND column_name = 'last_login_at'").fetchone()[0] == 1


def test_trigger_through_the_rest_api_as_the_ui_does(airflow, target):
    run_id = trigger(airflow, DAG_ID, {"batch_size": 5000})
    state = wait_finished(airflow, DAG_ID, run_id)
    assert state == "success", log_tail(airflow)
    tasks = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    assert {t["task_id"] for t in tasks} >= {"preflight", "backup", "schema_change", "backfill.plan",
                                             "backfill.shard", "validate", "cleanup"}
    assert sum(t["task_id"] == "backfill.shard" for t in tasks) == 2
    with connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE email_verified IS DISTINCT FROM "
                            "(email_confirmed_at IS NOT NULL)").fetchone()[0] == 0
        assert conn.execute("SELECT status, applied_by FROM airmigrate.history WHERE migration_id = %s",
                            (DAG_ID,)).fetchone() == ("applied", "admin")  # the user who triggered it
        assert conn.execute("SELECT count(*) FROM airmigrate.batches WHERE status = 'succeeded'").fetchone()[0] >= 3


def test_status_page_needs_airflow_auth(airflow):
    assert requests.get(f"{airflow.url}/airmigrate/status", timeout=HTTP_TIMEOUT).status_code == 401
    response = airflow.api("GET", "/airmigrate/status")
    assert response.status_code == 200
    assert {entry["id"] for entry in response.json()} >= {DAG_ID, "0002_normalize_user_phone"}


def test_contract_waits_for_approval_reject_keeps_expanded_approve_contracts(airflow, target):
    run_id = trigger(airflow, APPROVAL_DAG)
    assert answer_approval(airflow, APPROVAL_DAG, run_id, "Reject") == "success", log_tail(airflow)
    assert task_state(airflow, APPROVAL_DAG, run_id, "cleanup") == "skipped"
    assert last_login_exists(target), "a rejected contract drops nothing"
    with connect(target) as conn:
        assert conn.execute("SELECT status FROM airmigrate.runs WHERE migration_id = %s ORDER BY run_id DESC",
                            (APPROVAL_DAG,)).fetchone()[0] == "paused"
        rejected = conn.execute("SELECT action, actor FROM airmigrate.actions WHERE migration_id = %s",
                                (APPROVAL_DAG,)).fetchall()
    assert rejected == [("reject_contract", "admin")], "the green run's real outcome is recorded, with who"

    run_id = trigger(airflow, APPROVAL_DAG)  # resumes the paused run: asked again
    assert answer_approval(airflow, APPROVAL_DAG, run_id, "Approve") == "success", log_tail(airflow)
    assert not last_login_exists(target)
    with connect(target) as conn:
        assert conn.execute("SELECT status FROM airmigrate.history WHERE migration_id = %s",
                            (APPROVAL_DAG,)).fetchone()[0] == "applied"
        answers = conn.execute("SELECT action, actor, detail FROM airmigrate.actions WHERE migration_id = %s "
                               "ORDER BY id", (APPROVAL_DAG,)).fetchall()
    assert [(a, who) for a, who, _ in answers] == [("reject_contract", "admin"), ("approve_contract", "admin")]
    assert answers[1][2] == "approved in the Airflow UI"  # issue 18 §3: approvals are on the record too


def test_clearing_the_failed_shard_task_retries_only_its_failed_batch(airflow, target):
    """The retry button: a batch fails its attempts, the run fails naming it; once the cause is fixed, clearing
    the shard task in the UI (the same REST call) runs that batch again and nothing else, and the run goes on."""
    run_id = trigger(airflow, FRAGILE_DAG)
    assert wait_finished(airflow, FRAGILE_DAG, run_id) == "failed", log_tail(airflow)
    tasks = airflow.api("GET", f"/api/v2/dags/{FRAGILE_DAG}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    assert {t["task_id"]: t["state"] for t in tasks}["backfill.shard"] == "failed"
    assert task_state(airflow, FRAGILE_DAG, run_id, "cleanup") == "upstream_failed"
    query = ("SELECT b.lo::int, b.status, b.attempts, b.finished_at FROM airmigrate.batches b "
             "JOIN airmigrate.runs r USING (run_id) "
             "WHERE r.migration_id = %s ORDER BY b.lo::int")
    with connect(target) as conn:
        before = conn.execute(query, (FRAGILE_DAG,)).fetchall()
        conn.execute("CREATE TABLE cure ()")
        conn.commit()
    assert [(lo, status, attempts) for lo, status, attempts, _ in before if status != "succeeded"] == \
        [(10001, "failed", 2)]
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": target.url(),
           "AIRMIGRATE_MIGRATIONS_DIR": airflow.env["AIRMIGRATE_MIGRATIONS_DIR"]}
    status = subprocess.run([sys.executable, "-m", "airmigrate.cli", "status", FRAGILE_DAG], capture_output=True,
                            text=True, timeout=300, env=env)
    assert status.returncode == 0, status.stderr
    assert "5/6 done, 1 failed, 0 pending" in status.stdout
    assert re.search(r"failed batch \d+ \[10001\.\.15000\] after 2 attempts: division by zero", status.stdout)

    response = airflow.api("POST", f"/api/v2/dags/{FRAGILE_DAG}/clearTaskInstances", retry=True,  # only_failed
                           json={"dry_run": False, "dag_run_id": run_id, "task_ids": ["backfill.shard"],
                                 "only_failed": True, "include_downstream": True})
    assert response.status_code == 200, response.text
    wait_for(airflow, lambda: run_state(airflow, FRAGILE_DAG, run_id) == "success", FINISHED_S,
             "the cleared run did not succeed: " + log_tail(airflow))
    with connect(target) as conn:
        after = conn.execute(query, (FRAGILE_DAG,)).fetchall()
        assert conn.execute("SELECT count(*) FROM users WHERE fragile_verified IS DISTINCT FROM "
                            "(email_confirmed_at IS NOT NULL)").fetchone()[0] == 0
        assert conn.execute("SELECT status FROM airmigrate.history WHERE migration_id = %s",
                            (FRAGILE_DAG,)).fetchone()[0] == "applied"
    redone = [(lo, status, attempts) for (lo, status, attempts, end), old in zip(after, before) if end != old[3]]
    assert redone == [(10001, "succeeded", 1)]  # a fresh budget of max_attempts, one used
    assert [row[:2] for row in after] == [(row[0], "succeeded") for row in before]


def test_migrate_dag_runs_each_pending_migration_as_its_own_run(airflow, target):
    """airmigrate__migrate, last in this module (the tests above applied 0001, 0110 and 0111; 0002 is pending):
    one TriggerDagRunOperator per folder, in order, each its own run of the migration's DAG; the applied ones
    are green no-ops that change nothing. Runs alone as well: `cure` lets 0111 through, approve_contract 0110."""
    chain = sorted(p.name for p in Path(airflow.env["AIRMIGRATE_MIGRATIONS_DIR"]).iterdir())
    with connect(target) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS cure ()")
        conn.commit()
        before = dict(conn.execute("SELECT migration_id, applied_at FROM airmigrate.history WHERE status = 'applied'")
                      .fetchall()) if conn.execute("SELECT to_regclass('airmigrate.history')").fetchone()[0] else {}
    # A paused DAG's triggered run stays queued: the migrations' DAGs must be unpaused, as in the UI.
    for dag_id in chain:
        wait_for(airflow, lambda d=dag_id: airflow.api("GET", f"/api/v2/dags/{d}").status_code == 200, REGISTERED_S,
                 f"the dag-processor did not register {dag_id}")
        assert airflow.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    started = time.time()
    run_id = trigger(airflow, "airmigrate__migrate", {"approve_contract": True})
    assert wait_finished(airflow, "airmigrate__migrate", run_id) == "success", log_tail(airflow)

    tasks = airflow.api("GET", "/api/v2/dags/airmigrate__migrate/tasks").json()["tasks"]
    assert [t["task_id"] for t in tasks if t["task_id"] != "validate_history"] == chain, \
        "one task per folder, in folder order"
    assert task_state(airflow, "airmigrate__migrate", run_id, "validate_history") == "success"  # before any of them
    children = []
    for dag_id in chain:
        assert task_state(airflow, "airmigrate__migrate", run_id, dag_id) == "success"
        xcom = airflow.api("GET", f"/api/v2/dags/airmigrate__migrate/dagRuns/{run_id}/taskInstances/{dag_id}/"
                                  "xcomEntries/trigger_run_id")
        assert xcom.status_code == 200, xcom.text
        child_id = xcom.json()["value"]
        child_id = json.loads(child_id) if child_id.startswith('"') else child_id  # a JSON string, or the string
        child = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{child_id}").json()
        assert child["state"] == "success", (dag_id, child)
        assert child["conf"] == {"approve_contract": True}
        children.append(child)
    assert len({c["dag_run_id"] for c in children}) == len(chain)
    starts = [c["start_date"] for c in children]
    assert starts == sorted(starts), "the chain runs the migrations one after the other, in folder order"
    assert all(c["end_date"] <= n["start_date"] for c, n in zip(children, children[1:]))
    assert datetime.fromisoformat(starts[0].replace("Z", "+00:00")).timestamp() >= started - 5

    with connect(target) as conn:
        history = {mid: (status, applied_at, applied_by) for mid, status, applied_at, applied_by in conn.execute(
            "SELECT migration_id, status, applied_at, applied_by FROM airmigrate.history WHERE migration_id = ANY(%s)",
            (chain,)).fetchall()}
        assert {mid: h[0] for mid, h in history.items()} == {mid: "applied" for mid in chain}
        # who triggered the chain is who applied what it ran
        assert {h[2] for mid, h in history.items() if mid not in before} == {"admin"}
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' "
                            "AND column_name = 'phone_e164'").fetchone()[0] == 1  # 0002 ran
    for mid, applied_at in before.items():  # applied means done: the no-op runs changed nothing
        assert history[mid][1] == applied_at, mid
    for dag_id, child in zip(chain, children):
        if dag_id in before:
            assert task_state(airflow, dag_id, child["dag_run_id"], "schema_change") == "skipped", dag_id
