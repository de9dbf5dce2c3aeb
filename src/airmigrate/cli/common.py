"""What every `airmigrate` command needs first: the migration a name means and the target database.

Below the commands (cli.py, cli_plan.py), so they share it without importing each other; no Airflow import
(a refusal before a run answers in a second).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from airmigrate import settings
from airmigrate.db import Target
from airmigrate.errors import AirmigrateError


def load_named(migration_id: str):
    """The migration folder of that name or unique prefix, or an error listing the ones there are."""
    from airmigrate.lifecycle.names import resolve
    from airmigrate.spec import discover, load_migration

    folder = settings.migrations_dir() / migration_id
    if not folder.is_dir():  # a unique prefix, like git: `airmigrate run 0010`
        names = [p.name for p in discover(settings.migrations_dir())]
        folder = settings.migrations_dir() / resolve(migration_id, names, settings.migrations_dir())
    return load_migration(folder, settings.expectations_dir())


def configured_target() -> Target:
    """AIRFLOW_CONN_AIRMIGRATE_TARGET, else AIRMIGRATE_TARGET_URL (which then becomes that connection)."""
    uri = os.environ.get("AIRFLOW_CONN_AIRMIGRATE_TARGET")
    if not uri and os.environ.get("AIRMIGRATE_TARGET_URL"):
        target = Target.from_url(os.environ["AIRMIGRATE_TARGET_URL"])
        os.environ["AIRFLOW_CONN_AIRMIGRATE_TARGET"] = target.airflow_uri()
        return target
    if not uri:
        raise AirmigrateError("no target database: set AIRFLOW_CONN_AIRMIGRATE_TARGET=postgresql://user@host/db "
                              "(or AIRMIGRATE_TARGET_URL); `airmigrate target` prints the demo one")
    return Target.from_airflow_uri(uri)  # as Airflow reads it, without importing Airflow


def prepare_airflow_env() -> None:
    """Point Airflow at this project (unless the user configured it) and create its metadata DB once."""
    root = settings.project_root()
    home = Path(os.environ.setdefault("AIRFLOW_HOME", str(settings.var_dir() / "airflow")))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(root / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(root / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRMIGRATE_MIGRATIONS_DIR", str(settings.migrations_dir()))
    os.environ.setdefault("AIRMIGRATE_EXPECTATIONS_DIR", str(settings.expectations_dir()))
    home.mkdir(parents=True, exist_ok=True)
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in os.environ and not (home / "airflow.db").exists():
        print(f"initialising Airflow metadata in {home} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
