"""What the console receives from the Airflow it is mounted in (the logged-in user and its permissions, DAG runs
and task instances, the migration's connection): the plugin fills :data:`AIRFLOW` in with
``airmigrate.airflow.console_side.for_console()``, so the console imports no Airflow."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Awaitable, Callable

from fastapi import HTTPException, Request

from airmigrate.db import Target
from airmigrate.errors import AirmigrateError
from airmigrate.spec import Migration


def _target_from_environment(migration: Migration) -> Target:
    """Without Airflow: the connection's AIRFLOW_CONN_* variable, read as Airflow reads it."""
    uri = os.environ.get(f"AIRFLOW_CONN_{migration.spec.connection_id.upper()}")
    if not uri:
        raise AirmigrateError(f"no Airflow connection {migration.spec.connection_id!r} for {migration.id}")
    return Target.from_airflow_uri(uri)


async def _nobody(request: Request):
    raise HTTPException(401, "not logged in: the console runs inside Airflow's api-server")


@dataclass
class AirflowSide:
    """What the console needs from the Airflow it is mounted in: the plugin hands it over
    (airmigrate.airflow.console_side.for_console), so the console imports no Airflow. The defaults know nothing
    (no user, no runs, no permission): a console without Airflow shows the target's state only."""

    current_user: Callable[[Request], Awaitable] = _nobody
    latest_dag_runs: Callable[[list[str]], dict] = lambda dag_ids: {}  # dag_id -> newest run with its tasks
    runs_of: Callable[[str], list[dict]] = lambda migration_id: []  # every run of a migration's DAGs
    tries_of: Callable[[str, str], list[dict]] = lambda dag_id, run_id: []  # earlier tries of a run's tasks
    can_trigger: Callable[[object, str], bool] = lambda user, dag_id: False
    user_name: Callable[[object], str] = lambda user: "unknown"
    clear_failed_shards: Callable[[str, str], list[str]] = lambda dag_id, run_id: []
    target_for: Callable[[Migration], Target] = _target_from_environment  # the migration's Airflow connection


AIRFLOW = AirflowSide()


def install(side: AirflowSide) -> None:
    """Hand the console what this Airflow provides (the same :data:`AIRFLOW` object, every field replaced)."""
    for field in fields(AirflowSide):
        setattr(AIRFLOW, field.name, getattr(side, field.name))
