"""Off-peak windows: the arithmetic, a backfill that stops claiming when its window closes and resumes in
the next, and the shard task rescheduled (no worker slot held) until its window opens, through dag.test."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from airmigrate.db import connect
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, preflight, schema_change
from airmigrate.window import Window

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_window_across_midnight_on_weekdays_in_a_time_zone():
    window = Window(start="22:00", end="04:00", timezone="Europe/Berlin", days=["mon", "tue", "wed", "thu", "fri"])
    assert window.contains(utc("2026-11-24T02:00:00"))          # Tue 03:00 Berlin: Monday's window
    assert not window.contains(utc("2026-11-24T12:00:00"))
    assert window.next_open(utc("2026-11-24T12:00:00")) == utc("2026-11-24T21:00:00")
    assert window.next_open(utc("2026-11-28T23:00:00")) == utc("2026-11-30T21:00:00")  # weekend: Monday


def test_bad_window_fields_are_refused():
    with pytest.raises(ValidationError, match="unknown time zone"):
        Window(start="01:00", end="05:00", timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="start"):
        Window(start="25:00", end="05:00")


def clock(seconds_from_now: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)).strftime("%H:%M:%S")


def test_backfill_stops_when_the_window_closes_and_resumes_in_the_next(fresh_db):
    migration = load_migration(FIXTURES / "migrations" / "0103_slow_backfill")  # 15 batches of 0.25 s
    run_id = preflight.preflight(fresh_db, migration)["run_id"]
    schema_change.schema_change(fresh_db, migration, run_id)
    backfill.start_backfill(fresh_db, migration, run_id)
    window = Window(start=clock(-60), end=clock(1.2))
    first = backfill.run_shard(fresh_db, migration, run_id, should_stop=lambda: not window.contains())
    assert first["stopped"] and 1 <= first["batches"] <= 8
    with connect(fresh_db) as conn:
        # a batch created just before the window closed may wait, pending (not started), for the next window
        assert conn.execute("SELECT count(*) FROM airmigrate.batches WHERE run_id = %s AND status NOT IN "
                            "('succeeded', 'pending')", (run_id,)).fetchone()[0] == 0, \
            "the batch in hand is finished, none left half-claimed"
    second = backfill.run_shard(fresh_db, migration, run_id)  # the next window
    assert first["batches"] + second["batches"] == 15
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT max(attempts) FROM airmigrate.batches WHERE run_id = %s",
                            (run_id,)).fetchone()[0] == 1


def test_the_window_gates_the_whole_run(fresh_db, tmp_path, monkeypatch):
    """Triggered before the window opens: nothing touches the target (no preflight, backup or DDL) until it does."""
    from airmigrate.airflow.runner import run_dag

    migrations = tmp_path / "migrations"
    folder = migrations / "0104_windowed"
    shutil.copytree(FIXTURES / "migrations" / "0103_slow_backfill", folder)
    spec = yaml.safe_load((folder / "migration.yaml").read_text())
    # the window task must first run before the window opens (it is rescheduled to the opening): 15 s is ~5 times
    # what parsing the folder and starting dag.test take in a busy pytest worker (25 s spent 10 s more waiting)
    opens = (datetime.now(timezone.utc) + timedelta(seconds=15)).replace(microsecond=0)
    spec["window"] = {"start": opens.strftime("%H:%M:%S"), "end": clock(300), "timezone": "UTC"}
    spec["shards"] = 1
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(migrations))
    dagrun = run_dag("0104_windowed")
    assert str(dagrun.state) == "success"
    with connect(fresh_db) as conn:
        first_batch = conn.execute("SELECT min(started_at) FROM airmigrate.batches").fetchone()[0]
        run_started = conn.execute("SELECT min(started_at) FROM airmigrate.runs").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM users WHERE email_verified IS DISTINCT FROM "
                            "(email_confirmed_at IS NOT NULL)").fetchone()[0] == 0
    assert first_batch >= opens, "no batch ran before the window opened"
    assert run_started >= opens, "the preflight (and so backup and DDL) waited for the window too"
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    with create_session() as session:
        assert session.query(TaskReschedule).count() >= 1


def test_schedule_is_read_in_the_window_time_zone_and_the_docs_say_when_it_opens(tmp_path, monkeypatch):
    from airmigrate.airflow.dag_factory import build_dag

    folder = tmp_path / "0105_nightly"
    shutil.copytree(FIXTURES / "migrations" / "0103_slow_backfill", folder)
    spec = yaml.safe_load((folder / "migration.yaml").read_text())
    spec.update(schedule="0 1 * * 1-5", description="Nightly. A second sentence that is kept.\n\nDetails here.",
                window={"start": "01:00", "end": "05:00", "timezone": "Europe/Berlin", "days": ["mon", "tue"]})
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    dag = build_dag(load_migration(folder, FIXTURES / "expectations"))
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert str(dag.timetable.timezone) == "Europe/Berlin" and dag.timetable.expression == "0 1 * * 1-5"
    assert dag.description == "Nightly. A second sentence that is kept."
    assert "off-peak window: 01:00-05:00 Europe/Berlin (mon, tue)" in dag.doc_md and "next opening" in dag.doc_md
    assert dag.task_dict["window"].downstream_task_ids == {"preflight"}
