"""Operations on a running migration: pause, resume, cancel, change the batch size or the pacer's target,
retry the failed batches. The console (and anyone with SQL) writes the request to ``airmigrate.controls``;
every shard reads it between batches (every CHECK_EVERY_S at most), so a pause takes effect within a batch
and a few seconds, and nothing is interrupted half-way (a batch is one transaction). Every action is
recorded in ``airmigrate.actions`` with who and when.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from airmigrate import engines, state
from airmigrate.errors import AirmigrateError
from airmigrate.spec import setting_problem

CHECK_EVERY_S = 2.0
ACTIONS = ("pause", "resume", "cancel", "batch_size", "app_latency_ratio", "retry_failed")


class ControlError(AirmigrateError):
    """An action that does not apply (no running backfill, a bad value)."""


def act(conn, migration_id: str, action: str, actor: str, value: float | None = None) -> str:
    """Apply one action to the migration's active run; returns what was done, as a sentence."""
    if action not in ACTIONS:
        raise ControlError(f"unknown action '{action}': one of {', '.join(ACTIONS)}")
    state.ensure_schema(conn)
    active = [r for r in (state.active_run(conn, migration_id, "up"), state.active_run(conn, migration_id, "down"))
              if r]
    run_id = max(active) if active else None  # the newest: a rollback started after a cancelled (failed) way up
    if run_id is None:
        raise ControlError(f"{migration_id} has no active run to {action.replace('_', ' ')}")
    with conn.transaction():
        conn.execute(engines.of(conn).state_sql().OPEN_CONTROLS, (run_id,))
        done = _apply(conn, run_id, action, value)
        conn.execute("INSERT INTO airmigrate.actions (migration_id, run_id, action, detail, actor) "
                     "VALUES (%s, %s, %s, %s, %s)", (migration_id, run_id, action, done, actor))
    return done


def _apply(conn, run_id: int, action: str, value: float | None) -> str:
    now = engines.of(conn).console_sql().NOW  # the state tables' clock (UTC on MySQL)
    if action == "pause":
        conn.execute(f"UPDATE airmigrate.controls SET paused = true, updated_at = {now} WHERE run_id = %s", (run_id,))
        conn.execute("UPDATE airmigrate.runs SET status = 'paused' WHERE run_id = %s AND status = 'running'",
                     (run_id,))
        return "paused: shards finish their batch and stop claiming (no worker slot held while paused)"
    if action == "resume":
        conn.execute(f"UPDATE airmigrate.controls SET paused = false, updated_at = {now} WHERE run_id = %s",
                     (run_id,))
        conn.execute("UPDATE airmigrate.runs SET status = 'running' WHERE run_id = %s AND status = 'paused'",
                     (run_id,))
        return "resumed: shards continue from the cursor within seconds"
    if action == "cancel":
        conn.execute(f"UPDATE airmigrate.controls SET cancelled = true, paused = false, updated_at = {now} "
                     "WHERE run_id = %s", (run_id,))
        return "cancelled: shards stop after their batch; the schema stays expanded (roll back to undo it)"
    if action in ("batch_size", "app_latency_ratio") and (problem := setting_problem(action, value)):
        raise ControlError(f"{action} {value}: {problem}")
    if action == "batch_size":
        conn.execute(f"UPDATE airmigrate.controls SET batch_size = %s, updated_at = {now} WHERE run_id = %s",
                     (int(value), run_id))
        conn.execute("UPDATE airmigrate.cursors SET batch_size = %s WHERE run_id = %s", (int(value), run_id))
        return f"batch size set to {int(value):,} rows"
    if action == "app_latency_ratio":
        updated = conn.execute("UPDATE airmigrate.pacing SET target_ratio = %s WHERE run_id = %s",
                               (value, run_id)).rowcount
        if not updated:
            raise ControlError("the pacer is not running for this run (no backfill yet, or app_latency_ratio: null "
                               "when it started): set the ratio in the trigger form of the next run")
        return f"pacing target set to {value}x the application's latency"
    n = conn.execute("UPDATE airmigrate.batches SET status = 'pending', attempts = 0 WHERE run_id = %s "
                     "AND status = 'failed'", (run_id,)).rowcount
    return f"{n} failed batch(es) queued again"


@dataclass
class RunControl:
    """What a shard checks between batches (at most every CHECK_EVERY_S, on its own connection)."""

    run_id: int
    checked: float = 0.0
    paused: bool = False
    cancelled: bool = False
    batch_size: int | None = None

    def refresh(self, conn) -> "RunControl":
        if time.monotonic() - self.checked < CHECK_EVERY_S:
            return self
        self.checked = time.monotonic()
        row = conn.execute("SELECT paused, cancelled, batch_size FROM airmigrate.controls WHERE run_id = %s",
                           (self.run_id,)).fetchone()
        conn.commit()
        if row:
            self.paused, self.cancelled, self.batch_size = row
        return self

    @property
    def stop_reason(self) -> str | None:
        return "cancelled" if self.cancelled else "paused" if self.paused else None


def recent_actions(conn, migration_id: str, limit: int = 50) -> list[dict]:
    rows = conn.execute("SELECT at, action, detail, actor, run_id FROM airmigrate.actions WHERE migration_id = %s "
                        "ORDER BY at DESC LIMIT %s", (migration_id, limit)).fetchall()
    return [{"at": state.utc(at), "action": action, "detail": detail, "actor": actor, "run_id": run_id}
            for at, action, detail, actor, run_id in rows]


def cancel_message(migration_id: str, rollback_dag_id: str, actor: str | None, at) -> str:
    """What a cancelled run says wherever it is shown (the run's error, the console, the report): cancelled, by
    whom and when, and the two ways on. Not "failed, fix the cause": nothing is broken."""
    when = at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if isinstance(at, datetime) else None
    who = f" by {actor}" + (f" at {when}" if when else "") if actor else ""
    return (f"cancelled{who}: the backfill stopped after its batch; the schema stays expanded. Next: resume "
            f"(trigger {migration_id} again: it continues from the cursor) or roll back (the DAG {rollback_dag_id}, "
            f"or `airmigrate run {migration_id} --rollback`)")


def cancellation(conn, run_id: int) -> dict | None:
    """{"by", "at"} when the run's backfill was cancelled and not started again since (a new trigger clears the
    flag); None otherwise."""
    row = conn.execute("SELECT cancelled FROM airmigrate.controls WHERE run_id = %s", (run_id,)).fetchone()
    if not (row and row[0]):
        return None
    last = conn.execute("SELECT actor, at FROM airmigrate.actions WHERE run_id = %s AND action = 'cancel' "
                        "ORDER BY at DESC LIMIT 1", (run_id,)).fetchone()  # two plain statements: every engine's
    return {"by": last[0] if last else None, "at": state.utc(last[1]) if last else None}
