"""Issue 18 §5: a cancel reads as a cancel. When a shard stops on the console's cancel, the run is recorded with
who cancelled it, when, and the two ways on (resume or roll back); the console shows "cancelled" (not "failed",
even when Airflow's run failed), its report too; a new trigger clears it."""

from __future__ import annotations

from airmigrate import state
from airmigrate.airflow.tasks import record_cancel
from airmigrate.console import actions, data
from airmigrate.db import connect
from airmigrate.stages import backfill
from test_console import FRAGILE, client, failed_dag_run, fragile  # noqa: F401 (fixtures)


def test_a_cancelled_run_shows_cancelled_by_whom_and_what_next(fragile, fresh_db, client):  # noqa: F811
    migration, run_id = fragile
    actions.perform(fresh_db, FRAGILE, "cancel", "dave")
    message = record_cancel(fresh_db, migration)  # what the first shard that stops does
    assert message.startswith("cancelled by dave at ") and "Next: resume" in message and "roll back" in message
    assert "fix the cause" not in message
    with connect(fresh_db) as conn:
        assert state.latest_run(conn, FRAGILE)["error"] == message

    for dag_run in (None, failed_dag_run()):  # Airflow's run failed (the task ended): still a cancel
        [entry] = data.overview({FRAGILE: dag_run} if dag_run else None)
        assert entry["state"] == "cancelled" and entry["error"] is None, entry
        assert entry["cancel"]["by"] == "dave" and entry["throttle"]["state"] == "cancelled"
        assert entry["progress"]["eta_s"] is None
        assert "pause" not in entry["actions"] and "resume" not in entry["actions"]

    page = client.get(f"/migrations/{FRAGILE}").text
    assert 'data-state="cancelled"' in page and 'data-state="failed"' not in page.split("<h1", 1)[1][:400]
    assert "by <span class=\"who\">dave</span>" in page and "resume" in page and f"{FRAGILE}__rollback" in page
    listing = client.get("/").text
    assert 'data-state="cancelled"' in listing and "by dave; next:" in listing

    [report] = (data.settings.var_dir() / "reports" / FRAGILE).glob("*-up-run*.html")
    html, md = report.read_text(), report.with_suffix(".md").read_text()
    assert '<span class="status meh">cancelled</span>' in html and "<h2>Cancelled</h2>" in html
    assert "cancelled by dave" in html and "## Cancelled" in md and "(cancelled)" in md

    backfill.start_backfill(fresh_db, migration, run_id)  # triggered again: it resumes, no longer cancelled
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE airmigrate.runs SET status = 'running', error = NULL WHERE run_id = %s", (run_id,))
    [entry] = data.overview()
    assert entry["state"] != "cancelled" and not entry["cancelled"]
