"""Issue 18 §3: a retry keeps the failure. Every attempt at a batch (outcome, error, worker, time) is kept in
airmigrate.batch_attempts; after a retry the console still shows the batch's attempts and its error, and the
run's report lists it as failed, then retried, attempt by attempt."""

from __future__ import annotations

from airmigrate import state
from airmigrate.console import actions, data
from airmigrate.db import connect
from airmigrate.report import write_report
from airmigrate.stages import backfill
from test_console import FRAGILE, fragile  # noqa: F401 (the fixture)


def test_a_retried_batch_keeps_every_attempt_in_the_console_and_the_report(fragile, fresh_db):  # noqa: F811
    migration, run_id = fragile
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE cure ()")  # the cause is fixed
    actions.perform(fresh_db, FRAGILE, "retry_failed", "carol")
    backfill.run_shard(fresh_db, migration, run_id)

    with connect(fresh_db, autocommit=True) as conn:
        tries = [a for a in state.batch_attempts(conn, run_id) if int(a["lo"]) <= 12345 <= int(a["hi"])]
        assert [a["outcome"] for a in tries] == ["failed", "failed", "succeeded"]
        assert all("division by zero" in a["error"] for a in tries[:2]) and tries[2]["error"] is None
        assert all(a["worker"] and a["started_at"] and a["finished_at"] for a in tries)
        assert state.batch_summary(conn, run_id)["failed"] == 0

    entry = data.detail(FRAGILE)
    row = next(b for b in entry["batch_rows"] if int(b["lo"]) <= 12345 <= int(b["hi"]))
    assert row["status"] == "succeeded" and row["attempts"] == 3 and "division by zero" in row["error"]

    path = write_report(fresh_db, migration, "up", run_id)
    html, md = path.read_text(), path.with_suffix(".md").read_text()
    assert "1 retried)" in html and "1 retried)" in md
    table = html[html.index('id="retried-batches"'):]
    table = table[:table.index("</table>")]
    assert table.count("division by zero") == 2 and table.count("<td>succeeded</td>") >= 1
    assert "Failed, then retried: none" not in md and md.count("division by zero") >= 2
    assert "retry_failed" in html and "carol" in html  # who asked for the retry, in the actions taken
