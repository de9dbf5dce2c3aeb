"""What does the pacer's own monitoring cost the application? No batches at all: only the leader's controller,
its canary and its sampler, beside backfill_bench's application.

    .venv/bin/python bench/monitor_cost.py --data-parent /dev/shm [--rounds 6] [--phase-s 10] [--busy 0.6]

Each round runs one cycle (a quiet then a busy phase) per variant, in turn, so slow drifts of the machine fall on
every variant alike:

  alone          the application alone
  pacer          a protected run's pacer (app_latency_ratio 1.5, two shards) as it is: canary 100 a second
  canary 20/s    the same with the canary five times slower (leader.CANARY_S = 0.05)
  no canary      the same without the canary (its figures are then missing from every decision)

The pacer runs in its own process, started and imported before the cycle, and sits between batches that never
come: its controller decides once a second, samples pg_stat_activity ten times a second, probes after two
seconds and every 30 (four times as often while probing). Printed: per variant and phase, the median over rounds
of the application's p99 and its ratio to the same round's `alone`, and the spread (lowest-highest). Nothing here
is a test: it is how the canary's period was chosen (bench/README.md).
"""

from __future__ import annotations

import json
import os
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
    started_application,
)
from bench_shards import MIGRATIONS, prepare_run

ROOT = Path(__file__).resolve().parent.parent
FOLDER = MIGRATIONS / "9005_bench_protect_150"
VARIANTS = {"alone": None, "pacer": 0.01, "canary 20/s": 0.05, "no canary": 0.0}


def worker(job: dict) -> None:
    """Child process: a pacer with no batches, from READY until the deadline the parent writes."""
    import logging

    sys.path.insert(0, str(ROOT / "src"))
    logging.basicConfig(filename=job["log"], level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from airmigrate.db import Target
    from airmigrate.pacing import leader, pacer, signals
    from airmigrate.spec import load_migration

    class NoCanary(signals.Canary):
        """Never starts its thread: hands over no trips, so the decisions go without that figure."""

        def start(self) -> NoCanary:
            return self

    if job["canary_s"]:
        leader.CANARY_S = job["canary_s"]
    else:
        leader.Canary = NoCanary
    target, migration = Target.from_url(job["url"]), load_migration(job["folder"])
    print("READY", flush=True)
    deadline = float(sys.stdin.readline())
    with pacer.Pacer(target, job["run_id"], migration.spec.backfill.throttle, shards=job["shards"]) as pace:
        while time.time() < deadline:
            pace.before_batch()
            time.sleep(0.1)


def start_worker(url: str, run_id: int, shards: int, canary_s: float, log: Path) -> subprocess.Popen:
    job = json.dumps({"url": url, "folder": str(FOLDER), "run_id": run_id, "shards": shards, "canary_s": canary_s,
                      "log": str(log)})
    proc = subprocess.Popen([sys.executable, __file__, "--worker", job], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "READY":
        raise RuntimeError("pacer worker did not start")
    return proc


def main() -> None:
    args = rounds_arguments(list(VARIANTS), phase_s=10, rounds=6)
    if args.worker:
        return worker(json.loads(args.worker))
    cluster = Cluster(args.data_parent).start()
    workdir = Path(tempfile.mkdtemp(prefix="airmigrate-monitor-cost-"))
    try:
        app = started_application(cluster, workdir, args)
        url = cluster.url(BENCH_DB)
        run_id, shards = prepare_run(url, FOLDER)  # one run for every pacer: it never writes a row
        variants = {name: VARIANTS[name] for name in ["alone", *args.variants.split(",")]}
        cycles = []
        for rnd in range(args.rounds):
            for name, canary_s in variants.items():
                proc = None
                if canary_s is not None:
                    proc = start_worker(url, run_id, shards, canary_s, workdir / f"pacer.{rnd}.{run_id}.log")
                cycle = app.cycle()
                if proc:
                    proc.stdin.write(f"{app.cycle_end(cycle)}\n")
                    proc.stdin.flush()
                app.wait_cycle_done(cycle)
                if proc:
                    proc.wait(timeout=60)
                cycles.append((rnd, name, cycle))
            say(f"round {rnd + 1} done; load {os.getloadavg()[0]:.2f}")
        app.stop()
        report(app, cycles, args.phase_s, variants)
        say(f"pacer logs in {workdir}")
    finally:
        cluster.stop()


def report(app: Application, cycles: list, phase_s: float, variants: dict) -> None:
    p99 = {}
    for rnd, name, cycle in cycles:
        for n, kind in enumerate(("quiet", "busy")):
            start = cycle + n * phase_s + 1  # a second in: the phase's start is a pgbench start
            p99[rnd, name, kind] = app.window(start, cycle + (n + 1) * phase_s)[kind]["p99_ms"]
    rounds = sorted({rnd for rnd, _, _ in cycles})
    print_ratios(p99, rounds, variants, [("quiet", "quiet"), ("busy", "busy")])


if __name__ == "__main__":
    main()
