"""The run's pacing leader: one shard per run (the one that takes the run's advisory lock) runs the
:class:`Controller` in a thread. It samples the signals every SAMPLE_S of the engine's pacing_sql (PostgreSQL: ten
times a second; MySQL: five, InnoDB's information_schema tables change at most ten times a second), decides once a
second (and at once when the application waits on our locks), pauses every shard for a short probe every
`probe_every_s` (and sooner when the signal stays over target: the application's own load has likely changed) to
re-measure the application's baseline, and writes its decision to ``airmigrate.pacing`` (one row per run, read by
the other shards and the console) and ``airmigrate.pacing_log`` (one row per decision, for the charts). When that
shard finishes, another takes the lock over. A crashed leader's session ends, so does its lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from airmigrate import engines
from airmigrate.db import Target, connect
from airmigrate.pacing.controller import (
    FLOOR,
    JUMP,
    NOBODY,
    DutyCycle,
    Reading,
    baseline_jumped,
    percentile,
    pooled_percentile,
    slower_alone,
    work_window_s,
)
from airmigrate.pacing.signals import Canary, Sampler, StatementTotals, default_cpus

log = logging.getLogger(__name__)

DECIDE_S = 1.0        # a decision a second
MAX_SLEEP_S = 10.0    # the longest pause after one batch, whatever the duty cycle
QUIET_LOG_S = 10.0    # an unchanged decision is logged this often
SETTLE_S = 2.0        # a probe waits at most this long for in-flight batches to finish
FIRST_PROBE_S = 2.0   # the first baseline is measured this long after the start (at the start share meanwhile)
STALE_AFTER = 3       # decisions over target in a row before the baseline is measured again...
OFF_AFTER = 2         # ...or reading the application faster than alone (Reading.baseline_off)...
REPROBE_AFTER_S = 5.0  # ...but not sooner than this after the last measurement
TAIL = 0.95           # the quantile of the transactions' ages held against the baseline's (see signals.py)
MIN_AGES = 40         # ages pooled for a tail figure (p95 of fewer is the largest one: one slow sample decides)
POOL_DECISIONS = 5    # ...from the newest decision back, at most this many (a busy application: one or two)
AGE_FLOOR_MS = 0.2    # a baseline below this is taken as this (an idle application: no ratio blow-ups)
CANARY_S = 0.01       # the round-trip canary's period (100 a second: ~0.5% of one core)
TRIP_TAIL = 0.99      # the quantile of its round trips compared (the application's p99 is the harm we bound)
MIN_TRIPS = 150       # round trips pooled for that figure (p99 of fewer is the largest one)
OUT_OF_REACH_AFTER = 30  # decisions in a row over target at the floor before the run says the target is out of reach


class Controller:
    """The leader's thread: signals in, budget out. On `conn`, the leading pacer's own connection when given (idle
    once it leads, and the session holding the leader's lock): a run opens one connection fewer, at its start, where
    six opened at once cost the application 1.37x its p99 over two seconds (bench/README.md "Session 16"; the
    difference one fewer makes is under that bench's noise)."""

    def __init__(self, target: Target, run_id: int, throttle, ratio: float, shards: int, conn=None):
        self.target, self.run_id, self.throttle, self.shared_conn = target, run_id, throttle, conn
        self.duty = DutyCycle(ratio, ceiling=float(shards), external_max=throttle.external_max)
        self.probing, self.stopped = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"airmigrate-pacer-{run_id}", daemon=True)
        self.baseline_ms: float | None = None       # per application statement (pg_stat_statements)
        self.baseline_tx_ms: float | None = None    # the TAIL age of its transactions in flight
        self.window: deque[StatementTotals] = deque(maxlen=3)
        self.ages: deque[list[float]] = deque(maxlen=POOL_DECISIONS)  # the last decisions' samples, newest last
        self.trips: deque[list[float]] = deque(maxlen=POOL_DECISIONS)  # the canary's round trips, likewise
        self.baseline_trip_ms: float | None = None  # their TRIP_TAIL while every shard pauses
        self.canary: Canary | None = None
        self.app_seen = False      # the last probe saw the application (a transaction in flight or a statement)
        self.appeared = False      # ...and since one that saw none, it showed up: measured alone at once
        self.seen_between = False  # a decision since the last probe saw the application (ages or statements)
        self.seen_before = False   # ...and before it: a probe that misses a light application is not "nobody"
        self.confirming_from: tuple | None = None  # the baselines before a jump, while a second probe confirms it
        self.probed_at = 0.0
        self.last_logged, self.last_reason, self.high_batch = 0.0, "", 0
        self.rows_at = time.monotonic()                # when a batch last finished (seen by a decision)
        self.full_since, self.hinted, self.over_streak, self.held = None, False, 0, None
        self.off_streak, self.recheck_off, self.rechecked = 0, False, False
        self.warned_out_of_reach, self.baseline_off = False, False

    def start(self) -> None:
        self.conn = self.shared_conn or own_connection(self.target)
        self.queries = engines.of(self.conn).pacing_sql()
        throttle = self.throttle
        cpus = throttle.cpus or default_cpus(self.conn, self.target.host)
        self.sampler = Sampler(self.conn, cpus, throttle.cpu_pressure, throttle.external_query, throttle.external_url)
        log.info("pacing: protecting the application at %.2fx its latency (its transactions' age, lock waits%s); "
                 "%d CPUs for the run queue", self.duty.target, f", {self.queries.STATEMENTS_NAME}" if
                 self.sampler.statements is not None else f"; no {self.queries.STATEMENTS_NAME}", cpus)
        self.canary = Canary(lambda: own_connection(self.target, "airmigrate-canary"), CANARY_S).start()
        self.thread.start()

    def stop(self) -> bool:
        """Stop the thread; False when it did not end within 30 s (its connection is then left open for it)."""
        self.stopped.set()
        if self.canary is not None:
            self.canary.stop()
        if self.thread.is_alive():
            self.thread.join(timeout=30)
        stopped = not self.thread.is_alive()
        if self.conn is not self.shared_conn and stopped:
            self.conn.close()
        return stopped

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # the pacer failing must not stop the backfill: it falls back to full speed
            log.warning("pacing stopped (%s): the backfill goes on at the last budget with its hard stops",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def _loop(self) -> None:
        every = self.throttle.probe_every_s
        # the first baseline after FIRST_PROBE_S, at the start share until then: a pause before the first batch
        # would stop a short run (a window or a stop budget ending within that second) before it did anything,
        # and growing without a baseline would run unprotected until the first probe
        next_probe = time.monotonic() + (every if self._go_on_from_nobody() else FIRST_PROBE_S)
        next_decision, last_halving = time.monotonic() + DECIDE_S, 0.0
        while not self.stopped.is_set():
            now = time.monotonic()
            if now >= next_probe:
                self._probe()
                # a baseline that jumped is measured again soon: taken as the application's load changed, it may
                # hold a backlog that the settled load will not have
                next_probe = time.monotonic() + (REPROBE_AFTER_S if self.confirming_from else every)
                next_decision = time.monotonic() + DECIDE_S
                continue
            blocked = self.sampler.sample()
            if now >= next_decision or (blocked and now - last_halving >= 0.5):
                if blocked:
                    last_halving = now
                self._decide()
                next_decision = now + DECIDE_S
                if self._stale_baseline(self.held, self.baseline_off):
                    next_probe = time.monotonic()  # the application's own load changed: measure it again now
            self.stopped.wait(self.queries.SAMPLE_S)

    def _go_on_from_nobody(self) -> bool:
        """Leaders follow one another on a database: a run's shards lead in turn where they run one after another
        (`airmigrate run`'s dag.test(), a pool of one slot, a resumed run), and `airmigrate migrate` runs one
        migration after another. Each new leader began at the start share with no baseline: FIRST_PROBE_S at a
        twentieth of the ceiling, then a probe that found, again, nobody to protect (the CLI's migrate tests spent
        an eighth of their time so). When the newest decision of any leader on this database, under a probe period
        ago, was that nobody is there (the application is the database's, not a run's), this one goes on from it:
        at the ceiling, that probe taken as its own (an application showing up is then met as after any such
        probe: _application_showed_up). Not when this run paces by a signal of the user's (_paced_by_users_signal)."""
        if self._paced_by_users_signal():
            return False
        row = self.conn.execute(self.queries.LAST_DECISION).fetchone()
        if not row or row[0] != NOBODY or row[1] is None or float(row[1]) > self.throttle.probe_every_s:
            return False
        self.duty.budget, self.probed_at = self.duty.ceiling, max(1e-3, time.monotonic() - float(row[1]))
        log.info("pacing: the last leader on this database saw no application to protect %.1f s ago: going on at full "
                 "speed until this leader's first probe", float(row[1]))
        return True

    def _probe(self) -> None:
        """Pause every shard; measure the application alone for probe_seconds; that is the new baseline."""
        seconds = self.throttle.probe_seconds
        self.rechecked, self.recheck_off, self.appeared = self.recheck_off, False, False
        self.seen_before, self.seen_between = self.seen_between, False
        self.probing.set()
        try:
            self.conn.execute(self.queries.START_PROBE, (seconds + SETTLE_S, self.run_id))
            deadline = time.monotonic() + SETTLE_S
            while self._our_active_backends() and time.monotonic() < deadline and not self.stopped.is_set():
                time.sleep(0.05)
            self.sampler.collect()
            self.canary.take()
            before = self.sampler.statement_totals()
            ages = self._sample_alone(seconds)
            after = self.sampler.statement_totals()
            trips = self.canary.take()
        finally:
            self.probing.clear()
            self.conn.execute("UPDATE airmigrate.pacing SET probe_until = NULL WHERE run_id = %s", (self.run_id,))
        last = self.confirming_from or (self.baseline_tx_ms, self.baseline_trip_ms)
        self.app_seen = bool(ages) or bool(before and after and after.calls > before.calls)
        baseline = after.latency_since(before) if before and after else None
        tail = percentile(ages, TAIL) if len(ages) >= MIN_AGES else None
        if baseline or tail:
            self.baseline_ms = baseline or self.baseline_ms
            self.baseline_tx_ms = max(AGE_FLOOR_MS, tail) if tail is not None else self.baseline_tx_ms
        trip_ms = percentile(trips, TRIP_TAIL) if len(trips) >= MIN_AGES else None
        new = (self.baseline_tx_ms, trip_ms)
        self.confirming_from = last if self.confirming_from is None and baseline_jumped(last, new) else None
        if trip_ms is not None:
            self.baseline_trip_ms = trip_ms
            if not slower_alone(last, new):
                self.duty.forget_limit()
            self.conn.execute("UPDATE airmigrate.pacing SET baseline_ms = %s WHERE run_id = %s",
                              (self.baseline_tx_ms or self.baseline_ms, self.run_id))
        log.info("pacing: baseline %s; %s; round trip p%.0f %s", f"{baseline:.3f} ms per application statement"
                 if baseline else "no statement figure", f"p{TAIL * 100:.0f} age of its transactions in flight "
                 f"{tail:.2f} ms ({len(ages)} seen)" if tail is not None else
                 "too few transactions seen: keeping the last figure", TRIP_TAIL * 100,
                 "n/a" if self.baseline_trip_ms is None else f"{self.baseline_trip_ms:.3f} ms ({len(trips)} timed)")
        if self.confirming_from:
            log.info("pacing: the application alone is over %.1fx slower than at the last baseline: measuring it "
                     "again in %.0f s (its load is changing)", JUMP, REPROBE_AFTER_S)
        self.probed_at = time.monotonic()
        self.window.clear()
        self.ages.clear()
        self.trips.clear()
        self.sampler.collect()  # drop samples taken before the probe

    def _transaction_ms(self) -> float | None:
        """The TAIL age of the application's transactions over the newest decisions' samples: two decisions at
        least (damping), more until MIN_AGES ages are pooled (a small application), None if never."""
        return pooled_percentile(self.ages, TAIL, MIN_AGES)

    def _round_trip_ratio(self) -> float | None:
        """What the canary's extra wait does to the application's transactions: 1 + (its TRIP_TAIL round trip
        now - while we paused) / the application's tail transaction age while we paused. The wait is what every
        committing client sees alike (a CPU, the server's shared structures, the log flush); as a ratio of a
        sub-millisecond trip it would read tens of times, so it is added to the application's own time instead.
        An application with too few transactions in flight for a tail age (a few hundred short ones a second)
        still gets a figure: the canary's own trip while we paused stands in for its transactions' time (both are
        mostly a commit's wait).
        A probe that saw no application at all (no transaction in flight, no statement) gives no such stand-in:
        the canary's noise over its own sub-millisecond trip would read as harm to nobody (a paced rollback with no
        application was cut to the floor by 'round trips 1.3-1.5')."""
        now = pooled_percentile(self.trips, TRIP_TAIL, MIN_TRIPS)
        scale = self.baseline_tx_ms or (self.baseline_trip_ms if self.app_seen else None)
        if now is None or not self.baseline_trip_ms or not scale:
            return None
        return 1 + max(0.0, now - self.baseline_trip_ms) / scale

    def _sample_alone(self, seconds: float) -> list[float]:
        """The ages of the application's transactions while every shard pauses: `seconds`, longer (up to four
        times) until MIN_AGES were seen, so a quiet application still gets a usable baseline (not when it showed
        almost none: then the statements' mean and the lock waits pace). Sampled every PROBE_SAMPLE_S (PostgreSQL:
        four times as often as while working, so the pause stays short; MySQL: every 0.12 s, its information_schema
        tables change no faster)."""
        ages, started = [], time.monotonic()
        while not self.stopped.is_set():
            elapsed = time.monotonic() - started
            if elapsed >= 4 * seconds or (elapsed >= seconds and (len(ages) >= MIN_AGES or len(ages) < MIN_AGES / 4)):
                break  # enough ages, or so few that waiting longer would not give enough: the pause stays short
            self.sampler.sample()
            ages += self.sampler.collect()["ages"]
            self.stopped.wait(self.queries.PROBE_SAMPLE_S)
        return ages

    def _our_active_backends(self) -> int:
        return self.conn.execute(self.queries.OUR_ACTIVE_SESSIONS).fetchone()[0]

    def _decide(self) -> None:
        figures = self.sampler.collect()
        latency_ms = self._latency_ms()
        self.ages.append(figures["ages"])
        self.trips.append(self.canary.take())
        tx_ms = self._transaction_ms()
        rows_per_s = self._rows_per_s()
        seen = bool(figures["ages"]) or latency_ms is not None
        nobody = self._nobody_to_protect()
        self.seen_between = self.seen_between or seen
        if nobody and seen:
            self._application_showed_up()
            nobody = False
        target = self.conn.execute("SELECT target_ratio FROM airmigrate.pacing WHERE run_id = %s",
                                   (self.run_id,)).fetchone()
        if target and target[0] is not None:
            self.duty.target = float(target[0])  # changed while running (the console)
        reading = Reading(
            transaction_ratio=tx_ms / self.baseline_tx_ms if tx_ms is not None and self.baseline_tx_ms else None,
            latency_ratio=latency_ms / self.baseline_ms if latency_ms is not None and self.baseline_ms else None,
            round_trip_ratio=None if nobody else self._round_trip_ratio(),
            blocked=figures["blocked"], runnable_ratio=figures["runnable_ratio"],
            cpu_pressure_ratio=figures["cpu_pressure_ratio"], external=figures["external"],
            working=self._worked(rows_per_s), rechecked=self.rechecked, nobody=nobody)
        if not reading.blocked and self.probed_at == 0.0:
            budget, reason = self.duty.budget, "holding at the start share: no baseline yet"
        elif not reading.blocked and self.appeared:
            budget, reason = self.duty.budget, "holding at the start share: an application showed up, measuring it"
        elif not reading.impacts() and (self.baseline_tx_ms or self.baseline_ms or self.baseline_trip_ms) and \
                not reading.blocked and not nobody and \
                len(self.ages) < 2:
            budget, reason = self.duty.budget, "holding: measuring the application's latency"  # just after a probe
        else:
            budget, reason = self.duty.decide(reading)
        held = self.held = max(reading.impacts().values(), default=None)  # the figure held against the target
        self.baseline_off = reading.baseline_off
        self.conn.execute(self.queries.SET_BUDGET, (budget, reason, self.run_id))
        self.conn.execute(
            "INSERT INTO airmigrate.pacing_log (run_id, budget, target_ratio, latency_ratio, latency_ms, baseline_ms, "
            "blocked, runnable, cpu_pressure, external, rows_per_s, decision) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (self.run_id, budget, self.duty.target, held, tx_ms, self.baseline_tx_ms,
             reading.blocked, figures["runnable"], reading.cpu_pressure_ratio, reading.external, rows_per_s, reason))
        self._hint_more_shards(reason)
        self._warn_out_of_reach(held)
        if reason != self.last_reason or time.monotonic() - self.last_logged >= QUIET_LOG_S:
            log.info("pacing: duty %.2f | app transactions %s | round trips %s | app statements %s | blocked by us %d "
                     "| run queue %s | %s rows/s | %s", budget, "n/a" if reading.transaction_ratio is None else
                     f"{reading.transaction_ratio:.2f}x ({tx_ms:.2f} ms vs {self.baseline_tx_ms:.2f} ms)",
                     "n/a" if reading.round_trip_ratio is None else f"{reading.round_trip_ratio:.2f}x",
                     "n/a" if reading.latency_ratio is None else
                     f"{reading.latency_ratio:.2f}x ({latency_ms:.3f} ms vs {self.baseline_ms:.3f} ms)",
                     reading.blocked, "n/a" if figures["runnable"] is None else f"{figures['runnable']:.1f}",
                     f"{rows_per_s:,.0f}", reason)
            self.last_logged, self.last_reason = time.monotonic(), reason

    def _stale_baseline(self, held: float | None, baseline_off: bool = False) -> bool:
        """Over target for STALE_AFTER decisions running although the pacer cut in between: more likely the
        application's own load rose (a busy phase) than our smaller share hurting it more, so the baseline is
        re-measured (a pause of probe_seconds) rather than trusted. Likewise the application reading faster with
        us than alone for OFF_AFTER decisions (the baseline was taken at a slow moment, or its load fell): the
        controller holds meanwhile, as growing against it runs unprotected; the figure measured again is trusted
        (Reading.rechecked). And an application showing up after a probe that saw none (_application_showed_up).
        At most every REPROBE_AFTER_S."""
        over = held is not None and self.duty.target is not None and held > self.duty.target
        self.over_streak = self.over_streak + 1 if over else 0
        self.off_streak = self.off_streak + 1 if baseline_off else 0
        stale = self.over_streak >= STALE_AFTER or self.off_streak >= OFF_AFTER or self.appeared
        if stale and time.monotonic() - self.probed_at >= REPROBE_AFTER_S:
            self.recheck_off = self.off_streak >= OFF_AFTER
            self.over_streak = self.off_streak = 0
            return True
        return False

    def _nobody_to_protect(self) -> bool:
        """No application to protect: the last probe saw none, no decision since the probe before it did (a probe
        of a second can miss a light application: 20 transactions a second of 1 ms escape 40 samples nearly every
        other time, and one such miss must not put the run at full speed), and no signal of the user's is set
        (an external query or URL, CPU pressure: the user paces by those)."""
        # `appeared` needs no test of its own: it is set only with seen_between, and both are cleared by a probe
        return self.probed_at != 0.0 and not self.app_seen and not self.seen_before and not self.seen_between and \
            not self._paced_by_users_signal()

    def _paced_by_users_signal(self) -> bool:
        """The spec sets a signal of the user's (an external query or URL, CPU pressure): the user paces by it, so
        no absence of an application seen by ours puts the run at full speed."""
        throttle = self.throttle
        return bool(throttle.external_query or throttle.external_url or throttle.cpu_pressure)

    def _application_showed_up(self) -> None:
        """A transaction in flight or statements counted after a probe that saw no application: the run went to
        its ceiling with nothing to protect, and now something is there. Back to the start share and slow start,
        as at a run's start, and measured alone as soon as REPROBE_AFTER_S allows (Controller._stale_baseline)."""
        self.appeared = True
        self.duty.restart()
        log.info("pacing: an application showed up (transactions or statements where the last probe saw none): "
                 "back to the start share, measuring it alone")

    def _hint_more_shards(self, reason: str) -> None:
        """A shard is only worth adding when the duty cycle is at its ceiling and the application is still
        under target: say so once, after half a minute of it."""
        if not reason.startswith("at full allowance"):
            self.full_since = None
            return
        self.full_since = self.full_since or time.monotonic()
        if not self.hinted and time.monotonic() - self.full_since >= 30:
            log.info("pacing: at full allowance for 30 s with the application under target: another shard (the "
                     "`shards` param) would go faster")
            self.hinted = True

    def _warn_out_of_reach(self, held: float | None) -> None:
        """Over target for half a minute with the budget at its floor: no pace this backfill can move at holds the
        asked ratio here (bench/README: on two cores the gentlest loop that moves at all reads 1.38x the
        application's p99 alone). The backfill goes on at the floor; the user is told once what would hold it."""
        if self.warned_out_of_reach or self.duty.pinned < OUT_OF_REACH_AFTER or held is None:
            return
        log.warning("pacing: the application reads %.2fx its latency alone, over the asked app_latency_ratio %.2f, "
                    "with the backfill at its floor (%.0f%% of each shard's time) for %d s: the target is out of reach "
                    "at any pace this backfill moves at. It goes on at the floor (it never stops by itself); to hold "
                    "the target, give it an off-peak `window`, ask a higher app_latency_ratio, or pause it from the "
                    "console", held, self.duty.target, FLOOR * 100, OUT_OF_REACH_AFTER * DECIDE_S)
        self.warned_out_of_reach = True

    def _latency_ms(self) -> float | None:
        now = self.sampler.statement_totals()
        if now is None:
            return None
        self.window.append(now)
        return now.latency_since(self.window[0]) if len(self.window) > 1 else None

    def _worked(self, rows_per_s: float) -> bool:
        """A batch finished within the work window at the current budget (controller.work_window_s)."""
        now = time.monotonic()
        if rows_per_s > 0:
            self.rows_at = now
        batch_s = max(0.1, self.throttle.lock_hold_s)  # a batch often takes longer than the lock hold it aims at
        return now - self.rows_at < work_window_s(self.duty.budget, int(self.duty.ceiling), batch_s, MAX_SLEEP_S,
                                                  DECIDE_S)

    def _rows_per_s(self) -> float:
        """Rows the run's batches finished in the last second (every shard's), from the batch table; the
        lookup starts near the newest batch so it stays cheap on a run of millions of batches."""
        high, rows = self.conn.execute(self.queries.ROWS_LAST_SECOND,
                                       (self.run_id, max(0, self.high_batch - 256))).fetchone()
        self.high_batch = high or self.high_batch
        return float(rows)


def own_connection(target: Target, application_name: str | None = None):
    """An autocommit connection the pacer's signals never count as the application's (PostgreSQL: its
    application_name, 'airmigrate...'; MySQL: a named lock of its session, see its pacing_sql)."""
    conn = connect(target, autocommit=True, application_name=application_name)
    engines.of(conn).pacing_sql().mark_own_session(conn, application_name or "airmigrate pacer")
    return conn
