"""The console's buttons: parse and check what was asked, apply it with :func:`airmigrate.control.act`
(recorded in airmigrate.actions with the Airflow user's name), and for "retry failed batches" also clear
the failed shard task instances in Airflow so they run again (the UI's Clear, for exactly those)."""

from __future__ import annotations

import math
from typing import Callable

from airmigrate import control
from airmigrate.db import connect
from airmigrate.spec import setting_problem

LABELS = {"pause": "Pause", "resume": "Resume", "cancel": "Cancel", "batch_size": "Set batch size",
          "app_latency_ratio": "Set pacing target", "retry_failed": "Retry failed batches"}


class ActionRefused(ValueError):
    """A request the console refuses, with the reason shown to the user."""


def parse_value(action: str, raw) -> float | None:
    """The value of a batch_size / app_latency_ratio request as a number, refused with the reason when it
    cannot apply (the limits are the spec's, as for the trigger form)."""
    if action not in control.ACTIONS:
        raise ActionRefused(f"unknown action '{action}': one of {', '.join(control.ACTIONS)}")
    if action not in ("batch_size", "app_latency_ratio"):
        return None
    if raw is None or raw == "":
        value = None  # app_latency_ratio: full speed; batch_size: refused below
    else:
        try:
            value = float(raw)
        except (TypeError, ValueError, OverflowError):
            raise ActionRefused(f"{action} '{raw}' is not a number: {setting_problem(action, 'x')}") from None
        if isinstance(raw, bool) or not math.isfinite(value):  # "NaN", "inf", 1e999: no size, no ratio
            raise ActionRefused(f"{action} '{raw}' is not a finite number: {setting_problem(action, 'x')}")
    if problem := setting_problem(action, value):
        raise ActionRefused(f"{action} {raw} refused: {problem}")
    return int(value) if action == "batch_size" else value


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
