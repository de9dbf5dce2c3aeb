"""The outer control loop: a duty cycle (work time / (work + sleep)) set once a second from the
application's measured impact.

The rules are Vitess's and TCP's, tuned for a database that is also serving an application:
- an application backend waiting on a lock our backfill holds: halve at once (it is waiting *now*);
- the application's latency above the asked ratio (or any other signal over its limit): x0.7, and
  remember that setting as too much;
- under target while the backfill used its whole allowance: a small additive step, never more than
  half-way to the lowest setting that was too much (so it does not oscillate around the knee). The
  memory is forgotten at each new baseline, because the application's load has changed by then.

The budget counts worker-seconds per second: 1.0 is one shard working without pause; with several
shards the ceiling is their number and each works budget/shards of its time, so shards add up under one
shared budget. Pure logic, no database: the signals come in as a :class:`Reading`.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOOR = 0.02       # never stop completely: a backfill that never moves is a different kind of outage
DECREASE = 0.7     # over target
STEP = 0.1         # under target, per decision (0.02 -> 1.0 in ten seconds)


@dataclass
class Reading:
    """One second of signals. A ratio is 'application latency now / its baseline' (1.0 = unharmed);
    None when that signal is unavailable."""

    latency_ratio: float | None = None      # pg_stat_statements: mean time per call, other roles than ours
    blocked: int = 0                        # application backends waiting on a lock our backfill holds
    runnable_ratio: float | None = None     # active backends not waiting on anything, per CPU
    cpu_pressure_ratio: float | None = None # 1 + /proc/pressure/cpu 'some' share
    external: float | None = None           # throttle-query / throttle-url value
    working: bool = True                    # the backfill did work in the last interval

    def impacts(self) -> dict[str, float]:
        """The ratios held against the target. The application's statement latency (execution time only) misses
        the time its sessions wait for a CPU between statements, which the run queue shows; so both count."""
        return {name: value for name, value in (("app latency", self.latency_ratio), ("run queue", self.runnable_ratio),
                                                ("cpu pressure", self.cpu_pressure_ratio)) if value is not None}


@dataclass
class DutyCycle:
    """The shared budget and how it moves; `decide` returns (budget, reason)."""

    target: float | None          # app_latency_ratio; None = full speed
    ceiling: float = 1.0          # the number of shards
    external_max: float | None = None
    budget: float | None = None
    too_much: float | None = None

    def __post_init__(self):
        if self.budget is None:
            self.budget = self.ceiling

    def decide(self, reading: Reading) -> tuple[float, str]:
        if self.target is None:
            self.budget = self.ceiling
            return self.budget, "full speed (app_latency_ratio: null)"
        if reading.blocked:
            return self._lower(self.budget / 2, f"{reading.blocked} application backend(s) waiting on our locks: "
                                                "halved")
        over = {name: value for name, value in reading.impacts().items() if value > self.target}
        if self.external_max is not None and reading.external is not None and reading.external > self.external_max:
            over["external signal"] = reading.external
        if over:
            what = ", ".join(f"{name} {value:.2f}" for name, value in over.items())
            limit = f"external_max {self.external_max}" if list(over) == ["external signal"] else \
                f"target {self.target:.2f}"
            return self._lower(self.budget * DECREASE, f"{what} over {limit}: x{DECREASE}")
        if not reading.working:
            return self.budget, "holding: the backfill did not use its allowance"
        if self.budget >= self.ceiling:
            return self.budget, "at full allowance, under target"
        return self._raise()

    def forget_limit(self) -> None:
        """A new baseline: the load changed, so the old knee no longer applies."""
        self.too_much = None

    def _lower(self, budget: float, reason: str) -> tuple[float, str]:
        self.too_much = self.budget if self.too_much is None else min(self.too_much, self.budget)
        self.budget = max(FLOOR, budget)
        return self.budget, reason

    def _raise(self) -> tuple[float, str]:
        wanted = self.budget + STEP
        reason = f"under target: +{STEP}"
        if self.too_much is not None and self.too_much > self.budget:
            halfway = self.budget + (self.too_much - self.budget) / 2
            if wanted > halfway:
                wanted, reason = halfway, f"under target: half-way to {self.too_much:.2f}, the last setting that was too much"
        self.budget = min(self.ceiling, wanted)
        return self.budget, reason


def shard_duty(budget: float, shards: int) -> float:
    """Each shard's share of the budget, as its own duty cycle (at most 1: always working)."""
    return min(1.0, max(FLOOR, budget / max(1, shards)))


def sleep_after(work_seconds: float, duty: float) -> float:
    """Sleep that makes `work_seconds` the given share of the time."""
    return 0.0 if duty >= 1 else work_seconds * (1 / duty - 1)
