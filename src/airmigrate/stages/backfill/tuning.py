"""How fast to go: batch size aimed at a target duration, and health checks that pause a shard.

The sizer is the inner of two control loops (the outer one, the duty cycle paced by the application's
latency, is :mod:`airmigrate.pacing`). It follows Spirit's rules rather than an average: the p90 of
seconds per row over the last few batches (one slow batch counts, a mean would hide it), growth at most
x1.5 a step, and a cut to a tenth when a batch overshoots the target five times, so a sudden slowdown
(a cold cache, a competing load) does not hold row locks for seconds while an average catches up.
The health checks follow gh-ost and GitLab: replication lag, an old transaction (it holds back vacuum),
lock waiters piling up, autovacuum on the table. They are hard stops, whatever the pacer says.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

from airmigrate import engines

log = logging.getLogger(__name__)

GROWTH = 1.5          # at most x1.5 per batch
OVERSHOOT = 5.0       # a batch 5x over its target...
PANIC_CUT = 0.1       # ...cuts the size to a tenth at once
WINDOW = 5            # p90 over the last 5 batches
# A breach is often a blip (a few lock waiters for a moment): pause briefly first, then back off x2 up to
# max_pause_s, so a short spike costs a quarter second and a long problem is still checked rarely.
FIRST_PAUSE_S = 0.25
HEALTH_EVERY_S = 0.5  # a healthy database is asked again after this long (HealthGate)


@dataclass
class BatchSizer:
    size: int
    target_seconds: float
    minimum: int
    maximum: int
    adaptive: bool = True
    recent: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # seconds per key, last batches
    asked: int | None = None  # the size last set from the console: a ceiling the adaptive sizer stays under

    @classmethod
    def aimed(cls, size: int, asked_seconds: float, target_seconds: float, minimum: int, maximum: int,
              adaptive: bool = True) -> "BatchSizer":
        """A sizer aiming at `target_seconds` whose first size, `size`, was set for `asked_seconds` (the spec's
        batch_size and target_batch_seconds): while pacing, batches aim at the shorter lock_hold_s, and the first
        batch at the spec's size would hold its row locks five times as long as the pacer allows (the first
        seconds of a protected run were its worst on the bench). Scaled by the ratio until the batches measure
        the real pace; a size already tuned by another shard comes out smaller, and grows back x1.5 a batch."""
        sizer = cls(size, target_seconds, minimum, maximum, adaptive)
        if adaptive and 0 < target_seconds < asked_seconds:
            sizer._set(size * target_seconds / asked_seconds)
        return sizer

    def observe(self, rows: int, seconds: float) -> int:
        """Record one batch (keys in its range, its duration); return the size for the next one."""
        if not self.adaptive or rows <= 0:
            return self.size
        if seconds > OVERSHOOT * self.target_seconds:
            self.recent.clear()  # the old pace no longer holds
            self.recent.append(seconds / rows)
            return self._set(self.size * PANIC_CUT)
        self.recent.append(seconds / rows)
        wanted = self.target_seconds / max(self.p90(), 1e-9)
        return self._set(min(wanted, self.size * GROWTH))

    def p90(self) -> float:
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]

    def halve(self) -> int:
        """A batch hit statement_timeout: the next ones start from half the size."""
        return self._set(self.size // 2)

    def _set(self, size: float) -> int:
        """Within the spec's bounds and under the console's size when one was set (what the console shows is a
        promise: batches never grow past it)."""
        ceiling = min(self.maximum, self.asked) if self.asked else self.maximum
        self.size = int(min(max(size, min(self.minimum, ceiling)), ceiling))
        return self.size


# The health queries are the engine's (``state_sql().HEALTH_QUERIES``, by the names below); a check the engine
# cannot measure is None there: skipped, said once per process.
_UNMEASURED: set[tuple[str, str]] = set()


def health_problem(conn, throttle, table: str) -> str | None:
    """The first breached limit, as a sentence for the log; None when healthy."""
    if throttle is None:
        return None
    limits = {"replication lag": throttle.max_replication_lag_s, "oldest transaction": throttle.max_transaction_age_s,
              "lock waiters": throttle.max_lock_waiters, "autovacuum": 0 if throttle.pause_during_autovacuum else None,
              "WAL backlog": throttle.max_wal_backlog_mb}
    engine = engines.of(conn)
    queries = engine.state_sql().HEALTH_QUERIES
    for name, limit in limits.items():
        if limit is None:
            continue
        if queries.get(name) is None and name == "replication lag" and throttle.replicas:
            value = engine.replication_lag_s(conn, throttle.replicas)  # asked on the replicas themselves (MySQL)
        elif queries.get(name) is None:
            if (engine.name, name) not in _UNMEASURED:
                _UNMEASURED.add((engine.name, name))
                log.info("throttle: %s is not measured on %s: that limit is not checked", name, engine.name)
            continue
        else:
            value = float(conn.execute(queries[name], {"table": table}).fetchone()[0] or 0)
            conn.commit()
        if value is not None and value > limit:
            unit = {"replication lag": "s", "oldest transaction": "s", "WAL backlog": " MB"}.get(name, "")
            shown = "unknown (a replica's replication is stopped)" if value == float("inf") else f"{value:.1f}{unit}"
            return f"{name} {shown} > limit {limit}{unit}"
    return None


class HealthGate:
    """The health checks between batches, asked at most every HEALTH_EVERY_S while the database is healthy.

    Asked before every batch they cost more than the batch's bookkeeping (five queries and five commits, twice per
    batch with the claim that finds none); at full speed, on a busy machine, those round trips were most of what
    the hand-written loop did not pay. A limit breached within the interval is seen at most HEALTH_EVERY_S late:
    gh-ost and pt-online-schema-change check their loads once a second or once a chunk too."""

    def __init__(self, throttle, table: str, shard: int):
        self.throttle, self.table, self.shard = throttle, table, shard
        self.checked = float("-inf")

    def wait(self, conn, should_stop=lambda: False) -> float:
        """Pause while unhealthy (wait_until_healthy) when the last check is old enough; seconds paused."""
        if self.throttle is None or time.monotonic() - self.checked < HEALTH_EVERY_S:
            return 0.0
        paused = wait_until_healthy(conn, self.throttle, self.table, self.shard, should_stop)
        self.checked = time.monotonic()
        return paused


def wait_until_healthy(conn, throttle, table: str, shard: int, should_stop=lambda: False) -> float:
    """Pause with exponential backoff while the database is unhealthy; returns seconds paused."""
    paused, delay = 0.0, min(FIRST_PAUSE_S, throttle.max_pause_s) if throttle else FIRST_PAUSE_S
    while (problem := health_problem(conn, throttle, table)) is not None and not should_stop():
        log.warning("shard %d paused %.2fs: %s", shard, delay, problem)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not should_stop():  # a window closing ends the pause at once
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        paused += delay
        delay = min(delay * 2, throttle.max_pause_s)
    if paused:
        log.info("shard %d resumes after %.2fs of pauses", shard, paused)
    return paused
