"""What a shard asks between batches: may I go on, and how long do I sleep first? Each shard's :class:`Pacer`
reads the run's shared budget (``airmigrate.pacing``); the one that takes the run's advisory lock also runs the
run's :class:`~airmigrate.pacing.leader.Controller` (leader.py), and any shard takes the lead over when the leader
is gone.
"""

from __future__ import annotations

import logging
import time

from airmigrate import engines
from airmigrate.db import Target
from airmigrate.pacing.controller import shard_duty, sleep_after, starting_budget
from airmigrate.pacing.leader import MAX_SLEEP_S, Controller, own_connection
from airmigrate.spec import Throttle

log = logging.getLogger(__name__)

READ_EVERY_S = 1.0    # a follower shard re-reads the shared budget this often
LEAD_AGAIN_AFTER_S = 10.0  # a pacer whose leader stopped waits this long before it leads again (a failing leader
                           # would otherwise start over every second; another shard may lead meanwhile)

UNSET = object()


def paced(throttle, app_latency_ratio=UNSET) -> tuple[Throttle | None, float | None]:
    """(throttle, the target ratio or None at full speed) from the spec's throttle and a run's override."""
    if throttle is None and app_latency_ratio not in (UNSET, None):
        throttle = Throttle()  # `throttle: null` in the spec, a ratio asked for this run
    ratio = getattr(throttle, "app_latency_ratio", None) if app_latency_ratio is UNSET else app_latency_ratio
    return throttle, ratio if throttle is not None else None


def open_shared_row(conn, run_id: int, throttle, shards: int, app_latency_ratio=UNSET) -> None:
    """The run's shared row, written before any shard starts (the backfill's plan) when the run paces: the
    console takes a new target from the moment it shows the backfill. Only the shards' pacers wrote it before,
    and a target set between the plan and the first shard's start was refused as "the pacer is not running".
    A shard's pacer writes it again on entry; a target set from the console meanwhile is kept (START_RUN)."""
    _, ratio = paced(throttle, app_latency_ratio)
    if ratio is not None:
        conn.execute(engines.of(conn).pacing_sql().START_RUN,
                     (run_id, starting_budget(ratio, float(max(1, shards))), ratio))


class Pacer:
    """Per shard. `with Pacer(...) as pacer:` around the batch loop; `pacer.before_batch()` waits out a
    probe, `pacer.after_batch(seconds)` sleeps what the duty cycle asks."""

    def __init__(self, target: Target, run_id: int, throttle, shards: int = 1, app_latency_ratio=UNSET,
                 session=None):
        self.throttle, self.ratio = paced(throttle, app_latency_ratio)
        self.target, self.run_id, self.shards = target, run_id, max(1, shards)
        self.enabled = self.ratio is not None
        self.conn, self.session = None, session  # `session`: the shard's connection (marked ours on entry)
        self.leader: Controller | None = None
        # every shard starts at the start share, not only the leader: a follower reads the shared row at most once
        # a second, and a row written with the full ceiling had it run flat out until then (the bench: the first
        # two seconds of a protected run read 2.5-7x the application's p99, with one shard batching non-stop)
        self.budget = starting_budget(self.ratio, float(self.shards))
        self.probe_until, self.read_at, self.lead_from = 0.0, 0.0, 0.0

    def batch_seconds(self, asked: float) -> float:
        """The batches' target duration: while pacing, at most the throttle's lock_hold_s. The duty cycle
        spreads the work over time, but a batch holds its row locks for its whole duration whatever the
        pause after it, and an application transaction that touches one of those rows waits for the batch's
        end: with uniform access, the share of its transactions that wait is the share of the table locked
        at once (shards x batch rows / rows), and each waits up to a batch. On the bench (3M rows, two
        shards), 0.1 s batches locked ~1.5% of the table and put a batch's duration into the application's
        p99 whatever the duty cycle; 20 ms batches cost ~10% in per-batch overhead."""
        if not self.enabled:
            return asked
        return min(asked, getattr(self.throttle, "lock_hold_s", asked))

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> "Pacer":
        if not self.enabled:
            return self
        self.conn = own_connection(self.target)
        self.queries = engines.of(self.conn).pacing_sql()
        if self.session is not None:  # the shard's: its batches are ours, never the application's
            self.queries.mark_own_session(self.session, "airmigrate shard")
            self.session.commit()
        self.conn.execute(self.queries.START_RUN, (self.run_id, self.budget, self.ratio))
        self._try_to_lead()
        return self

    def __exit__(self, *exc) -> None:
        stopped = self.leader.stop() if self.leader else True
        if self.conn is not None and stopped:  # a leader's thread still running may still use it
            self.conn.close()

    def _try_to_lead(self) -> None:
        if self.leader is None and time.monotonic() >= self.lead_from and \
                self.conn.execute(self.queries.TRY_LEAD, (self.run_id,)).fetchone()[0]:
            self.leader = Controller(self.target, self.run_id, self.throttle, self.ratio, self.shards, self.conn)
            self.leader.start()

    # -- between batches ---------------------------------------------------------------------------------

    def before_batch(self, should_stop=lambda: False) -> None:
        """Wait while the leader measures the application without us."""
        if not self.enabled:
            return
        self._refresh()
        while self._probing() and not should_stop():
            time.sleep(0.05)
            self._refresh(force=self.leader is None)

    def after_batch(self, work_seconds: float, should_stop=lambda: False) -> float:
        """Sleep so that this shard works its share of the budget; returns the seconds slept."""
        if not self.enabled:
            return 0.0
        self._refresh()
        slept, wanted = 0.0, min(MAX_SLEEP_S, sleep_after(work_seconds, shard_duty(self.budget, self.shards)))
        while slept < wanted and not should_stop():
            step = min(0.1, wanted - slept)
            time.sleep(step)
            slept += step
            if self._refresh():  # a higher budget cuts the pause short, a lower one does not lengthen it
                wanted = min(wanted, sleep_after(work_seconds, shard_duty(self.budget, self.shards)))
        return slept

    def _probing(self) -> bool:
        if self.leader is not None:
            return self.leader.probing.is_set()
        return time.time() < self.probe_until

    def _refresh(self, force: bool = False) -> bool:
        """The shared budget: from the leader in this process, else from the row (at most once a second)."""
        if self.leader is not None and self.leader.thread.is_alive():
            self.budget = self.leader.duty.budget
            return True
        if self.leader is not None:
            self._drop_stopped_leader()
            force = True
        if not force and time.monotonic() - self.read_at < READ_EVERY_S:
            return False
        self.read_at = time.monotonic()
        row = self.conn.execute(self.queries.SHARED_BUDGET, (self.run_id,)).fetchone()
        if row:
            self.budget, self.probe_until = float(row[0]), float(row[1] or 0)
        self._try_to_lead()  # the leader finished: take over
        return True

    def _drop_stopped_leader(self) -> None:
        """The leader's thread ended (it logged why: its connection killed, the server restarted, a failure of its
        own). Its connection is this pacer's and held the leader's lock: a new one, so the lock is free for any
        shard and this one follows the shared row (kept at the dead leader's last budget, it would not see the new
        leader's probes or cuts)."""
        self.leader.stop()
        self.leader, self.lead_from = None, time.monotonic() + LEAD_AGAIN_AFTER_S
        try:
            self.conn.close()
        except Exception as exc:  # already broken: nothing to close
            log.debug("closing the old leader's connection: %s", exc)
        self.conn = own_connection(self.target)
