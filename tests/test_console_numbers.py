"""Issue 18 §10: numbers that mean what they say. Progress never over 100% (more keys than the planner
estimated grow the estimate); the ETA is the recent rate of work with the pauses left out; rows/s "now" is 0 when
nothing runs; the chart shows a pause as a gap and the current pacing target."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airmigrate import state
from airmigrate.console import data
from airmigrate.console.chart import chart_svg
from airmigrate.db import connect
from test_console import client  # noqa: F401 (the fixture)

MIGRATION = "0001_add_user_email_verified"


def _run_with_batches(conn, estimated: int, batches: list[tuple[float, float, int]]) -> int:
    """A run whose cursor estimated ``estimated`` keys and whose succeeded batches ran (start s, end s, keys)
    relative to 10 minutes ago."""
    state.ensure_schema(conn)
    run_id, _ = state.begin_run(conn, "0001_numbers", "up", None)
    conn.execute("INSERT INTO airmigrate.cursors (run_id, batch_size, estimated_rows) VALUES (%s, 1000, %s)",
                 (run_id, estimated))
    t0 = datetime.now(timezone.utc) - timedelta(minutes=10)
    for n, (start, end, size) in enumerate(batches):
        conn.execute("INSERT INTO airmigrate.batches (run_id, batch_no, lo, hi, status, size, rows, attempts, "
                     "started_at, finished_at) VALUES (%s, %s, %s, %s, 'succeeded', %s, %s, 1, %s, %s)",
                     (run_id, n, str(n * 1000), str(n * 1000 + 999), size, size, t0 + timedelta(seconds=start),
                      t0 + timedelta(seconds=end)))
    return run_id


def test_progress_never_passes_100_and_the_eta_leaves_pauses_out(fresh_db):
    with connect(fresh_db, autocommit=True) as conn:
        # 1,000 keys/s for 10 s, a 5-minute pause, 1,000 keys/s for 5 s: 15,000 keys, more than the 10,000 estimated
        work = [(i, i + 1, 1000) for i in range(10)] + [(310 + i, 311 + i, 1000) for i in range(5)]
        run_id = _run_with_batches(conn, 10_000, work)
        progress = state.progress_now(conn, run_id)
        assert progress["covered"] == 15_000 and progress["estimated"] == 15_000
        assert progress["percent"] == 99.9  # the cursor is not exhausted: not done, and never over 100
        assert abs(progress["rate"] - 1000) < 1, progress  # the pause is not work
        conn.execute("UPDATE airmigrate.cursors SET exhausted = true, estimated_rows = 20000 WHERE run_id = %s",
                     (run_id,))
        assert state.progress_now(conn, run_id)["percent"] == 100.0
        conn.execute("UPDATE airmigrate.cursors SET exhausted = false WHERE run_id = %s", (run_id,))
        progress = state.progress_now(conn, run_id)
        assert progress["percent"] == 75.0 and abs(progress["eta_s"] - 5.0) < 0.1  # 5,000 keys at 1,000/s

        # nothing ran for ten minutes: rows/s now is 0, whatever the pacer logged last
        conn.execute("INSERT INTO airmigrate.pacing_log (run_id, at, budget, rows_per_s, decision) VALUES "
                     "(%s, clock_timestamp() - interval '20 seconds', 1, 5000, 'x')", (run_id,))
        assert data.rows_per_s_now(conn, run_id) == 0.0
        conn.execute("INSERT INTO airmigrate.pacing_log (run_id, budget, rows_per_s, decision) VALUES "
                     "(%s, 1, 4000, 'x')", (run_id,))  # a shard at work again
        assert data.rows_per_s_now(conn, run_id) == 4000.0


def test_the_chart_shows_a_pause_as_a_gap_and_the_current_target():
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    point = lambda s: {"at": t0 + timedelta(seconds=s), "rows_per_s": 1000.0, "latency_ratio": 1.1,
                       "target_ratio": 1.5, "budget": 1, "blocked": 0, "decision": ""}
    series = [point(s) for s in range(0, 30)] + [point(s) for s in range(120, 150)]  # a 90 s pause
    svg = chart_svg(series, target_now=2.5)
    assert svg.count('<polygon class="rps"') == 2 and svg.count('<polyline class="latency"') == 2
    assert "pacing target now 2.50x (right axis)" in svg
    assert chart_svg([point(s) for s in range(30)]).count('<polygon class="rps"') == 1


def test_the_overview_keeps_one_connection_per_target(fresh_db, monkeypatch):
    """Issue 18 §11: refreshes (three tabs, many rounds) share one kept connection to the target."""
    from airmigrate.console import pool

    opened = []
    real = pool.connect
    monkeypatch.setattr(pool, "connect", lambda target, **kw: opened.append(target) or real(target, **kw))
    monkeypatch.setattr(data, "_target", lambda migration: fresh_db)
    pool.close_all()
    try:
        for _ in range(3):
            entries = data.overview()
            assert all(e["state"] != "unreachable" for e in entries), entries
        assert len(entries) >= 2 and opened == [fresh_db], opened  # every migration, every round: one connection
        with connect(fresh_db, autocommit=True) as conn:  # the server ends it: the next round opens a new one
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                         "AND pid <> pg_backend_pid()")
        assert data.overview()[0]["state"] != "unreachable" and len(opened) == 2
    finally:
        pool.close_all()


def test_batches_are_paged_failed_first(fresh_db, client, monkeypatch):  # noqa: F811
    """Issue 18 §11: the migration's page lists 50 batches a page, failed first; the refreshed fragment stays
    small however many batches the run has."""
    with connect(fresh_db, autocommit=True) as conn:
        run_id = _run_with_batches(conn, 200_000, [(i, i + 1, 1000) for i in range(180)])
        conn.execute("UPDATE airmigrate.runs SET migration_id = %s WHERE run_id = %s", (MIGRATION, run_id))
        conn.execute("UPDATE airmigrate.batches SET status = 'failed', last_error = 'boom' WHERE run_id = %s "
                     "AND batch_no = 170", (run_id,))
    monkeypatch.setattr(data, "_target", lambda migration: fresh_db)
    first = client.get(f"/migrations/{MIGRATION}?fragment=1").text
    assert first.count('<tr data-status="') == 50 and first.index('data-status="failed"') < \
        first.index('data-status="succeeded"')
    assert "page 1 of 4 (180 batches)" in first and len(first) < 60_000
    last = client.get(f"/migrations/{MIGRATION}?page=4&fragment=1").text
    assert last.count('<tr data-status="') == 30 and 'data-status="failed"' not in last


def test_a_stage_is_timed_over_all_its_tries_in_pipeline_order():
    """Issue 18 §9: a shard retried or cleared is timed from its first try to its last end (not the last try
    alone); a cleared task not yet started again shows what its tries took, not a growing time; stages not yet
    run are listed in pipeline order."""
    from airmigrate.console.stage_rows import stages

    t0 = datetime.now(timezone.utc) - timedelta(minutes=30)
    at = lambda m: t0 + timedelta(minutes=m)
    task = lambda tid, st, start, end, mi=-1: {"task_id": tid, "map_index": mi, "state": st, "start": start,
                                               "end": end, "try": 2}
    dag_run = {"tasks": [task("validate", None, None, None), task("cleanup", None, None, None),
                         task("backfill.shard", None, at(20), None, 0),  # cleared: waits to run again
                         task("backfill.plan", "success", at(1), at(2)), task("preflight", "success", at(0), at(1))]}
    tries = [{"task_id": "backfill.shard", "map_index": 0, "try": 1, "state": "failed", "start": at(2),
              "end": at(12)}]
    rows = stages(dag_run, tries)
    assert [r["task_id"] for r in rows] == ["preflight", "backfill.plan", "backfill.shard", "validate", "cleanup"]
    shard = rows[2]
    assert shard["tries"] == 1 and shard["seconds"] == 600.0  # its first try: 10 minutes, not growing
    dag_run["tasks"][2] = task("backfill.shard", "up_for_reschedule", at(20), at(21), 0)  # going again (paused)
    shard = stages(dag_run, tries)[2]
    assert 1670 < shard["seconds"] < 1700 and shard["end"] is None  # from the first try's start until now


def test_the_reports_stage_times_span_every_try(fresh_db, tmp_path, monkeypatch):
    """Issue 18 §9, the report's part: a stage's time in the report runs from its first try to its last end."""
    from airmigrate.airflow import runs
    from airmigrate.airflow.runner import run_dag
    from airmigrate.airflow.runs import dag_run_stages

    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path / "var"))
    dagrun = run_dag(MIGRATION, {"batch_size": 5000})
    plain = {r["task_id"]: r for r in dag_run_stages(MIGRATION, dagrun.run_id)}
    shard = plain["backfill.shard"]
    first_try = datetime.fromisoformat(shard["start"].replace(" UTC", "+00:00")) - timedelta(minutes=10)
    monkeypatch.setattr(runs, "task_tries", lambda dag_id, run_id: [
        {"task_id": "backfill.shard", "map_index": 0, "try": 1, "state": "failed", "start": first_try,
         "end": first_try + timedelta(minutes=1)}])
    widened = {r["task_id"]: r for r in dag_run_stages(MIGRATION, dagrun.run_id)}["backfill.shard"]
    assert widened["seconds"] >= 600 + shard["seconds"] - 1 and widened["count"] == shard["count"] + 1
    assert widened["start"] < shard["start"]
