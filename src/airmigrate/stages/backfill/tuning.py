"""How fast to go: batch size aimed at a target duration, and health checks that pause a shard.

The sizer follows GitLab's batched background migration optimizer: an exponential moving average
of seconds per row, a new size aimed at the target duration, growth at most x1.2 per step (shrinking
at most /2), clamped to [min, max]. The health checks follow gh-ost and GitLab: replication lag, an
old transaction (it holds back vacuum), lock waiters piling up, autovacuum on the table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

GROWTH, SHRINK, SMOOTHING = 1.2, 0.5, 0.3
# A breach is often a blip (a few lock waiters for a moment): pause briefly first, then back off x2 up to
# max_pause_s, so a short spike costs a quarter second and a long problem is still checked rarely.
FIRST_PAUSE_S = 0.25


@dataclass
class BatchSizer:
    size: int
    target_seconds: float
    minimum: int
    maximum: int
    adaptive: bool = True
    seconds_per_row: float | None = None

    def observe(self, rows: int, seconds: float) -> int:
        """Record one batch (rows in its range, its duration); return the size for the next one."""
        if not self.adaptive or rows <= 0:
            return self.size
        per_row = seconds / rows
        self.seconds_per_row = per_row if self.seconds_per_row is None else \
            SMOOTHING * per_row + (1 - SMOOTHING) * self.seconds_per_row
        wanted = self.target_seconds / max(self.seconds_per_row, 1e-9)
        bounded = min(max(wanted, self.size * SHRINK), self.size * GROWTH)
        self.size = int(min(max(bounded, self.minimum), self.maximum))
        return self.size

    def halve(self) -> int:
        """A batch hit statement_timeout: the next ones start from half the size."""
        self.size = max(self.minimum, self.size // 2)
        return self.size


HEALTH_QUERIES = {
    "replication lag": "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) FROM pg_stat_replication",
    "oldest transaction": (
        "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0) FROM pg_stat_activity "
        "WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
        "AND application_name NOT LIKE 'airmigrate%%'"),
    "lock waiters": "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
    "autovacuum": "SELECT count(*) FROM pg_stat_progress_vacuum WHERE relid = to_regclass(%(table)s)",
}


def health_problem(conn, throttle, table: str) -> str | None:
    """The first breached limit, as a sentence for the log; None when healthy."""
    if throttle is None:
        return None
    limits = {"replication lag": throttle.max_replication_lag_s, "oldest transaction": throttle.max_transaction_age_s,
              "lock waiters": throttle.max_lock_waiters, "autovacuum": 0 if throttle.pause_during_autovacuum else None}
    for name, limit in limits.items():
        if limit is None:
            continue
        value = float(conn.execute(HEALTH_QUERIES[name], {"table": table}).fetchone()[0] or 0)
        conn.commit()
        if value > limit:
            unit = "s" if name in ("replication lag", "oldest transaction") else ""
            return f"{name} {value:.1f}{unit} > limit {limit}{unit}"
    return None


def wait_until_healthy(conn, throttle, table: str, shard: int, should_stop=lambda: False) -> float:
    """Pause with exponential backoff while the database is unhealthy; returns seconds paused."""
    paused, delay = 0.0, min(FIRST_PAUSE_S, throttle.max_pause_s) if throttle else FIRST_PAUSE_S
    while (problem := health_problem(conn, throttle, table)) is not None and not should_stop():
        log.warning("shard %d paused %.2fs: %s", shard, delay, problem)
        time.sleep(delay)
        paused += delay
        delay = min(delay * 2, throttle.max_pause_s)
    if paused:
        log.info("shard %d resumes after %.2fs of pauses", shard, paused)
    return paused
