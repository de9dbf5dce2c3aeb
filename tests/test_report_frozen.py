"""Issue 18 §1: a report is the record of its run. It is written when the run ends and never on a read: opened
(by the DAG run's "Run report" link or by its file) after a rollback, it is byte-identical to the file the run
wrote, and still shows the schema diff the run made."""

from __future__ import annotations

import os

from fastapi.testclient import TestClient

from airmigrate import state
from airmigrate.airflow import plugin
from airmigrate.airflow.runner import run_dag

MIGRATION = "0001_add_user_email_verified"


def logged_in_client() -> TestClient:
    login = plugin.app.router.dependencies[0].dependency
    plugin.app.dependency_overrides[login] = lambda: None
    return TestClient(plugin.app)


def test_a_report_opened_after_a_rollback_is_the_one_written_when_its_run_ended(fresh_db, tmp_path, monkeypatch):
    var = tmp_path / "var"
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(var))
    up = run_dag(MIGRATION, {"batch_size": 5000})
    assert str(up.state) == "success"
    [path] = (var / "reports" / MIGRATION).glob("*-up-run*.html")
    md = path.with_suffix(".md")
    written, written_md, mtime = path.read_bytes(), md.read_bytes(), path.stat().st_mtime_ns
    assert b"email_verified" in written and b'class="added"' in written  # the column and its index, added

    back = run_dag(f"{MIGRATION}__rollback", {"approve_rollback": True})
    assert str(back.state) == "success"
    try:
        client = logged_in_client()
        for _ in range(2):  # opened twice: nothing is rewritten on a read
            by_run = client.get(f"/reports/dag-run/{MIGRATION}/{up.run_id}", follow_redirects=False)
            assert by_run.status_code == 303 and by_run.headers["location"].endswith(f"/{MIGRATION}/{path.name}")
            page = client.get(f"/reports/{MIGRATION}/{path.name}")
            assert page.status_code == 200 and page.content == written
            assert client.get(f"/reports/{MIGRATION}/{md.name}").content == written_md
        assert path.read_bytes() == written and path.stat().st_mtime_ns == mtime
        # the rollback's own report is another file, reached from its own DAG run
        rollback = client.get(f"/reports/dag-run/{MIGRATION}__rollback/{back.run_id}", follow_redirects=False)
        assert rollback.status_code == 303 and "-rollback-run" in rollback.headers["location"]
        # its approval (approved up front by the trigger param) is on its record: who, when, how (§3)
        rollback_html = client.get(rollback.headers["location"].removeprefix("/airmigrate")).text
        assert "approve_rollback" in rollback_html and "approved up front (approve_rollback=true)" in rollback_html
        assert state.who() in rollback_html
        # a run with no report yet: a 404 that says when it comes, and no file written by asking
        before = sorted(os.listdir(path.parent))
        missing = client.get(f"/reports/dag-run/{MIGRATION}/manual__never", follow_redirects=False)
        assert missing.status_code == 404 and "when it ends" in missing.text
        assert sorted(os.listdir(path.parent)) == before
    finally:
        plugin.app.dependency_overrides.clear()
