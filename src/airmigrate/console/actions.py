"""The console's buttons: parse and check what was asked, apply it with :func:`airmigrate.control.act`
(recorded in airmigrate.actions with the Airflow user's name), and for "retry failed batches" also clear
the failed shard task instances in Airflow so they run again (the UI's Clear, for exactly those)."""

from __future__ import annotations

from typing import Callable

from airmigrate import control
from airmigrate.db import connect

LABELS = {"pause": "Pause", "resume": "Resume", "cancel": "Cancel", "batch_size": "Set batch size",
          "app_latency_ratio": "Set pacing target", "retry_failed": "Retry failed batches"}


class ActionRefused(ValueError):
    """A request the console refuses, with the reason shown to the user."""


def parse_value(action: str, raw) -> float | None:
    """The value of a batch_size / app_latency_ratio request, refused with the reason when it cannot apply."""
    if action not in control.ACTIONS:
        raise ActionRefused(f"unknown action '{action}': one of {', '.join(control.ACTIONS)}")
    if action == "batch_size":
        if raw is None or raw == "":
            raise ActionRefused("batch_size: give a whole number of rows between 1 and 2,000,000")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ActionRefused(f"batch_size '{raw}' is not a number: give a whole number of rows between 1 and "
                                "2,000,000") from None
        if value != int(value):
            raise ActionRefused(f"batch_size {raw} is not a whole number of rows")
        if value < 1:
            raise ActionRefused(f"batch_size {raw} refused: a batch covers at least 1 row (give 1 to 2,000,000)")
        if value > 2_000_000:
            raise ActionRefused(f"batch_size {raw} refused: at most 2,000,000 rows per batch")
        return int(value)
    if action == "app_latency_ratio":
        if raw is None or raw == "":
            return None  # full speed
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ActionRefused(f"app_latency_ratio '{raw}' is not a number: give a ratio above 1 (e.g. 1.25), or "
                                "leave it empty for full speed") from None
        if not 1 < value <= 100:
            raise ActionRefused(f"app_latency_ratio {raw} refused: give a ratio above 1 and at most 100 (e.g. 1.25), "
                                "or leave it empty for full speed")
        return value
    return None


def perform(target, migration_id: str, action: str, actor: str, raw_value=None,
            clear: Callable[[str, str], list[str]] | None = None) -> dict:
    """Apply one action as ``actor``; returns {"message", "cleared"}. ``clear(dag_id, dag_run_id)`` makes
    Airflow run the failed shard tasks again (the api-server passes the real one; tests a stand-in)."""
    value = parse_value(action, raw_value)
    with connect(target, autocommit=True) as conn:
        try:
            message = control.act(conn, migration_id, action, actor, value)
        except control.ControlError as exc:
            raise ActionRefused(str(exc)) from None
        row = None
        if action == "retry_failed":  # the run act() applied it to: its DAG (up or rollback) and Airflow run
            row = conn.execute("SELECT r.direction, r.dag_run_id FROM airmigrate.actions a JOIN airmigrate.runs r "
                               "USING (run_id) WHERE a.migration_id = %s ORDER BY a.id DESC LIMIT 1",
                               (migration_id,)).fetchone()
    cleared: list[str] = []
    if row and row[1] and clear is not None:
        dag_id = migration_id if row[0] == "up" else f"{migration_id}__rollback"
        cleared = clear(dag_id, row[1])
        if cleared:
            message += f"; Airflow runs {', '.join(cleared)} again"
    return {"message": message, "cleared": cleared}
