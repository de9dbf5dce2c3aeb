"""The operations console without a browser (issue 12): its numbers from a real backfill on PostgreSQL
(progress as keys covered of the estimate, failed batches, state from history and Airflow's run), its
actions (recorded with the user's name, a negative batch size refused with the reason, retry clears the
failed shard tasks), and its HTTP guard rails (login redirect, permission, same origin, CSRF token)."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airmigrate import control, state
from airmigrate.console import actions, data
from airmigrate.db import connect
from airmigrate.errors import AirmigrateError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "migrations"
FRAGILE = "0111_fragile_backfill"


@pytest.fixture
def fragile(fresh_db, tmp_path, monkeypatch):
    """The fixture migration whose batch holding id 12345 fails, run up to a finished backfill with one
    failed batch (no Airflow: the stages called directly, as the tasks do)."""
    from airmigrate.spec import load_migration
    from airmigrate.stages import backfill, backup, preflight, schema_change

    folder = tmp_path / "migrations"
    shutil.copytree(FIXTURES / FRAGILE, folder / FRAGILE)
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(folder))
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path / "var"))
    migration = load_migration(folder / FRAGILE)
    run_id = preflight.preflight(fresh_db, migration)["run_id"]
    backup.backup(fresh_db, migration, run_id)
    schema_change.schema_change(fresh_db, migration, run_id)
    backfill.start_backfill(fresh_db, migration, run_id)
    with pytest.raises(AirmigrateError):
        backfill.run_shard(fresh_db, migration, run_id)
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE airmigrate.runs SET dag_run_id = 'manual__x' WHERE run_id = %s", (run_id,))
    return migration, run_id


def failed_dag_run(run_id="manual__x"):
    now = datetime.now(timezone.utc)
    task = lambda tid, st, mi=-1: {"task_id": tid, "map_index": mi, "state": st, "start": now - timedelta(seconds=30),
                                   "end": now, "try": 1}
    return {"run_id": run_id, "state": "failed", "start": now - timedelta(minutes=2), "end": now, "queued_at": now,
            "note": None, "tasks": [task("preflight", "success"), task("backfill.shard", "failed", 0),
                                    task("validate", "upstream_failed")]}


def test_overview_shows_keys_covered_failed_batches_and_airflows_failed_run(fragile):
    migration, run_id = fragile
    [entry] = data.overview()
    assert entry["id"] == FRAGILE and entry["position"] == 1
    # 30,000 keys in batches of 5,000: 5 succeeded, the one holding 12345 failed
    assert entry["failed_batches"] == 1
    assert entry["progress"]["estimated"] >= 29_000
    assert entry["progress"]["covered"] == 25_000
    assert 80 <= entry["progress"]["percent"] <= 87, entry["progress"]  # keys, not 5 of 6 batches created
    assert entry["actions"] == ["pause", "cancel", "batch_size", "app_latency_ratio", "retry_failed"]
    assert entry["links"]["dag"] == f"/dags/{FRAGILE}" and entry["links"]["rollback"] == f"/dags/{FRAGILE}__rollback"

    [entry] = data.overview({FRAGILE: failed_dag_run()})  # Airflow says the run failed: so does the console
    assert entry["state"] == "failed"
    assert "backfill.shard" in entry["error"]
    assert entry["links"]["run"] == f"/dags/{FRAGILE}/runs/manual__x"
    assert entry["links"]["logs"] == f"/dags/{FRAGILE}/runs/manual__x/tasks/backfill.shard/mapped/0"
    assert entry["links"]["report"] == f"/airmigrate/reports/dag-run/{FRAGILE}/manual__x"
    assert entry["actions"] == ["retry_failed"]


def test_detail_lists_failed_batches_first_with_their_error_and_the_plan(fragile):
    migration, run_id = fragile
    entry = data.detail(FRAGILE, failed_dag_run())
    first = entry["batch_rows"][0]
    assert first["status"] == "failed" and int(first["lo"]) <= 12345 <= int(first["hi"])
    assert "division by zero" in first["error"] and first["attempts"] == 2 and first["worker"]
    assert [b["status"] for b in entry["batch_rows"][1:]] == ["succeeded"] * 5
    assert all(b["seconds"] is not None and b["rows"] is not None for b in entry["batch_rows"][1:])
    assert [s["task_id"] for s in entry["stages"]] == ["backfill.shard", "preflight", "validate"] or \
        {s["task_id"] for s in entry["stages"]} == {"preflight", "backfill.shard", "validate"}
    assert "users" in entry["plan"]
    assert entry["rollback_dag_id"] == f"{FRAGILE}__rollback"
    svg = data.chart_svg(entry["series"])
    assert svg.startswith("<svg") and "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_combined_state():
    hist = {"status": "failed", "error": "boom"}
    running = {"run_id": "r", "state": "running", "tasks": []}
    assert data.combined_state(hist, {"status": "running", "error": None}, running) == ("running", None)
    assert data.combined_state(hist, {"status": "paused", "error": None}, running) == ("paused", None)
    assert data.combined_state({"status": "applied"}, {"status": "succeeded"}, {"state": "success", "tasks": []}) \
        == ("applied", None)
    assert data.combined_state({"status": "running", "error": None}, {"status": "running", "error": None},
                               {"state": "failed", "tasks": [{"task_id": "backup", "state": "failed"}]}) \
        == ("failed", "task backup failed (see its log)")
    assert data.combined_state(None, None, None) == ("never run", None)
    waiting = {"state": "running", "tasks": [{"task_id": "approve_contract", "state": "awaiting_input"}]}
    assert data.combined_state({"status": "expanded"}, {"status": "running", "error": None}, waiting)[0] == \
        "waiting for approval"


def test_throttle_shows_the_window_until_it_opens(fresh_db):
    from airmigrate.window import Window

    class M:
        class spec:
            window = Window(start="01:00", end="02:00", timezone="UTC")

    noon = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    with connect(fresh_db, autocommit=True) as conn:
        state.ensure_schema(conn)
        run_id, _ = state.begin_run(conn, "0001_x", "up", None)
        out = data.throttle(conn, M, {"run_id": run_id, "status": "running"}, now=noon)
    assert out["state"] == "outside window"
    assert out["detail"] == "until 2026-01-06 01:00 UTC"
    assert out["owner"].startswith("a process on ") and "heartbeat 0 s ago" in out["owner"]  # who runs it (issue 17)


def test_actions_are_recorded_with_the_user_and_a_negative_batch_size_is_refused(fragile, fresh_db):
    migration, run_id = fragile
    with pytest.raises(actions.ActionRefused, match="batch_size -5 refused: give a whole number of rows from 1 to 2,000,000"):
        actions.perform(fresh_db, FRAGILE, "batch_size", "alice", "-5")
    with pytest.raises(actions.ActionRefused, match="not a number"):
        actions.perform(fresh_db, FRAGILE, "batch_size", "alice", "abc")
    with pytest.raises(actions.ActionRefused, match="ratio above 1"):
        actions.perform(fresh_db, FRAGILE, "app_latency_ratio", "alice", "0.5")
    assert actions.perform(fresh_db, FRAGILE, "pause", "alice")["message"].startswith("paused")
    assert data.overview()[0]["throttle"]["state"] == "paused"
    assert data.overview()[0]["throttle"]["detail"].startswith("by alice at ")
    assert data.overview()[0]["actions"][:2] == ["resume", "cancel"]
    assert actions.perform(fresh_db, FRAGILE, "resume", "bob")["message"].startswith("resumed")
    assert actions.perform(fresh_db, FRAGILE, "batch_size", "bob", "2000")["message"] == \
        "batch size set to 2,000 rows"

    cleared = []
    result = actions.perform(fresh_db, FRAGILE, "retry_failed", "carol",
                             clear=lambda dag_id, run: cleared.append((dag_id, run)) or ["backfill.shard[0]"])
    assert cleared == [(FRAGILE, "manual__x")]
    assert result["message"] == "1 failed batch(es) queued again; Airflow runs backfill.shard[0] again"
    with connect(fresh_db) as conn:
        assert [(a["action"], a["actor"]) for a in reversed(control.recent_actions(conn, FRAGILE))] == [
            ("pause", "alice"), ("resume", "bob"), ("batch_size", "bob"), ("retry_failed", "carol")]
        assert conn.execute("SELECT count(*) FROM airmigrate.batches WHERE run_id = %s AND status = 'failed'",
                            (run_id,)).fetchone()[0] == 0

    actions.perform(fresh_db, FRAGILE, "cancel", "dave")
    entry = data.detail(FRAGILE)
    assert entry["cancelled"] and entry["throttle"]["state"] == "cancelled"
    assert data.overview()[0]["cancelled"]


# --- HTTP: the plugin's app with Airflow's auth ---------------------------------------------------------------

class User:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name

    def get_id(self):
        return self.name


def mounted(app):
    """The plugin's app where the api-server mounts it (its cookie path is /airmigrate)."""
    from fastapi import FastAPI

    root = FastAPI()
    root.mount("/airmigrate", app)
    return root


@pytest.fixture
def client(monkeypatch):
    from fastapi.testclient import TestClient

    from airflow.api_fastapi.core_api.security import get_user
    from airmigrate.airflow import plugin
    from airmigrate.console import web

    monkeypatch.setattr(web.AIRFLOW, "can_trigger", lambda user, dag_id: user.name != "viewer")
    monkeypatch.setattr(web.AIRFLOW, "clear_failed_shards", lambda dag_id, run_id: [])
    users = {"who": "alice"}

    def fake_user():
        return User(users["who"])

    plugin.app.dependency_overrides[get_user] = fake_user
    plugin.app.dependency_overrides[web.current_user] = fake_user
    with TestClient(mounted(plugin.app), base_url="http://airflow.test/airmigrate") as c:
        c.users = users
        yield c
    plugin.app.dependency_overrides.clear()


def test_pages_render_with_local_assets_only(fragile, client):
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text
    assert FRAGILE in page.text and 'data-state="running"' in page.text
    assert "airmigrate_csrf" in page.headers.get("set-cookie", "")
    one = client.get(f"/migrations/{FRAGILE}")
    assert one.status_code == 200 and "division by zero" in one.text and "<svg" in one.text
    for text in (page.text, one.text, client.get("/static/console.js").text, client.get("/static/console.css").text):
        assert "http://" not in text and "https://" not in text.replace("https\"", ""), "no CDN, no external URL"
    assert client.get("/?fragment=1").text.lstrip().startswith("<h1>")
    assert client.get("/static/../web.py").status_code == 404
    assert client.get("/api/migrations").json()[0]["id"] == FRAGILE
    assert client.get("/status").json()[0]["id"] == FRAGILE


def _post(client, action, value=None, origin="http://airflow.test", token=True):
    headers = {"Origin": origin} if origin else {}
    if token:
        client.get("/")  # the page sets the token cookie
        headers["X-Airmigrate-CSRF"] = client.cookies.get("airmigrate_csrf")
    return client.post(f"/api/migrations/{FRAGILE}/actions/{action}", json={"value": value}, headers=headers)


def test_actions_need_same_origin_csrf_token_and_trigger_permission(fragile, fresh_db, client):
    assert _post(client, "pause", origin=None).status_code == 403
    assert "cross-site" in _post(client, "pause", origin="http://evil.example").json()["detail"]
    assert "CSRF" in _post(client, "pause", token=False).json()["detail"]
    assert client.get(f"/api/migrations/{FRAGILE}/actions/pause").status_code == 405  # POST only
    client.users["who"] = "viewer"
    assert _post(client, "pause").status_code == 403
    client.users["who"] = "alice"
    refused = _post(client, "batch_size", -5)
    assert refused.status_code == 400 and "batch_size -5 refused" in refused.json()["error"]
    done = _post(client, "pause")
    assert done.status_code == 200 and done.json()["actor"] == "alice", done.text
    with connect(fresh_db) as conn:
        assert control.recent_actions(conn, FRAGILE)[0]["actor"] == "alice"
    # a bearer token is no ambient credential: no CSRF token needed
    bearer = client.post(f"/api/migrations/{FRAGILE}/actions/resume", headers={"Authorization": "Bearer x"})
    assert bearer.status_code == 200, bearer.text
    # cancel: the console offers the rollback DAG
    assert client.post(f"/api/migrations/{FRAGILE}/actions/cancel", headers={"Authorization": "Bearer x"}).json()["ok"]
    page = client.get(f"/migrations/{FRAGILE}").text
    assert 'id="rollback-offer"' in page and f'href="/dags/{FRAGILE}__rollback"' in page
    assert "roll back</a>" in client.get("/").text


def test_logged_out_browsers_go_to_the_login_page_api_clients_get_401(monkeypatch):
    from fastapi.testclient import TestClient

    from airmigrate.airflow import plugin

    class Manager:
        def get_url_login(self, next_url=None, **kw):
            return f"/auth/login?next={next_url}"

    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: Manager())
    with TestClient(mounted(plugin.app), base_url="http://airflow.test/airmigrate") as c:
        for path in ("/", f"/migrations/{FRAGILE}", "/docs", "/redoc", "/openapi.json", "/reports/"):
            r = c.get(path, headers={"Accept": "text/html,application/xhtml+xml"}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/auth/login?next=http://airflow.test/airmigrate"), path
        assert c.get("/status").status_code == 401
        assert c.post(f"/api/migrations/{FRAGILE}/actions/pause").status_code == 401
