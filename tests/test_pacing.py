"""Pacing: the backfill slows down by its measured effect on the application.

The duty-cycle rules and the batch sizer are pure logic and are tested as such. The closed loop runs on a
real PostgreSQL with pg_stat_statements preloaded (a scratch cluster: the shared server is never
reconfigured) against an application whose statements are 10x slower whenever a backfill batch is running,
so full speed costs it several times its latency and only a lower duty cycle brings it back: the pacer
must find that setting by itself and hold the application near the asked 1.5x. The lock-wait rule and the
fallback without pg_stat_statements run on the shared server.
"""

from __future__ import annotations

import logging
import re
import statistics
import threading
import time
from collections import deque

import psycopg
import pytest
import yaml
from psycopg import sql
from polling import wait_for
from scratch import scratch_cluster

from airmigrate.db import connect
from airmigrate.engines.postgres import pacing_sql
from airmigrate.pacing import controller
from airmigrate.pacing import pacer as pacer_module
from airmigrate.pacing.controller import (
    FLOOR,
    DutyCycle,
    Reading,
    percentile,
    pooled_percentile,
    shard_duty,
    sleep_after,
)
from airmigrate.pacing.leader import MIN_TRIPS, OFF_AFTER, STALE_AFTER, Controller
from airmigrate.pacing.pacer import Pacer
from airmigrate.pacing.signals import Canary
from airmigrate.spec import Throttle, load_migration
from airmigrate.stages import backfill, backup, preflight, schema_change
from airmigrate.stages.backfill.tuning import BatchSizer

# -- the rules (pure: no server, part of `make check`) ---------------------------------------------------


def test_a_protected_run_starts_at_a_twentieth_of_the_ceiling_and_doubles_until_the_first_cut():
    duty = DutyCycle(target=1.5, ceiling=2.0)
    assert duty.budget == pytest.approx(0.1), "never start by hitting the application (a tenth of one worker)"
    assert [duty.decide(Reading(transaction_ratio=1.0))[0] for _ in range(6)] == pytest.approx(
        [0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert duty.decide(Reading(transaction_ratio=1.0))[1] == "at full allowance, under target"


def test_over_target_cuts_in_proportion_to_the_excess_harm_and_remembers_the_setting_that_was_too_much():
    duty = DutyCycle(target=1.25, budget=1.0)
    budget, reason = duty.decide(Reading(transaction_ratio=1.3))        # harm 0.3 against 0.25 allowed
    assert budget == pytest.approx(0.25 / 0.3) and "app transactions 1.30 over target 1.25" in reason
    assert duty.too_much == pytest.approx(1.0)
    duty = DutyCycle(target=1.25, budget=1.0)
    assert duty.decide(Reading(transaction_ratio=9.0))[0] == pytest.approx(0.5), "at most halved at once"


def test_damped_the_decision_after_a_cut_neither_raises_nor_cuts_again_for_a_falling_signal():
    """Its window still holds samples from before the cut: acting on them again would overshoot."""
    duty = DutyCycle(target=1.5, budget=1.0)
    assert duty.decide(Reading(transaction_ratio=3.0))[0] == pytest.approx(0.5)
    budget, reason = duty.decide(Reading(transaction_ratio=2.0))         # still over, but falling
    assert budget == pytest.approx(0.5) and "not rising since the last cut: holding" in reason
    assert duty.decide(Reading(transaction_ratio=2.0))[0] == pytest.approx(0.25), "still over a second later: cut"
    budget, reason = duty.decide(Reading(transaction_ratio=1.0))         # under target just after a cut
    assert budget == pytest.approx(0.25) and reason.startswith("holding: the last cut")
    duty = DutyCycle(target=1.25, budget=1.0)
    duty.decide(Reading(transaction_ratio=1.53))
    assert duty.decide(Reading(transaction_ratio=1.55))[1].endswith("holding"), "noise is not rising (the bench's "\
                                                                                  "double cut, issue 20)"
    duty = DutyCycle(target=1.5, budget=1.0)
    duty.decide(Reading(transaction_ratio=2.0))
    assert duty.decide(Reading(transaction_ratio=4.0))[0] < 0.5, "a rising signal is cut again at once"


def test_under_target_steps_shrink_near_the_target_and_stop_half_way_to_the_last_setting_that_was_too_much():
    duty = DutyCycle(target=1.5, budget=1.0)
    duty.decide(Reading(transaction_ratio=2.0))                          # 1.0 was too much -> 0.5
    duty.decide(Reading(transaction_ratio=1.0))                          # holding after the cut
    budget, reason = duty.decide(Reading(transaction_ratio=1.0))        # no harm: a full step, +0.1
    assert budget == pytest.approx(0.6) and reason == "under target: +0.10"
    budget, _ = duty.decide(Reading(transaction_ratio=1.4))             # near the target: a fifth of the step
    assert budget == pytest.approx(0.62)
    duty.budget = 0.95
    budget, reason = duty.decide(Reading(transaction_ratio=1.0))
    assert budget == pytest.approx(0.975) and "half-way to 1.00" in reason
    duty.forget_limit()                                                  # a new baseline: the load changed
    assert duty.decide(Reading(transaction_ratio=1.0))[0] == pytest.approx(1.0)


def test_from_the_floor_a_raise_is_at_most_half_the_budget_again():
    """The lowest setting known to be too much was the floor itself, so the half-way rule held nothing and a full
    step took the bench's pacer from 0.02 to 0.22 (the application then read 2.3x its p99 alone)."""
    duty = DutyCycle(target=1.25, ceiling=2.0, budget=0.04)
    for _ in range(3):                                                   # cut to the floor, hold, cut there
        duty.decide(Reading(transaction_ratio=2.0))
    assert duty.budget == pytest.approx(FLOOR) and duty.too_much == pytest.approx(FLOOR)
    duty.decide(Reading(transaction_ratio=1.0))                          # holding after the cut
    raised = [duty.decide(Reading(transaction_ratio=1.0))[0] for _ in range(4)]
    assert raised == pytest.approx([0.03, 0.045, 0.0675, 0.10125]), "x1.5 a decision, not +0.2"
    duty = DutyCycle(target=1.25, ceiling=2.0, budget=1.0, cuts=1)
    assert duty.decide(Reading(transaction_ratio=1.0))[0] == pytest.approx(1.2), "high up, the full step"


def test_an_application_backend_waiting_on_our_locks_halves_at_once_whatever_the_latency():
    duty = DutyCycle(target=1.25, budget=0.8)
    budget, reason = duty.decide(Reading(transaction_ratio=1.0, blocked=2))
    assert budget == pytest.approx(0.4) and "2 application backend(s) waiting on our locks" in reason


def test_a_new_baseline_forgets_the_limit_only_when_the_application_alone_is_not_slower():
    """Pacer._probe keeps DutyCycle.too_much when slower_alone says the application's own load rose."""
    assert controller.slower_alone((2.0, 1.0), (3.5, 1.0)), "its own load rose: the knee still holds"
    assert not controller.slower_alone((2.0, 1.0), (1.5, 1.0)), "lighter: the old knee no longer applies"
    assert controller.slower_alone((None, 1.0), (2.0, 1.4)), "no tail age: the canary's trip decides"
    assert not controller.slower_alone((None, None), (2.0, 1.0)), "the first baseline forgets nothing"


def test_a_baseline_that_jumped_is_confirmed_by_a_second_probe_soon_after():
    """A probe while the application's own load rises measures the change's backlog too (the bench: 22-48 ms
    against a settled 12): Controller._loop probes again after REPROBE_AFTER_S instead of probe_every_s."""
    assert controller.baseline_jumped((2.0, 1.0), (3.5, 1.0)), "1.75x its tail age alone: measure again"
    assert not controller.baseline_jumped((2.0, 1.0), (2.9, 9.0)), "the tail age decides when both have it"
    assert controller.baseline_jumped((None, 1.0), (None, 1.6)), "no tail age: the canary's trip decides"
    assert not controller.baseline_jumped((None, None), (5.0, 1.0)), "the first baseline has nothing to jump from"


def test_an_application_faster_with_us_than_alone_holds_the_budget_until_its_baseline_is_measured_again():
    """A first baseline taken at a slow moment read the application at 0.5x with the backfill running: slow
    start doubled to the ceiling and the busy phase read 26x. Now that reading holds; a baseline measured again
    for that reason is trusted (an application really faster with us is not held back for good)."""
    duty = DutyCycle(target=1.5, ceiling=2.0)
    budget, reason = duty.decide(Reading(transaction_ratio=0.5))
    assert budget == pytest.approx(0.1) and "faster than alone: the baseline is off" in reason
    assert duty.decide(Reading(transaction_ratio=0.5, round_trip_ratio=2.0))[0] < 0.1, "harm elsewhere still cuts"
    trusted = Reading(transaction_ratio=0.5, rechecked=True)
    assert duty.decide(trusted)[1] == "holding: the last cut is not in the signal yet"
    assert duty.decide(trusted)[0] == pytest.approx(0.075), "measured again: trusted, it grows"
    assert Reading(transaction_ratio=0.6).baseline_off and not Reading(transaction_ratio=0.7).baseline_off


def test_with_no_application_to_protect_the_ceiling_and_one_showing_up_starts_over():
    """A probe that saw no application (a test database, a quiet night window): nothing to protect, so the
    ceiling at once instead of slow start's five seconds from a twentieth; an application showing up later puts
    the run back to the start share and slow start, the knee forgotten (Controller._application_showed_up)."""
    duty = DutyCycle(target=1.25, ceiling=2.0)
    assert duty.decide(Reading(nobody=True)) == (2.0, "full speed: the last probe saw no application to protect")
    assert duty.decide(Reading(nobody=True, cpu_pressure_ratio=1.6))[0] < 2.0, "a signal over target still cuts"
    duty.restart()
    assert (duty.budget, duty.cuts, duty.too_much) == (pytest.approx(0.1), 0, None)
    assert duty.decide(Reading(transaction_ratio=1.0))[1] == "under target, starting: x2"


def test_one_probe_that_misses_a_light_application_does_not_make_it_nobody():
    """A probe of a second can miss an application of short, sparse transactions: "nobody to protect" needs the
    probe to see none and no decision since the probe before it to have seen one; a signal of the user's (an
    external query, CPU pressure) is never overruled by it."""
    paced = Controller(None, 1, Throttle(), 1.25, 1)
    paced.probed_at = 1.0
    assert paced._nobody_to_protect(), "a probe that saw none, and none seen before it"
    paced.seen_before = True
    assert not paced._nobody_to_protect(), "seen between the last two probes: this probe missed it"
    paced.seen_before, paced.seen_between = False, True
    assert not paced._nobody_to_protect(), "seen since the probe"
    paced.seen_between = False
    assert not Controller(None, 1, Throttle(external_query="SELECT 1", external_max=5), 1.25, 1)._nobody_to_protect()
    assert not Controller(None, 1, Throttle(cpu_pressure=True), 1.25, 1)._nobody_to_protect()


def test_the_canarys_own_trip_stands_in_for_the_applications_time_only_when_a_probe_saw_an_application():
    """Without a tail age (too few transactions in flight) the canary's paused trip is the scale, but only when
    the application was there: with none, its noise read 1.3-1.5x and a paced rollback crawled at the floor."""
    paced = Controller(None, 1, Throttle(), 1.25, 1)
    paced.baseline_trip_ms, paced.baseline_tx_ms = 0.4, None
    paced.trips.extend([[0.4] * MIN_TRIPS, [0.4] * (MIN_TRIPS - 3) + [0.8] * 3])  # a p99 of 0.8 ms: noise
    assert paced._round_trip_ratio() is None, "nobody to protect: no figure"
    paced.app_seen = True
    assert paced._round_trip_ratio() == pytest.approx(2.0), "1 + 0.4 ms more over its own 0.4 ms"
    paced.baseline_tx_ms = 4.0
    assert paced._round_trip_ratio() == pytest.approx(1.1), "a tail age: the extra wait over it"


def test_at_the_floor_a_batch_seconds_ago_still_counts_as_working():
    """At 2% of two shards' ceiling a shard of 20 ms batches pauses ~2 s between them: a one-second window saw
    no batch most seconds, the budget was 'not used' and never raised again (a run stuck at the floor)."""
    window = controller.work_window_s(FLOOR, 2, 0.02, longest_pause_s=10.0)
    assert window > 1.0 + sleep_after(0.02, shard_duty(FLOOR, 2)), "longer than a batch cycle at the floor"
    assert controller.work_window_s(2.0, 2, 0.02, 10.0) == pytest.approx(1.06), "flat out: about a second"
    assert controller.work_window_s(FLOOR, 2, 1.0, 10.0) == 11.0, "never longer than the longest pause + 1 s"


def test_no_step_up_while_the_backfill_did_not_use_its_allowance():
    duty = DutyCycle(target=1.25, budget=0.3)
    assert duty.decide(Reading(transaction_ratio=1.0, working=False)) == (
        0.3, "holding: the backfill did not use its allowance")


def test_over_target_at_the_floor_is_counted_until_a_decision_under_it():
    """Pacer._warn_out_of_reach says the target is out of reach after OUT_OF_REACH_AFTER of these in a row: the
    count starts only once the budget is at the floor, and any decision under target ends it."""
    duty = DutyCycle(target=1.25, budget=0.2)
    duty.decide(Reading(transaction_ratio=2.0))
    assert duty.pinned == 0 and duty.budget > FLOOR                   # over, but a cut was still possible
    duty.budget = FLOOR
    for n in range(1, 6):
        duty.decide(Reading(transaction_ratio=1.6 + n / 10))          # rising: a cut each time, kept at the floor
        assert (duty.pinned, duty.budget) == (n, FLOOR)
    duty.decide(Reading(transaction_ratio=1.1))
    assert duty.pinned == 0


def test_budget_stays_between_the_floor_and_the_number_of_shards():
    duty = DutyCycle(target=1.1, ceiling=2.0)
    for _ in range(30):
        duty.decide(Reading(transaction_ratio=3.0 + duty.cuts))          # rising: cut every time
    assert duty.budget == pytest.approx(FLOOR)
    for _ in range(40):
        duty.decide(Reading(transaction_ratio=1.0))
    assert duty.budget == pytest.approx(2.0)
    assert shard_duty(2.0, 2) == 1.0 and shard_duty(1.0, 2) == 0.5      # two shards share one budget
    assert sleep_after(0.2, 0.5) == pytest.approx(0.2) and sleep_after(0.2, 1.0) == 0.0


def test_full_speed_when_the_ratio_is_null_and_an_unharmed_application_is_not_throttled_by_the_run_queue():
    assert DutyCycle(target=None, budget=0.1).decide(Reading(transaction_ratio=9.0, blocked=3))[0] == 1.0
    # the run queue counts our own busy backends: two shards on two cores read 'over' with the application
    # unharmed (issue 20: protecting ran at a quarter of the speed of full speed, which did not hurt either)
    unharmed = Reading(transaction_ratio=1.05, latency_ratio=1.6, runnable_ratio=3.0)
    assert unharmed.impacts() == {"app transactions": 1.05}, "the statements' mean only without transactions"
    assert DutyCycle(target=1.25, ceiling=2.0, budget=1.0).decide(unharmed)[0] > 1.0
    assert DutyCycle(target=1.25).decide(Reading(latency_ratio=1.6))[1].startswith(
        "app statements 1.60 over target 1.25")
    external = DutyCycle(target=1.25, external_max=100)
    assert external.decide(Reading(external=250))[1] == "external signal 250.00 over external_max 100: x0.50"


@pytest.mark.parametrize("target", [1.25, 1.5, 2.0])
def test_against_a_simulated_application_the_budget_settles_under_the_target_without_sawing(target):
    """An application whose latency ratio grows with the square of our budget (a queue filling up) plus a
    little noise: the pacer settles where the ratio is under the asked one, close to the best budget that
    holds it, and its decisions no longer swing by more than a step once settled."""
    import random

    rng, duty, budgets, ratios = random.Random(20), DutyCycle(target=target, ceiling=2.0), [], []
    best = ((target - 1) / 0.5) ** 0.5                                   # where 1 + 0.5 * b^2 == target
    for second in range(120):
        ratio = (1 + 0.5 * duty.budget ** 2) * rng.uniform(0.97, 1.03)
        duty.decide(Reading(transaction_ratio=ratio))
        if second >= 60:
            budgets.append(duty.budget)
            ratios.append(1 + 0.5 * duty.budget ** 2)
    assert max(ratios) <= target * 1.1, f"over the asked ratio once settled: {max(ratios):.2f}"
    assert sum(budgets) / len(budgets) >= 0.75 * min(best, 2.0), f"too timid: {sum(budgets) / len(budgets):.2f}"
    assert max(budgets) - min(budgets) <= 0.35 * best, f"oscillates: {min(budgets):.2f}..{max(budgets):.2f}"


def test_the_canarys_extra_round_trip_is_harm_held_against_the_target_beside_the_transactions_age():
    reading = Reading(transaction_ratio=1.05, round_trip_ratio=1.4)
    assert reading.impacts() == {"app transactions": 1.05, "round trips": 1.4}
    assert DutyCycle(target=1.25, ceiling=2.0, budget=1.0).decide(reading)[1].startswith(
        "round trips 1.40 over target 1.25")
    # pooled from the newest window back: two windows at least, more until the minimum is reached
    windows = deque([[9.0] * 10, [1.0] * 100, [2.0] * 100], maxlen=5)
    assert pooled_percentile(windows, 0.99, 150) == 2.0           # the two newest suffice
    assert pooled_percentile(windows, 0.99, 205) == 9.0           # the oldest joins to reach 205 values
    assert pooled_percentile(windows, 0.99, 500) is None


def test_while_pacing_a_batch_holds_its_row_locks_at_most_lock_hold_s(tmp_path):
    """The duty cycle spreads the work over time, but a batch holds its row locks for its whole duration, and an
    application transaction that touches one of its rows waits that long: paced, batches are short."""
    paced = _migration(tmp_path, 1.5, lock_hold_s=0.03).spec.backfill.throttle
    assert Pacer(None, 1, paced).batch_seconds(0.1) == pytest.approx(0.03)
    assert Pacer(None, 1, paced).batch_seconds(0.01) == pytest.approx(0.01), "a shorter target stays"
    assert Pacer(None, 1, paced, app_latency_ratio=None).batch_seconds(0.1) == pytest.approx(0.1), "full speed"


def test_percentile_is_the_nearest_rank():
    assert percentile([], 0.95) is None
    assert percentile(list(range(1, 101)), 0.95) == 96 and percentile([3.0], 0.95) == 3.0


def test_batch_size_follows_the_p90_grows_at_most_one_and_a_half_times_and_cuts_to_a_tenth_on_overshoot():
    sizer = BatchSizer(size=1000, target_seconds=0.2, minimum=10, maximum=1_000_000)
    assert sizer.observe(1000, 0.02) == 1500                       # 10x under target: only x1.5
    for _ in range(4):
        sizer.observe(sizer.size, sizer.size * 0.0001)            # 0.1 ms a key: aims at 2,000 keys
    assert sizer.size == 2000
    sizer.observe(2000, 0.8)                                      # one slow batch (0.4 ms a key) is the p90
    assert sizer.size == 500
    assert sizer.observe(500, 1.5) == 50                          # 7.5x over target: a tenth at once


def test_while_pacing_the_first_batch_is_sized_for_the_lock_hold_not_the_specs_target():
    """The spec's batch_size is aimed at target_batch_seconds (0.1 s); paced batches aim at lock_hold_s (20 ms):
    the first batch starts at a fifth of it instead of holding its row locks five times too long."""
    paced = BatchSizer.aimed(10_000, asked_seconds=0.1, target_seconds=0.02, minimum=100, maximum=1_000_000)
    assert (paced.size, paced.target_seconds) == (2000, 0.02)
    assert BatchSizer.aimed(10_000, 0.1, 0.1, 100, 1_000_000).size == 10_000, "full speed: the spec's size"
    assert BatchSizer.aimed(300, 0.1, 0.02, 100, 1_000_000).size == 100, "never under the spec's minimum"
    assert BatchSizer.aimed(10_000, 0.1, 0.02, 100, 1_000_000, adaptive=False).size == 10_000, "fixed size: kept"


# -- the closed loop on a real PostgreSQL --------------------------------------------------------------

ROWS, BATCH = 100_000, 500
FAST_S, SLOW_S = 0.002, 0.02  # the application's statement alone / while one of our batches runs
# One statement, as role `app`: slow exactly while a backfill batch (an UPDATE of ours) is running.
APP_STATEMENT = ("SELECT pg_sleep(CASE WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = "
                 "'airmigrate' AND state = 'active' AND query LIKE 'UPDATE t %%') THEN %s ELSE %s END)")


def _migration(tmp_path, ratio, batch_work_s=0.1, **throttle):
    folder = tmp_path / "0080_paced"
    folder.mkdir(exist_ok=True)
    (folder / "up.sql").write_text("ALTER TABLE t ADD COLUMN IF NOT EXISTS b int;")
    (folder / "down.sql").write_text("ALTER TABLE t DROP COLUMN IF EXISTS b;")
    (folder / "backfill.sql").write_text(f"UPDATE t SET b = a * 2 FROM (SELECT pg_sleep({batch_work_s})) s "
                                         "WHERE id BETWEEN %(lo)s AND %(hi)s")
    spec = {"description": "paced backfill", "table": "t", "key": "id", "batch_size": BATCH, "shards": 1,
            "backfill": {"sql": "backfill.sql", "columns": ["b"], "adaptive": False,
                         "throttle": {"app_latency_ratio": ratio, "probe_every_s": 5, "max_lock_waiters": None,
                                      "pause_during_autovacuum": False, **throttle}}}
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    return load_migration(folder)


def _prepare(target, migration, shards: int | None = None) -> int:
    """The stages before the backfill's shards; `shards`: how many the test's pacers say run (the plan writes the
    run's shared pacing row with their start share)."""
    run_id = preflight.preflight(target, migration)["run_id"]
    backup.backup(target, migration, run_id)
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id, shards=shards)
    return run_id


class Application(threading.Thread):
    """Role `app`, back to back: the statement above, each one's latency as the application saw it."""

    def __init__(self, conninfo: str):
        super().__init__(daemon=True)
        self.conninfo, self.stop, self.calls, self.seen = conninfo, threading.Event(), 0, []

    def run(self):
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self.stop.is_set():
                began = time.monotonic()
                conn.execute(APP_STATEMENT, (SLOW_S, FAST_S))
                self.seen.append((began, time.monotonic() - began))
                self.calls += 1


@pytest.fixture(scope="module")
def stats_pg():
    with scratch_cluster("shared_preload_libraries = 'pg_stat_statements'\n", prefix="airmigrate-pacing-") as cluster:
        yield cluster


@pytest.fixture
def paced_db(stats_pg):
    name = f"pacing_{time.monotonic_ns() % 10**9}"
    with connect(stats_pg.target(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'app'").fetchone():
            conn.execute("CREATE ROLE app LOGIN")
            conn.execute("GRANT pg_read_all_stats TO app")  # to see our backends' state and query
    target = stats_pg.target(name)
    with connect(target, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, a int)")
        conn.execute("INSERT INTO t SELECT g, g FROM generate_series(1, %s) g", (ROWS,))
        conn.execute("GRANT SELECT ON t TO app")
    yield target
    with connect(stats_pg.target(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_statement_figure_sums_other_roles_statements_without_loading_their_texts(paced_db):
    """pg_stat_statements read through its function with showtext false: the view loads the whole query-text
    file on every call, once a second from the pacer."""
    with connect(paced_db, autocommit=True) as conn:
        totals, missing = pacing_sql.statements(conn)
        assert missing is None
        before = totals()
        with psycopg.connect(paced_db.conninfo().replace("user=postgres", "user=app"), autocommit=True) as app:
            for _ in range(5):
                app.execute("SELECT a FROM t WHERE id = 1").fetchone()
        total_ms, calls = totals()
        assert calls >= before[1] + 5 and total_ms >= before[0]


def test_the_canary_times_a_round_trip_a_hundredth_of_a_second_from_its_own_connection(paced_db):
    canary = Canary(lambda: connect(paced_db, autocommit=True, application_name="airmigrate-canary"), 0.01).start()
    try:
        trips: list[float] = []
        deadline = time.monotonic() + 60
        while len(trips) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
            trips += canary.take()
        assert len(trips) >= 30 and all(0 < trip < 60_000 for trip in trips), trips
        with connect(paced_db, autocommit=True) as conn:  # never counted as the application (the ages skip us)
            assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'airmigrate-canary'"
                                ).fetchone()[0] == 1
    finally:
        canary.stop()
    assert not canary.thread.is_alive(), "stopped with the pacer"


def _decisions(target, run_id):
    with connect(target) as conn:
        return conn.execute("SELECT extract(epoch FROM at - min(at) OVER ()), budget, latency_ratio, decision "
                            "FROM airmigrate.pacing_log WHERE run_id = %s ORDER BY at", (run_id,)).fetchall()


def test_the_pacer_holds_the_application_near_the_asked_latency_ratio(paced_db, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    migration = _migration(tmp_path, ratio=1.5)
    run_id = _prepare(paced_db, migration)
    app = Application(paced_db.conninfo().replace("user=postgres", "user=app")
                      .replace("application_name=airmigrate", "application_name=shop"))
    app.start()
    try:
        started = time.monotonic()
        backfill.run_shard(paced_db, migration, run_id, should_stop=lambda: time.monotonic() - started > 30)
    finally:
        app.stop.set()
        app.join()
    decisions = _decisions(paced_db, run_id)
    # alone: about its 2 ms statement (an age is read in flight, so a little under it), far from the 20 ms it takes
    # beside a batch of ours. The probes' median: one probe at a moment the machine is busy reads high (13.4 ms,
    # once, with the rest of the suite running beside it) and the pacer then measures again; a probe taken while
    # our batches ran would read 20 ms every time
    probes = [float(age) for age in re.findall(r"pacing: baseline .*? in flight ([0-9.]+) ms", caplog.text)]
    assert len(probes) >= 2, f"probed every few seconds: {probes}"
    baseline = statistics.median(probes)
    assert FAST_S * 1000 / 2 <= baseline < SLOW_S * 1000 / 2, f"the probes measure the application alone: {probes}"
    assert decisions[0][1] <= 0.25, "a protected run starts low, not at full speed"
    over = [d for d in decisions if "over target 1.50" in d[3]]
    assert over, f"growing, it finds the setting that hurts the application: {decisions[:8]}"
    settled = [d for d in decisions if d[0] >= 15]
    assert len(settled) >= 5, decisions
    mean_budget = sum(d[1] for d in settled) / len(settled)
    # what the application felt once the pacer settled (its last 15 s, its own clock): at full speed its
    # statements take 20 ms against 2 ms alone, 10x; the pacer holds them near the asked 1.5x (one client: too
    # few transactions for a tail figure between probes, so the statements' mean is what holds here)
    felt = [seconds for began, seconds in app.seen if began >= started + 15]
    ratio = sum(felt) / len(felt) / FAST_S
    assert mean_budget < 0.6, f"the pacer did not slow down: {settled}"
    assert ratio < 2.0, f"the application is still hurt {ratio:.2f}x (asked 1.5x): {settled}"
    assert "pacing: duty" in caplog.text and "pacing: baseline" in caplog.text
    with connect(paced_db) as conn:
        done = conn.execute("SELECT count(*) FROM t WHERE b IS NOT NULL").fetchone()[0]
    assert 0 < done < ROWS, "paced, the backfill moves, but slowly"


def test_full_speed_when_asked_for_null(paced_db, tmp_path):
    migration = _migration(tmp_path, ratio=None, batch_work_s=0)
    run_id = _prepare(paced_db, migration)
    assert backfill.run_shard(paced_db, migration, run_id)["rows"] == ROWS
    assert _decisions(paced_db, run_id) == [], "no pacer ran"


def test_every_shard_of_a_protected_run_starts_at_the_start_share_not_only_the_leader(paced_db, tmp_path):
    """A shard that does not lead reads the shared budget at most once a second: the row must hold the start
    share from the start (it held the ceiling: the bench's first two seconds had one shard batching non-stop)."""
    migration = _migration(tmp_path, ratio=1.5)
    run_id = _prepare(paced_db, migration, shards=2)
    with Pacer(paced_db, run_id, migration.spec.backfill.throttle, shards=2) as first, \
            Pacer(paced_db, run_id, migration.spec.backfill.throttle, shards=2) as second:
        follower = second if first.leader is not None else first
        assert follower.leader is None, "one leader a run"
        with connect(paced_db, autocommit=True) as conn:
            row = conn.execute("SELECT budget FROM airmigrate.pacing WHERE run_id = %s", (run_id,)).fetchone()
        assert row[0] == pytest.approx(max(controller.FLOOR, controller.START * 2))
        follower._refresh(force=True)
        assert follower.budget == pytest.approx(row[0])
        # a 0.01 s batch at a twentieth of two shards' ceiling: each shard works 5% of its time
        assert controller.sleep_after(0.01, controller.shard_duty(follower.budget, 2)) == pytest.approx(0.19)


def test_when_the_leaders_connection_is_killed_another_shard_leads_and_the_old_one_follows_it(
        paced_db, tmp_path, monkeypatch, caplog):
    """The leader's controller runs on its pacer's connection, the session that holds the leader's lock. Killed,
    the controller stops and the server frees the lock; the shard that led must not go on at the dead controller's
    last budget, blind to the new leader's probes: it follows the shared row on a new connection. A lone shard
    leads again (after LEAD_AGAIN_AFTER_S, 0 here)."""
    migration = _migration(tmp_path, ratio=1.5)
    run_id = _prepare(paced_db, migration)
    throttle = migration.spec.backfill.throttle

    def kill_leaders_connection(pacer) -> None:
        with connect(paced_db, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pacer.conn.info.backend_pid,))
        wait_for(lambda: not pacer.leader.thread.is_alive(), 60, "the controller to stop on its killed connection")

    with Pacer(paced_db, run_id, throttle, shards=2) as first, Pacer(paced_db, run_id, throttle, shards=2) as second:
        old, other = (first, second) if first.leader is not None else (second, first)
        kill_leaders_connection(old)
        assert "pacing stopped" in caplog.text
        old._refresh()
        assert old.leader is None, "the stopped leader is dropped"
        wait_for(lambda: other._refresh(force=True) and other.leader is not None, 60, "the other shard to lead")
        # the new leader's first probe pauses every shard: the old leader sees it through the shared row
        wait_for(lambda: old._refresh(force=True) and old._probing(), 60, "the old leader to see the new one's probe")
        assert old.leader is None, "one leader a run"
    monkeypatch.setattr(pacer_module, "LEAD_AGAIN_AFTER_S", 0.0)
    with Pacer(paced_db, run_id, throttle, shards=1) as alone:
        stopped = alone.leader
        kill_leaders_connection(alone)
        alone._refresh()  # drops the stopped leader; leads again once the server has freed the killed session's lock
        wait_for(lambda: alone._refresh(force=True) and alone.leader is not None, 60, "the lone shard to lead again")
        assert alone.leader is not stopped and alone.leader.thread.is_alive(), "a new leader, on a new connection"


def test_a_new_leader_goes_on_at_full_speed_where_the_last_saw_nobody_and_starts_over_otherwise(
        paced_db, tmp_path, caplog):
    """`airmigrate run` runs a run's shards one after another (dag.test()), `migrate` one run after another:
    each leads in turn, and each spent two seconds at the start share before its first probe found, again, nobody
    to protect. Where the newest leader's decision on the database, under a probe period ago, was "nobody", the
    next goes on from it at the ceiling; where it was protecting an application, or long ago, the next starts over
    at the start share."""
    caplog.set_level(logging.INFO, logger="airmigrate.pacing")
    migration = _migration(tmp_path, ratio=1.5, probe_every_s=60)  # "under a probe period ago" on a busy machine
    run_id = _prepare(paced_db, migration)
    throttle = migration.spec.backfill.throttle
    with Pacer(paced_db, run_id, throttle, shards=2):
        wait_for(lambda: _pacing_row(paced_db, run_id, "no application"), 120, "the first leader to see nobody")
    with Pacer(paced_db, run_id, throttle, shards=2) as second:
        assert second.leader is not None
        wait_for(lambda: "the last leader on this database saw no application" in caplog.text, 30,
                 "the new leader going on")
        second._refresh()
        assert second.budget == pytest.approx(2.0), "at the ceiling before a probe of its own"
    start = max(controller.FLOOR, controller.START * 2)
    for change in ("reason = 'under target: +0.10'", "updated_at = clock_timestamp() - interval '1 hour'"):
        with connect(paced_db, autocommit=True) as conn:
            conn.execute("UPDATE airmigrate.pacing SET reason = %s, updated_at = clock_timestamp() WHERE run_id = %s",
                         (controller.NOBODY, run_id))
            conn.execute(f"UPDATE airmigrate.pacing SET {change} WHERE run_id = %s", (run_id,))
        with Pacer(paced_db, run_id, throttle, shards=2):
            first = wait_for(lambda: _pacing_row(paced_db, run_id, "no baseline yet"), 30,
                             f"a first decision ({change})")
        assert first[0] == pytest.approx(start), f"starts over at the start share when {change}"


def _pacing_row(target, run_id, saying: str | None = None):
    """(budget, reason) of the run's shared pacing row; with `saying`, None unless its reason says that."""
    with connect(target, autocommit=True) as conn:
        row = conn.execute("SELECT budget, reason FROM airmigrate.pacing WHERE run_id = %s", (run_id,)).fetchone()
    return row if saying is None or (row and saying in (row[1] or "")) else None


def test_a_run_with_no_application_goes_to_the_ceiling_and_starts_over_when_one_shows_up(paced_db, tmp_path):
    """The closed loop on a real server: the first probe sees no application, so the budget is the ceiling
    (no slow start for nobody); the application starts, the pacer sees its transactions, goes back to the start
    share and measures it alone, then paces it."""
    migration = _migration(tmp_path, ratio=1.5)
    run_id = _prepare(paced_db, migration)
    app = Application(paced_db.conninfo().replace("user=postgres", "user=app")
                      .replace("application_name=airmigrate", "application_name=shop"))
    with Pacer(paced_db, run_id, migration.spec.backfill.throttle, shards=2) as pacer:
        assert pacer.leader is not None
        alone = wait_for(lambda: _pacing_row(paced_db, run_id, "no application"),
                          120, f"never at the ceiling with nobody to protect: {_pacing_row(paced_db, run_id)}")
        assert alone[0] == pytest.approx(2.0), alone
        app.start()
        try:
            back = wait_for(lambda: _pacing_row(paced_db, run_id, "showed up"),
                             120, f"the application was not seen: {_pacing_row(paced_db, run_id)}")
            assert back[0] == pytest.approx(max(controller.FLOOR, controller.START * 2)), back
            wait_for(lambda: pacer.leader.app_seen, 120, "the application was never measured alone")
            assert not pacer.leader.appeared
        finally:
            app.stop.set()
            app.join()


def test_application_waiting_on_our_locks_halves_the_budget_and_no_latency_signal_is_said_once(
        fresh_db, tmp_path, caplog):
    """The shared server has no pg_stat_statements: the pacer says so once and paces by lock waits."""
    caplog.set_level(logging.INFO)
    folder = tmp_path / "0081_locks"
    folder.mkdir()
    (folder / "up.sql").write_text("ALTER TABLE users ADD COLUMN IF NOT EXISTS touched int DEFAULT 0;")
    (folder / "down.sql").write_text("ALTER TABLE users DROP COLUMN IF EXISTS touched;")
    # 3 ms a row: the batch's first row stays locked for the whole batch (~0.6 s)
    (folder / "backfill.sql").write_text("UPDATE users SET touched = 1 + length(pg_sleep(0.003)::text) "
                                         "WHERE id BETWEEN %(lo)s AND %(hi)s")
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": "locks", "table": "users", "key": "id", "batch_size": 200, "shards": 1,
        "backfill": {"sql": "backfill.sql", "columns": ["touched"], "adaptive": False,
                     "throttle": {"app_latency_ratio": 1.25, "max_lock_waiters": None,
                                  "pause_during_autovacuum": False}}}))
    migration = load_migration(folder)
    run_id = _prepare(fresh_db, migration)
    stop = threading.Event()

    def application():  # keeps writing the first row of whatever batch is running
        with psycopg.connect(fresh_db.conninfo().replace("application_name=airmigrate", "application_name=shop"),
                             autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute("SELECT coalesce(max(lo::int), 0) FROM airmigrate.batches WHERE run_id = %s",
                                   (run_id,)).fetchone()
                conn.execute("UPDATE users SET full_name = full_name WHERE id = %s", (row[0],))
                time.sleep(0.05)

    writer = threading.Thread(target=application, daemon=True)
    writer.start()
    started = time.monotonic()
    try:
        backfill.run_shard(fresh_db, migration, run_id, should_stop=lambda: time.monotonic() - started > 8)
    finally:
        stop.set()
        writer.join()
    halved = [d for d in _decisions(fresh_db, run_id) if "waiting on our locks: halved" in d[3]]
    assert halved and min(d[1] for d in halved) < 0.6, _decisions(fresh_db, run_id)
    assert caplog.text.count("pacing without the application's latency") == 1


def test_a_baseline_is_measured_again_when_the_signal_stays_over_target_although_the_pacer_cut():
    """Over target three decisions running while the budget shrinks: the application's own load has likely risen
    (a busy phase), so the pacer re-measures it instead of starving the backfill against a stale baseline; not
    more often than REPROBE_AFTER_S."""
    controller = Controller(None, 1, Throttle(), 1.25, 1)
    controller.probed_at = -1e9
    assert [controller._stale_baseline(3.0) for _ in range(STALE_AFTER)] == [False] * (STALE_AFTER - 1) + [True]
    assert not any(controller._stale_baseline(1.1) for _ in range(5)), "under target: the baseline holds"
    controller.probed_at = time.monotonic()
    assert not any(controller._stale_baseline(3.0) for _ in range(5)), "just measured: not again at once"
    controller.probed_at = -1e9
    assert [controller._stale_baseline(1.0, True) for _ in range(OFF_AFTER)] == [False] * (OFF_AFTER - 1) + [True]
    assert controller.recheck_off, "measured again because it read off: the next figure is trusted"
    assert not any(controller._stale_baseline(1.0, i % 2 == 0) for i in range(6)), "one off reading at a time: noise"
