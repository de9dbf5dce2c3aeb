"""Pause, resume, cancel and re-size a running backfill through airmigrate.controls (what the console's
buttons do), on a real PostgreSQL: a pause stops every shard after its batch, resume continues from the
cursor, nothing is done twice, every action is recorded with who did it."""

from __future__ import annotations

import threading
import time

import pytest

from airmigrate import control, state
from airmigrate.db import connect
from airmigrate.spec import load_migration
from polling import wait_for
from test_backfill import batches, prepare, scalar, write_migration

SLOW = ("WITH pause AS (SELECT pg_sleep(0.3)) UPDATE users SET touched = touched + 1 FROM pause "
        "WHERE id BETWEEN %(lo)s AND %(hi)s")


def _succeeded(target, run_id):
    return sum(1 for b in batches(target, run_id) if b[4] == "succeeded")


def test_pause_resume_resize_and_cancel_a_running_backfill(fresh_db, tmp_path, monkeypatch):
    from airmigrate.stages import backfill

    monkeypatch.setattr(control, "CHECK_EVERY_S", 0.2)  # shards look at the controls this often
    migration = write_migration(tmp_path, backfill_sql=SLOW, adaptive=False, throttle=None)
    run_id = prepare(fresh_db, migration, batch_size=500)
    results = {}

    def shard(name):
        results[name] = backfill.run_shard(fresh_db, migration, run_id, shard=len(results))

    first = threading.Thread(target=shard, args=("first",))
    first.start()
    wait_for(lambda: _succeeded(fresh_db, run_id) >= 2, 60, "a few batches")
    with connect(fresh_db, autocommit=True) as conn:
        said = control.act(conn, migration.id, "pause", actor="alice")
    first.join(timeout=30)
    assert not first.is_alive() and results["first"]["stopped"] == "paused" and "paused" in said
    paused_at = _succeeded(fresh_db, run_id)
    assert 2 <= paused_at < 30
    with connect(fresh_db) as conn:
        assert state.latest_run(conn, migration.id)["status"] == "paused"
    time.sleep(control.CHECK_EVERY_S + 0.5)
    assert _succeeded(fresh_db, run_id) == paused_at, "nothing runs while paused"

    with connect(fresh_db, autocommit=True) as conn:
        control.act(conn, migration.id, "resume", actor="bob")
        control.act(conn, migration.id, "batch_size", actor="bob", value=2000)
    second = threading.Thread(target=shard, args=("second",))
    second.start()
    wait_for(lambda: any(b[3] == 2000 for b in batches(fresh_db, run_id)), 60, "batches of the new size")
    with connect(fresh_db, autocommit=True) as conn:
        control.act(conn, migration.id, "cancel", actor="carol")
    second.join(timeout=30)
    assert results["second"]["stopped"] == "cancelled"
    rows = batches(fresh_db, run_id)
    assert [b[0] for b in rows] == list(range(len(rows))), "one batch per range, none lost"
    done = scalar(fresh_db, "SELECT count(*) FROM users WHERE touched = 1")
    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE touched > 1") == 0, "no batch ran twice"
    assert 0 < done < 30_000
    with connect(fresh_db) as conn:
        actions = control.recent_actions(conn, migration.id)
    assert [(a["action"], a["actor"]) for a in reversed(actions)] == [
        ("pause", "alice"), ("resume", "bob"), ("batch_size", "bob"), ("cancel", "carol")]
    assert actions[1]["detail"] == "batch size set to 2,000 rows"

    backfill.start_backfill(fresh_db, migration, run_id)  # triggered again: goes on where it stopped
    assert backfill.run_shard(fresh_db, migration, run_id)["stopped"] is False
    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE touched <> 1") == 0


def test_actions_without_a_run_or_with_a_bad_value_are_refused(fresh_db, tmp_path):
    migration = write_migration(tmp_path, adaptive=False)
    with connect(fresh_db, autocommit=True) as conn:
        with pytest.raises(control.ControlError, match="has no active run to pause"):
            control.act(conn, migration.id, "pause", actor="alice")
    prepare(fresh_db, migration, batch_size=500)
    with connect(fresh_db, autocommit=True) as conn:
        with pytest.raises(control.ControlError, match="batch_size -5: give a whole number of rows from 1 to 2,000,000"):
            control.act(conn, migration.id, "batch_size", actor="alice", value=-5)
        with pytest.raises(control.ControlError, match="unknown action"):
            control.act(conn, migration.id, "explode", actor="alice")
        assert control.recent_actions(conn, migration.id) == []


def test_actions_show_in_the_run_report(fresh_db, tmp_path, monkeypatch):
    from airmigrate.report import write_report

    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path / "var"))
    migration = write_migration(tmp_path, adaptive=False)
    prepare(fresh_db, migration, batch_size=500)
    with connect(fresh_db, autocommit=True) as conn:
        control.act(conn, migration.id, "batch_size", actor="dana", value=800)
        control.act(conn, migration.id, "pause", actor="erin <script>")
    path = write_report(fresh_db, migration, "up")
    html, md = path.read_text(), path.with_suffix(".md").read_text()
    assert "Actions taken on this run" in html and "batch size set to 800 rows" in html
    assert "erin &lt;script&gt;" in html and "<script>" not in html.split("</style>")[-1]
    assert "| batch_size | dana | batch size set to 800 rows |" in md


def test_a_pacing_target_set_between_the_plan_and_the_first_shard_is_taken_and_kept(fresh_db, tmp_path):
    """The console shows the backfill from its plan on; a new target set before any shard's pacer started was
    refused ("the pacer is not running") until the plan wrote the run's shared row. The shard keeps it; a run at
    full speed (app_latency_ratio: null for this run) still refuses one, which nothing would use."""
    from airmigrate.stages import backfill

    migration = write_migration(tmp_path, adaptive=False, throttle={"app_latency_ratio": 2.0, "probe_every_s": 60})
    run_id = prepare(fresh_db, migration, batch_size=500)
    with connect(fresh_db, autocommit=True) as conn:
        said = control.act(conn, migration.id, "app_latency_ratio", actor="alice", value=3.0)
    assert "pacing target set to 3.0x" in said
    assert backfill.run_shard(fresh_db, migration, run_id)["stopped"] is False
    assert scalar(fresh_db, "SELECT target_ratio FROM airmigrate.pacing WHERE run_id = %s", (run_id,)) == 3.0

    (tmp_path / "unpaced").mkdir()
    folder = write_migration(tmp_path / "unpaced", adaptive=False, throttle={"app_latency_ratio": 2.0}).folder
    unpaced = load_migration(folder.rename(folder.with_name("0071_unpaced")))
    with connect(fresh_db, autocommit=True) as conn:
        state.ensure_schema(conn)
        other, _ = state.begin_run(conn, unpaced.id, "up", None)
    backfill.start_backfill(fresh_db, unpaced, other, app_latency_ratio=None)
    with connect(fresh_db, autocommit=True) as conn, pytest.raises(control.ControlError, match="not running"):
        control.act(conn, unpaced.id, "app_latency_ratio", actor="alice", value=3.0)
