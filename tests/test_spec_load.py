"""Broken folders are refused at load, before anything runs: transform.py read with `ast` (never imported),
schedules checked with croniter as Airflow reads them, and, against a real database, a key column the table
lacks named as such. The invalid fixture folders (tests/fixtures/specs/invalid/01xx) carry the messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from airmigrate.db import connect
from airmigrate.errors import PreflightError, SpecError
from airmigrate.spec import check_cron, load_migration
from airmigrate.stages import preflight

ROOT = Path(__file__).resolve().parent.parent
INVALID = Path(__file__).resolve().parent / "fixtures" / "specs" / "invalid"


def write_folder(tmp_path: Path, name: str = "0160_load", **spec) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "up.sql").write_text("ALTER TABLE users ADD COLUMN IF NOT EXISTS x int;")
    (folder / "down.sql").write_text("ALTER TABLE users DROP COLUMN IF EXISTS x;")
    (folder / "migration.yaml").write_text(yaml.safe_dump({"description": "d", "table": "users", **spec}))
    return folder


def transform_folder(tmp_path: Path, source: str) -> Path:
    folder = write_folder(tmp_path, backfill={"transform": "transform.py", "reads": ["email"], "columns": ["x"]})
    (folder / "transform.py").write_text(source)
    return folder


@pytest.mark.parametrize("signature", ["df", "df, scale=2", "df, /", "*frames", "df, *, scale=2"])
def test_transform_callable_with_one_argument_loads_without_running_it(tmp_path, signature):
    marker = tmp_path / "ran"
    folder = transform_folder(tmp_path, f"from pathlib import Path\nPath({str(marker)!r}).write_text('x')\n\n\n"
                                        f"def transform({signature}):\n    return None\n")
    migration = load_migration(folder)
    assert migration.transform_file.name == "transform.py"
    assert not marker.exists(), "loading the folder ran transform.py"


@pytest.mark.parametrize("source, fragment", [
    ("def transform():\n    pass\n", "line 1: `def transform()` takes no argument"),
    ("def transform(df, *, scale):\n    pass\n", "needs the keyword argument(s) scale"),
    ("async def transform(df):\n    pass\n", "`transform` is `async def`"),
    ("from mylib import transform\n", "line 1 binds the name without `def`"),
    ("transform = lambda df: df\n", "line 1 binds the name without `def`"),
    ("", "no top-level function `transform`"),
    ("def transform(df):\n  return df\n   x = 1\n", "line 3: Python syntax error"),
])
def test_transform_that_cannot_be_called_as_transform_df_is_refused(tmp_path, source, fragment):
    with pytest.raises(SpecError) as err:
        load_migration(transform_folder(tmp_path, source))
    assert err.value.file.endswith("transform.py") and err.value.field == "backfill.transform"
    assert fragment in str(err.value)


@pytest.mark.parametrize("schedule", ["@daily", "@hourly", "@weekly", "@monthly", "@quarterly", "@yearly", "@once",
                                      "@midnight", "0 2 * * 1-5", "*/15 22-23,0-5 * * *", "0 3 * * mon-fri",
                                      "0 0 29 2 *"])
def test_presets_and_valid_crons_load_and_airflow_accepts_them(tmp_path, schedule):
    from airflow.timetables.trigger import CronTriggerTimetable

    assert load_migration(write_folder(tmp_path, schedule=schedule)).spec.schedule == schedule
    if schedule != "@once":
        CronTriggerTimetable(schedule, timezone="UTC").validate()


@pytest.mark.parametrize("schedule, fragment", [
    ("0 25 * * *", "the hour field '25'"), ("60 * * * *", "the minute field '60'"),
    ("0 0 0 * *", "the day of month field '0'"), ("0 0 1 13 *", "the month field '13'"),
    ("0 0 * * 8", "the day of week field '8'"), ("0 2 * *", "has 4 field(s)"), ("@reboot", "not a preset"),
])
def test_cron_airflow_cannot_read_is_refused_naming_the_field(tmp_path, schedule, fragment):
    from airflow.sdk.exceptions import AirflowTimetableInvalid
    from airflow.timetables.trigger import CronTriggerTimetable

    with pytest.raises(SpecError) as err:
        load_migration(write_folder(tmp_path, schedule=schedule))
    assert err.value.field == "schedule" and fragment in err.value.problem and "@daily" in err.value.fix
    with pytest.raises(AirflowTimetableInvalid):   # the same verdict as Airflow's own check
        CronTriggerTimetable(schedule, timezone="UTC").validate()


def test_cron_that_never_fires_is_refused_although_airflow_parses_it(tmp_path):
    with pytest.raises(SpecError, match="matches no date at all"):
        load_migration(write_folder(tmp_path, schedule="0 0 30 2 *"))
    assert check_cron("0 0 29 2 *") == "0 0 29 2 *"


@pytest.mark.parametrize("fixture", ["0148_cron_hour_out_of_range", "0140_transform_syntax_error",
                                     "0144_add_column_twice"])
def test_dag_parse_refuses_only_the_broken_folder_naming_file_field_and_fix(tmp_path, monkeypatch, fixture):
    from airflow.dag_processing.dagbag import DagBag

    migrations = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", migrations)
    shutil.copytree(INVALID / fixture, migrations / fixture)
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(migrations))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    good = sorted(p.name for p in (ROOT / "migrations").iterdir() if p.is_dir())
    assert {*good, *(f"{m}__{kind}" for m in good for kind in ("rollback", "rehearsal")),
            "airmigrate__migrate"} == set(bag.dag_ids)  # nor its rollback
    errors = {Path(k).name: v for k, v in bag.import_errors.items()}
    assert set(errors) == {"airmigrate_errors.py"}
    for expected in (INVALID / fixture / "expected_error.txt").read_text().splitlines():
        assert expected in errors["airmigrate_errors.py"], f"{expected!r} not in {errors['airmigrate_errors.py']!r}"
    assert fixture in errors["airmigrate_errors.py"] and "Fix:" in errors["airmigrate_errors.py"]


def test_key_column_the_table_lacks_is_named_with_the_columns_it_has(fresh_db, tmp_path):
    folder = write_folder(tmp_path, key="user_id")
    with pytest.raises(PreflightError) as err:
        preflight.preflight(fresh_db, load_migration(folder))
    message = str(err.value)
    assert "public.users has no column user_id" in message
    with connect(fresh_db) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position")]
    assert f"(its columns: {', '.join(columns)})" in message
    assert "Set `key` to one of its primary or unique NOT NULL keys: key: id" in message
    assert "not a primary key" not in message
    with connect(fresh_db) as conn:   # refused before the run was opened
        assert conn.execute("SELECT count(*) FROM airmigrate.runs").fetchone()[0] == 0


def test_key_that_is_not_unique_names_the_keys_the_table_has(fresh_db, tmp_path):
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id int, tenant int NOT NULL, seq int NOT NULL, note text, "
                     "UNIQUE (tenant, seq))")
        conn.execute("CREATE UNIQUE INDEX events_note ON events (note)")   # nullable: not a key
    folder = write_folder(tmp_path, table="events")
    with pytest.raises(PreflightError) as err:
        preflight.preflight(fresh_db, load_migration(folder))
    message = str(err.value)
    assert "public.events (id) is not a primary key or unique NOT NULL key" in message
    assert "key: [tenant, seq]" in message and "note" not in message.split("Set `key`")[1]
