"""What do a protected run's first seconds cost the application, and what in them? Two real shards (processes, as
Airflow runs them) of a protected backfill started at the beginning of a quiet phase and stopped at its end,
beside backfill_bench's application; the run's pacing row is reset before each start, so every start is a run's
first.

    .venv/bin/python bench/start_cost.py --data-parent /dev/shm [--rounds 8] [--phase-s 5] [--busy 0.6]

Each round starts the variants in turn, the application alone among them, so slow drifts of the machine fall on
every variant alike:

  alone          the application alone
  protect        a protected run (app_latency_ratio 1.5, two shards) as it is
  controller's own connection  the same, the leader's controller on a connection of its own, as before session
                 16 (now it uses its pacer's: one fewer at the start)
  late canary    the same, its round-trip canary started just before the first probe instead of with the
                 controller (one backend fewer, and no trips, in the first seconds)
  small first    the same, its first batches a quarter of the size (500 rows instead of 2,000: the first ones
                 took 0.03-0.05 s, 2.5x the 0.02 s lock hold)
  pacer only     each shard's connection and pacer (the leader's controller, sampler and canary), no batch: what
                 starting costs without the work
  connections only  six connections opened at the start (a protected run's two shards, their pacers, the
                 leader's controller and canary), one query each, then idle
  loop B/Sms     backfill_bench's hand-written loop (one process, one connection opened before the start): an
                 autocommitted UPDATE of B keys, then S ms of sleep, on the same column; `cold`: its connection
                 opened at the start, as airmigrate's shards open theirs

Printed: per variant, the median over rounds of the application's p99 in the run's first FIRST_S seconds and in
the rest of the quiet phase, each as a ratio to the same round's `alone` over the same seconds of its cycle, and
the spread. Short windows are noisy (bench/README "the yardstick"): read the medians of many rounds. Nothing
here is a test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pg import (
    BENCH_DB,
    Application,
    Cluster,
    print_ratios,
    rounds_arguments,
    say,
    sql,
    started_application,
)
from bench_shards import MIGRATIONS, prepare_run

ROOT = Path(__file__).resolve().parent.parent
FOLDER = MIGRATIONS / "9005_bench_protect_150"
VARIANTS = ("alone", "protect", "controller's own connection", "late canary", "small first", "pacer only",
            "connections only", "loop 1000/100ms", "loop 2000/50ms", "loop 1000/100ms cold")
FIRST_S = 2.0


def patch(variant: str) -> None:
    """The variant's change, made in the shard process before it starts."""
    from airmigrate.pacing import leader, signals
    from airmigrate.stages.backfill import tuning

    if variant == "controller's own connection":
        init = leader.Controller.__init__

        def own_connection(self, target, run_id, throttle, ratio, shards, conn=None):
            init(self, target, run_id, throttle, ratio, shards)

        leader.Controller.__init__ = own_connection
    elif variant == "late canary":
        class LateCanary(signals.Canary):
            """Starts its thread half a second before the first probe (FIRST_PROBE_S), not with the controller."""

            def start(self) -> LateCanary:
                self.born = time.monotonic()
                return self

            def take(self) -> list[float]:
                if not self.thread.is_alive() and not self.stopped.is_set() and \
                        time.monotonic() - self.born >= leader.FIRST_PROBE_S - 0.5:
                    self.thread.start()
                return super().take()

        leader.Canary = LateCanary
    elif variant == "small first":
        aimed = tuning.BatchSizer.aimed.__func__

        def smaller(cls, size, *args, **kwargs):
            return aimed(cls, max(1, size // 4), *args, **kwargs)

        tuning.BatchSizer.aimed = classmethod(smaller)


def worker(job: dict) -> None:
    """Child process: one shard, patched for its variant, from READY until the deadline the parent writes."""
    import logging

    sys.path.insert(0, str(ROOT / "src"))
    logging.basicConfig(filename=job["log"], level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from airmigrate.db import Target
    from airmigrate.spec import load_migration
    from airmigrate.stages import backfill

    if job["variant"].startswith("loop"):
        return loop_worker(job)
    if job["variant"] == "connections only":
        return idle_connections(job)
    patch(job["variant"])
    target, migration = Target.from_url(job["url"]), load_migration(job["folder"])
    print("READY", flush=True)
    deadline = float(sys.stdin.readline())
    if job["variant"] == "pacer only":
        return idle_shard(target, migration, job, deadline)
    backfill.run_shard(target, migration, job["run_id"], job["shard"], shards=job["shards"],
                       should_stop=lambda: time.time() >= deadline)


def loop_worker(job: dict) -> None:
    """The hand-written loop of backfill_bench.keyset_loop, from a random place in the table."""
    import random

    import psycopg
    from bench_shards import migration_column

    batch, sleep_ms = (int(part) for part in job["variant"].split()[1].removesuffix("ms").split("/"))
    column, cold = migration_column(FOLDER.name), job["variant"].endswith("cold")
    with psycopg.connect(job["url"], autocommit=True) as conn:
        last = conn.execute("SELECT max(aid) FROM pgbench_accounts").fetchone()[0]
    lo = random.randrange(1, last)
    conn = None if cold else psycopg.connect(job["url"], autocommit=True)
    print("READY", flush=True)
    deadline = float(sys.stdin.readline())
    with conn or psycopg.connect(job["url"], autocommit=True) as conn:
        while time.time() < deadline:
            conn.execute(f"UPDATE pgbench_accounts SET {column} = abalance + aid WHERE aid BETWEEN %s AND %s",
                         (lo, lo + batch - 1))
            lo = lo + batch if lo + batch <= last else 1
            time.sleep(sleep_ms / 1000)


def idle_connections(job: dict) -> None:
    """A protected run's six connections, opened at the start, one query each, then idle until the deadline."""
    import psycopg

    print("READY", flush=True)
    deadline = float(sys.stdin.readline())
    conns = [psycopg.connect(job["url"], autocommit=True) for _ in range(6)]
    for conn in conns:
        conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
    time.sleep(max(0.0, deadline - time.time()))
    for conn in conns:
        conn.close()


def idle_shard(target, migration, job: dict, deadline: float) -> None:
    """A shard's connection and its pacer, between batches that never come."""
    from airmigrate.db import connect
    from airmigrate.pacing.pacer import Pacer

    with connect(target) as conn, Pacer(target, job["run_id"], migration.spec.backfill.throttle,
                                        shards=job["shards"], session=conn) as pace:
        while time.time() < deadline:
            pace.before_batch()
            time.sleep(0.1)


def start_shards(url: str, run_id: int, shards: int, variant: str, logdir: Path) -> list[subprocess.Popen]:
    procs = []
    for shard in range(1 if variant.startswith("loop") or variant == "connections only" else shards):
        job = json.dumps({"url": url, "folder": str(FOLDER), "run_id": run_id, "shard": shard, "shards": shards,
                          "variant": variant,
                          "log": str(logdir / f"{re.sub('[^a-z0-9]+', '_', variant)}.shard{shard}.log")})
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker", job], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True))
    for proc in procs:
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError(f"shard worker ({variant}) did not start")
    return procs


def main() -> None:
    args = rounds_arguments(list(VARIANTS[1:]), phase_s=5, rounds=8)
    if args.worker:
        return worker(json.loads(args.worker))
    cluster = Cluster(args.data_parent).start()
    workdir = Path(tempfile.mkdtemp(prefix="airmigrate-start-cost-"))
    try:
        app = started_application(cluster, workdir, args)
        url = cluster.url(BENCH_DB)
        run_id, shards = prepare_run(url, FOLDER)  # one run; its pacing row is reset before each start
        variants = ["alone", *args.variants.split(",")]
        cycles = []
        for rnd in range(args.rounds):
            for variant in variants:
                procs = []
                if variant != "alone":
                    sql(cluster, f"DELETE FROM airmigrate.pacing WHERE run_id = {int(run_id)}")
                    procs = start_shards(url, run_id, shards, variant, workdir)
                cycle = app.cycle()
                for proc in procs:
                    proc.stdin.write(f"{cycle + args.phase_s}\n")
                    proc.stdin.flush()
                app.wait_cycle_done(cycle)
                for proc in procs:
                    proc.wait(timeout=60)
                cycles.append((rnd, variant, cycle))
            say(f"round {rnd + 1} done; load {os.getloadavg()[0]:.2f}")
        app.stop()
        report(app, cycles, args.phase_s, variants)
        say(f"shard logs in {workdir}")
    finally:
        cluster.stop()


def report(app: Application, cycles: list, phase_s: float, variants: list[str]) -> None:
    p99 = {}
    for rnd, variant, cycle in cycles:
        for name, (lo, hi) in (("first", (0, FIRST_S)), ("rest", (FIRST_S, phase_s))):
            p99[rnd, variant, name] = app.window(cycle + lo, cycle + hi)["quiet"]["p99_ms"]
    rounds = sorted({rnd for rnd, _, _ in cycles})
    print_ratios(p99, rounds, variants, [("first", f"first {FIRST_S:g} s"), ("rest", "rest of quiet")], width=28)


if __name__ == "__main__":
    main()
