"""The outer control loop: a duty cycle (work time / (work + sleep)) set once a second from the
application's measured impact.

The rules, tuned on bench/backfill_bench.py against an application with a fixed arrival rate:
- an application backend waiting on a lock our backfill holds for two samples running: halve at once (it is
  waiting *now*);
- over the asked ratio: cut in proportion to the excess harm (the harm is ratio - 1; twice the allowed harm
  halves the budget, a small excess takes 10% off), and remember the setting as too much;
- under target while the backfill used its allowance: grow. Before the first cut it doubles (slow start, from a
  twentieth of the ceiling: a protected run never begins by hitting the application, see START); after it,
  a step that shrinks as the signal nears the target, never more than half-way to the lowest setting that was
  too much (so it does not oscillate around the knee) and never more than x1.5 in one decision (the harm rises
  steeply at the low end: on two cores a loop working a tenth of its time read 1.9x). The memory is forgotten at
  a new baseline that finds the application alone as fast as before or faster (its load fell: the old knee no
  longer applies), kept when slower.
- no application at all (the last probe saw no transaction in flight and no statement, nor did any decision since
  the probe before it): the ceiling, nothing to protect (a test database, a quiet night window); one showing up
  later (a transaction in flight, statements counted) puts the run back to the start share and slow start, and the
  pacer measures it alone at once;
- the application faster with us than alone (FASTER of its baseline or less): the baseline is off, taken at a
  slow moment or before its load fell; hold, and the pacer measures it again (once: a second figure is trusted);
- damping: the signal pools the last two decisions' samples at least, and the decision after a cut never
  raises nor cuts again unless the signal rose by RISING (its window still holds samples from before the cut),
  so one slow second moves the budget once.

The budget counts worker-seconds per second: 1.0 is one shard working without pause; with several shards the
ceiling is their number and each works budget/shards of its time, so shards add up under one shared budget.
Pure logic, no database: the signals come in as a :class:`Reading`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FLOOR = 0.02       # never stop completely: a backfill that never moves is a different kind of outage
START = 0.05       # a protected run starts at this share of the ceiling (two shards: a tenth of one worker)
SLOW_START = 2.0   # x2 a decision under target, until the first cut
MIN_CUT, MAX_CUT = 0.5, 0.9  # a cut keeps between half and 90% of the budget
STEP = 0.1         # the largest additive step after the first cut (share of the ceiling)
GROW = 1.5         # ...and never more than this many times the budget in one decision (see _raise)
JUMP = 1.5         # a baseline this much slower than the last is measured again soon (baseline_jumped)
FASTER = 1 / JUMP  # an application this much faster with us than alone: the baseline is off (Reading.baseline_off)
RISING = 1.1       # just after a cut, the signal must rise by this much to be cut again (noise is not rising)
DECREASE = MIN_CUT  # kept for callers that name the old constant
NOBODY = "full speed: the last probe saw no application to protect"  # the decision's reason (airmigrate.pacing)


@dataclass
class Reading:
    """One second of signals. A ratio is 'application latency now / its baseline' (1.0 = unharmed);
    None when that signal is unavailable."""

    transaction_ratio: float | None = None  # pg_stat_activity: the application's transactions in flight, their age
    latency_ratio: float | None = None      # pg_stat_statements: mean time per call, other roles than ours
    round_trip_ratio: float | None = None   # the canary's extra p99 round trip, over the transactions' tail age
    blocked: int = 0                        # application backends waiting on a lock our backfill holds
    runnable_ratio: float | None = None     # active backends per CPU: logged, not held against the target
    cpu_pressure_ratio: float | None = None # 1 + /proc/pressure/cpu 'some' share
    external: float | None = None           # throttle-query / throttle-url value
    working: bool = True                    # the backfill did work in the last interval
    rechecked: bool = False                 # the baseline was measured again because it read off: trust it
    nobody: bool = False                    # no application to protect (Controller._nobody_to_protect)

    @property
    def baseline_off(self) -> bool:
        """The application's transactions read FASTER than its baseline or less, with the backfill running: the
        baseline does not describe it (taken at a slow moment, or its load fell since). Seen on the bench: a
        first probe at a slow moment (p95 age 4.25 ms against 1.5-2.3 every other time) read 0.5x, the slow
        start doubled to the ceiling in five seconds and the busy phase read 26x. A baseline measured again for
        that reason is trusted even so (an application really faster with us is not held back for good)."""
        return not self.rechecked and self.transaction_ratio is not None and self.transaction_ratio < FASTER

    def impacts(self) -> dict[str, float]:
        """The ratios held against the target. The transactions' age is what the application feels (its
        statements plus the waits between them: for a CPU, for our row locks, for the WAL flush); the mean
        statement time stands in only when too few transactions were seen (on the bench, the mean of 0.02 ms
        statements swung 0.8-1.6x while the transactions held 1.1x: alone it cut for nothing). The run queue
        is not held at all: it counts our own busy backends, so on few cores it reads 'over' while the
        application is unharmed."""
        latency = self.transaction_ratio if self.transaction_ratio is not None else self.latency_ratio
        name = "app transactions" if self.transaction_ratio is not None else "app statements"
        return {n: v for n, v in ((name, latency), ("round trips", self.round_trip_ratio),
                                  ("cpu pressure", self.cpu_pressure_ratio)) if v is not None}


@dataclass
class DutyCycle:
    """The shared budget and how it moves; `decide` returns (budget, reason)."""

    target: float | None          # app_latency_ratio; None = full speed
    ceiling: float = 1.0          # the number of shards
    external_max: float | None = None
    budget: float | None = None
    too_much: float | None = None
    cut_last: bool = False        # the previous decision cut: this one does not raise
    cut_ratio: float = 0.0        # the signal that cut last
    cuts: int = 0                 # cuts since the start (0: still in slow start)
    pinned: int = 0               # decisions in a row over target with the budget already at the floor

    def __post_init__(self):
        if self.budget is None:
            self.budget = starting_budget(self.target, self.ceiling)

    def decide(self, reading: Reading) -> tuple[float, str]:
        if self.target is None:
            self.budget = self.ceiling
            return self.budget, "full speed (app_latency_ratio: null)"
        if reading.blocked:
            return self._lower(0.5, f"{reading.blocked} application backend(s) waiting on our locks: halved")
        over = {name: value for name, value in reading.impacts().items() if value > self.target}
        if self.external_max is not None and reading.external is not None and reading.external > self.external_max:
            over["external signal"] = reading.external
        if over:
            self.pinned = self.pinned + 1 if self.budget <= FLOOR else 0
            return self._over(over)
        self.pinned = 0
        if reading.nobody:
            self.budget, self.cut_last = self.ceiling, False
            return self.budget, NOBODY
        cut_last, self.cut_last = self.cut_last, False
        if cut_last:
            return self.budget, "holding: the last cut is not in the signal yet"
        if not reading.working:
            return self.budget, "holding: the backfill did not use its allowance"
        if reading.baseline_off:
            return self.budget, (f"holding: the application reads {reading.transaction_ratio:.2f}x its baseline, "
                                 "faster than alone: the baseline is off, it is measured again")
        if self.budget >= self.ceiling:
            return self.budget, "at full allowance, under target"
        return self._raise(max(reading.impacts().values(), default=1.0))

    def restart(self) -> None:
        """An application showed up after a probe that saw none: met as at a run's start (the start share, slow
        start, no knee remembered) until a probe measures it alone."""
        self.budget = starting_budget(self.target, self.ceiling)
        self.too_much, self.cuts, self.cut_last = None, 0, False

    def forget_limit(self) -> None:
        """A new baseline: the load changed, so the old knee no longer applies."""
        self.too_much = None

    def cut_for(self, ratio: float) -> float:
        """The share of the budget kept when the signal reads `ratio`: allowed harm / measured harm."""
        allowed, harm = self.target - 1, max(ratio - 1, 1e-9)
        return min(MAX_CUT, max(MIN_CUT, allowed / harm))

    def _over(self, over: dict[str, float]) -> tuple[float, str]:
        what = ", ".join(f"{name} {value:.2f}" for name, value in over.items())
        external_only = list(over) == ["external signal"]
        ratio = 0.0 if external_only else max(v for n, v in over.items() if n != "external signal")
        if self.cut_last and not external_only and ratio <= self.cut_ratio * RISING:
            self.cut_last = False  # half of this window is from before the cut: wait one decision for its effect
            return self.budget, f"{what} over target {self.target:.2f} but not rising since the last cut: holding"
        self.cut_ratio = ratio
        keep = MIN_CUT if external_only else self.cut_for(ratio)
        limit = f"external_max {self.external_max}" if external_only else f"target {self.target:.2f}"
        return self._lower(keep, f"{what} over {limit}: x{keep:.2f}")

    def _lower(self, keep: float, reason: str) -> tuple[float, str]:
        self.too_much = self.budget if self.too_much is None else min(self.too_much, self.budget)
        self.budget = max(FLOOR, self.budget * keep)
        self.cut_last, self.cuts = True, self.cuts + 1
        return self.budget, reason

    def _raise(self, ratio: float) -> tuple[float, str]:
        """Under target: double until the first cut, then the shrinking step, at most x GROW a decision. The cap
        matters at the low end, where a full step is many times the budget and the lowest setting known to be
        too much is often the floor itself, so the half-way rule does not hold it: the bench's pacer went from
        the floor (0.02) to 0.22 and 0.33 in two decisions and the application read 2.3x its p99 alone."""
        if self.cuts == 0:
            wanted, reason = self.budget * SLOW_START, f"under target, starting: x{SLOW_START:g}"
        else:
            # the closer to the target, the smaller the step: full STEP with no harm, none at the target
            headroom = min(1.0, max(0.0, (self.target - ratio) / (self.target - 1)))
            step = min(max(FLOOR, STEP * self.ceiling * headroom), self.budget * (GROW - 1))
            wanted, reason = self.budget + step, f"under target: +{step:.2f}"
            if self.too_much is not None and self.too_much > self.budget:
                halfway = self.budget + (self.too_much - self.budget) / 2
                if wanted > halfway:
                    wanted = halfway
                    reason = f"under target: half-way to {self.too_much:.2f}, the last setting that was too much"
        self.budget = min(self.ceiling, wanted)
        return self.budget, reason


def work_window_s(budget: float, shards: int, batch_s: float, longest_pause_s: float, decide_s: float = 1.0) -> float:
    """How long the controller waits for a finished batch before it calls the backfill idle ("did not use its
    allowance"): a decision's interval plus one batch cycle at this budget (three batch times, a batch often takes
    longer than aimed, over each shard's share of the time; at most the longest pause). One second was the
    window: at the floor (2% of the ceiling) a shard pauses seconds between batches, most seconds finished none,
    and a budget "not used" is never raised: a run cut to the floor stayed there for good."""
    return decide_s + min(longest_pause_s, 3 * batch_s / shard_duty(budget, shards))


def slower_alone(before: tuple, after: tuple, factor: float = 1.0) -> bool:
    """Whether the application alone is slower at this baseline than at the last one (pairs of figures, best
    first: its tail transaction age, then the canary's trip). Then its own load rose, and a budget that was too
    much under the lighter load is too much still: the controller keeps that limit rather than forgetting it (the
    bench: a probe at the start of the busy phase forgot a limit of 0.09 and the pacer raised to 0.63 in three
    decisions while the application read 2-4x its p99 alone). `factor`: slower by more than that many times."""
    for old, new in zip(before, after):
        if old and new:
            return new > factor * old
    return False


def baseline_jumped(before: tuple, after: tuple) -> bool:
    """Whether the application alone got JUMP times slower from one baseline to the next (the pairs of
    slower_alone). A probe in the seconds the application's own load rises measures the backlog of the change as
    well (the bench: a probe as the busy phase began read 22-48 ms against a settled 12; every reading after it
    was 1.00 while the application felt 2-4x), so such a baseline is confirmed by a second probe soon after."""
    return slower_alone(before, after, JUMP)


def starting_budget(target: float | None, ceiling: float) -> float:
    """The budget a run starts at: the ceiling at full speed, START of it while protecting. Every shard starts
    there, the leader's controller and the others alike (they read the shared row until the leader decides)."""
    return ceiling if target is None else max(FLOOR, START * ceiling)


def shard_duty(budget: float, shards: int) -> float:
    """Each shard's share of the budget, as its own duty cycle (at most 1: always working)."""
    return min(1.0, max(FLOOR, budget / max(1, shards)))


def sleep_after(work_seconds: float, duty: float) -> float:
    """Sleep that makes `work_seconds` the given share of the time."""
    return 0.0 if duty >= 1 else work_seconds * (1 / duty - 1)


def percentile(values: list[float], share: float) -> float | None:
    """The `share` quantile (nearest rank) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def pooled_percentile(windows: Sequence[list[float]], share: float, minimum: int) -> float | None:
    """The `share` quantile over the newest windows: two at least (damping), more until `minimum` values are
    pooled, None if there are never that many."""
    pooled: list[float] = []
    for n, values in enumerate(reversed(windows)):
        pooled += values
        if n >= 1 and len(pooled) >= minimum:
            break
    return percentile(pooled, share) if len(pooled) >= minimum else None
