"""Issue 18 §2: every run of a migration is on its page, newest first (up, rollback, rehearsal: state, who,
when, approvals, report), and the migration's state is its latest run's: a rollback waiting for approval says so
and links to the approval; a finished rollback reads rolled back, with the copy-back's progress, not the up
run's."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from airmigrate import state
from airmigrate.airflow.runner import run_dag
from airmigrate.console import data
from test_console import client  # noqa: F401 (the fixture)

MIGRATION = "0001_add_user_email_verified"


def test_every_run_listed_newest_first_and_the_state_is_the_latest_runs(fresh_db, tmp_path, monkeypatch,
                                                                         client):  # noqa: F811
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path / "var"))
    up = run_dag(MIGRATION, {"batch_size": 5000})
    back = run_dag(f"{MIGRATION}__rollback", {"approve_rollback": True})
    rehearsal = run_dag(f"{MIGRATION}__rehearsal", {"sample": 50})
    assert [str(r.state) for r in (up, back, rehearsal)] == ["success"] * 3

    [entry] = [e for e in client.get("/api/migrations").json() if e["id"] == MIGRATION]
    assert entry["state"] == "rolled_back" and entry["run"]["direction"] == "down"
    assert entry["throttle"]["state"] == "finished" and entry["progress"] is None  # no copy-back: not the up run's
    assert entry["links"]["report"].endswith(f"/{MIGRATION}__rollback/{quote(back.run_id, safe='')}")

    page = client.get(f"/migrations/{MIGRATION}").text
    table = page[page.index('id="runs"'):]
    table = table[:table.index("</table>")]
    rows = table.split("<tr data-kind=")[1:4]  # (runs of earlier tests in this Airflow come after these)
    assert [r.split('"')[1] for r in rows] == ["rehearsal", "rollback", "up"], table
    # the rehearsal as Airflow saw it; the rollback succeeded; the up run's change was rolled back
    assert 'data-state="success"' in rows[0] and 'data-state="succeeded"' in rows[1] \
        and 'data-state="rolled_back"' in rows[2]
    assert f"approve rollback by {state.who()}" in rows[1]
    for row, dag_id, run in zip(rows, (f"{MIGRATION}__rehearsal", f"{MIGRATION}__rollback", MIGRATION),
                                (rehearsal, back, up)):
        assert f'href="/airmigrate/reports/dag-run/{dag_id}/' in row and f'href="/dags/{dag_id}/runs/' in row
        assert run.run_id in row


def test_a_rollback_waiting_for_approval_shows_the_approval_link(fresh_db, tmp_path, monkeypatch):
    from airmigrate.stages import rollback

    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path / "var"))
    assert str(run_dag(MIGRATION, {"batch_size": 5000}).state) == "success"
    migration = data.find_migration(MIGRATION)
    rollback.preflight_rollback(fresh_db, migration, "manual__back")  # the rollback run's preflight, done
    now = datetime.now(timezone.utc)
    waiting = {"dag_id": f"{MIGRATION}__rollback", "id": 99, "run_id": "manual__back", "state": "running",
               "start": now - timedelta(seconds=20), "end": None, "queued_at": now,
               "tasks": [{"task_id": "preflight", "map_index": -1, "state": "success", "start": now, "end": now,
                          "try": 1},
                         {"task_id": "approve_rollback", "map_index": -1, "state": "awaiting_input", "start": now,
                          "end": None, "try": 1}]}
    [entry] = [e for e in data.overview({MIGRATION: waiting}) if e["id"] == MIGRATION]
    assert entry["state"] == "rollback waiting for approval" and entry["progress"] is None
    assert entry["links"]["approve"] == (f"/dags/{MIGRATION}__rollback/runs/manual__back/tasks/approve_rollback/"
                                         "required_actions") and entry["links"]["approve_what"] == "rollback"
    assert entry["throttle"]["state"] == "rollback waiting for approval"
    assert not {"pause", "resume", "cancel"} & set(entry["actions"])  # a copy-back does not wait paused
    page = data.detail(MIGRATION, waiting, airflow_runs=[
        {"dag_id": f"{MIGRATION}__rollback", "kind": "rollback", "run_id": "manual__back", "id": 99,
         "state": "running", "triggered_by": "admin", "queued_at": now, "start": now, "end": None}])
    assert page["runs"][0]["kind"] == "rollback" and page["runs"][0]["state"] == "waiting for approval"
    assert page["runs"][0]["approve"] == entry["links"]["approve"] and page["runs"][0]["by"] == "admin"
    assert page["runs"][1]["kind"] == "up" and page["runs"][1]["state"] == "succeeded"
