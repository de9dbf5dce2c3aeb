"""Which signal tracks what the application feels? The pacer's candidate readings against the application's p99.

    .venv/bin/python bench/signal_check.py [--scale 10] [--phase-s 10] [--reps 2] [--data-parent /dev/shm]

The application is backfill_bench's (pgbench -N as role `app` at a fixed arrival rate, a quiet then a busy phase
per cycle). Each cycle runs one hand-written keyset loop setting (or nothing: the application alone), while
separate processes (no shared GIL) time what the pacer could read:

  trip    SELECT 1 from our own client, 100 a second (the pacer's canary today)
  tx      BEGIN; SELECT 1 x3; COMMIT: as many round trips as the application's transaction (pgbench -N has five)
  write   BEGIN; UPDATE one row of a table of our own; SELECT it; COMMIT: round trips plus a WAL flush
  ages    the ages of the application's transactions in flight, pg_stat_activity ten times a second (p95)
  canary  SELECT txid_current(), 100 a second: the pacer's committing canary as it is now

Then the canary's figure as the pacer forms it, with several estimators (`--estimators`): a baseline over a
PROBE_S window of the application alone, the figure over a decision's pool (2 s, or 4 s), 1 + the excess over the
p95 age alone; printed per setting and phase as the median and the 10th-90th percentiles over every (baseline
window, figure window) pair: a good estimator reads ~1.0 with a narrow spread alone and follows the
application's p99 ratio across the settings.

Printed per cycle and phase: the application's p99 ratio to the application alone in the same phase, and each
reading's ratio to its own value then (for `trip`, also the pacer's formula: 1 + the extra p99 round trip / the
p95 age alone). A reading is good when its ratio follows the application's across the settings. Nothing here is a
test: it is how the pacer's signal was chosen (bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pg import BENCH_DB, Application, Cluster, create_bench_db, say, sql  # noqa: E402

SETTINGS = [None, (1_000, 100, 1), (2_000, 50, 1), (5_000, 20, 1), (10_000, 0, 1), (10_000, 0, 2)]
PERIOD = {"trip": 0.01, "tx": 0.02, "write": 0.02, "ages": 0.1, "canary": 0.01}


# ------------------------------------------------------------------------------------------- readers (processes)

def reader(kind: str, url: str, out: str) -> None:
    """Time `kind` until killed; one line per timing: epoch and ms (ages: one line per transaction seen)."""
    import psycopg

    conn = psycopg.connect(url, autocommit=True, application_name=f"airmigrate-check-{kind}")
    with open(out, "w", buffering=1) as f:
        next_at = time.perf_counter()
        while True:
            started = time.perf_counter()
            if kind == "ages":
                ages = conn.execute("SELECT coalesce(array_agg(1000 * extract(epoch FROM clock_timestamp() - "
                                    "xact_start)), '{}') FROM pg_stat_activity WHERE usename = 'app' AND xact_start "
                                    "IS NOT NULL AND state IN ('active', 'idle in transaction')").fetchone()[0]
                f.write("".join(f"{time.time():.3f} {float(a):.3f}\n" for a in ages))
            else:
                run_once(conn, kind)
                f.write(f"{time.time():.3f} {(time.perf_counter() - started) * 1000:.3f}\n")
            next_at = max(next_at + PERIOD[kind], time.perf_counter())
            time.sleep(max(0.0, next_at - time.perf_counter()))


def run_once(conn, kind: str) -> None:
    if kind == "trip":
        conn.execute("SELECT 1").fetchone()
        return
    if kind == "canary":
        conn.execute("SELECT txid_current()").fetchone()
        return
    conn.execute("BEGIN")
    if kind == "tx":
        for _ in range(3):
            conn.execute("SELECT 1").fetchone()
    else:
        key = random.randint(1, 100)
        conn.execute("UPDATE check_canary SET v = v + 1 WHERE id = %s", (key,))
        conn.execute("SELECT v FROM check_canary WHERE id = %s", (key,)).fetchone()
    conn.execute("COMMIT")


def read_timings(path: Path, start: float, end: float) -> list[float]:
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and start <= float(parts[0]) <= end:
            out.append(float(parts[1]))
    return out


def median(values: list[float]) -> float | None:
    """The upper median; None when no cycle gave the figure (the ratios then print n/a)."""
    return sorted(values)[len(values) // 2] if values else None


def p(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# ------------------------------------------------------------------------------------------- the loop

def loop(url: str, setting: tuple, deadline: float, last: int) -> None:
    import psycopg

    batch, sleep_ms, workers = setting
    lock, state = threading.Lock(), {"lo": 1}

    def next_range():
        with lock:
            if state["lo"] > last:
                state["lo"] = 1
            lo = state["lo"]
            state["lo"] += batch
            return lo, lo + batch - 1

    def work():
        with psycopg.connect(url, autocommit=True, application_name="airmigrate-check-loop") as conn:
            while time.time() < deadline:
                conn.execute("UPDATE pgbench_accounts SET k_new = abalance + aid WHERE aid BETWEEN %s AND %s",
                             next_range())
                if sleep_ms:
                    time.sleep(sleep_ms / 1000)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ------------------------------------------------------------------------------------------- the check

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--phase-s", type=float, default=10)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--busy", type=float, default=0.6, help="busy phase rate, share of the max (0.6)")
    parser.add_argument("--data-parent")
    parser.add_argument("--reader", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader:
        reader(*args.reader)
        return
    cluster = Cluster(args.data_parent).start()
    workdir = Path(tempfile.mkdtemp(prefix="airmigrate-signal-check-"))
    procs = []
    try:
        rows = create_bench_db(cluster, args.scale)
        sql(cluster, ["CREATE TABLE check_canary (id int PRIMARY KEY, v bigint NOT NULL DEFAULT 0)",
                      "INSERT INTO check_canary SELECT g FROM generate_series(1, 100) g",
                      "ALTER TABLE pgbench_accounts ADD COLUMN k_new bigint"])
        app = Application(cluster, workdir, 8, 100, args.phase_s)
        max_tps = app.max_rate(5)
        app.rates = {"quiet": max_tps * 0.3, "busy": max_tps * args.busy}
        say(f"{rows:,} rows; application alone {max_tps:,.0f} tps; quiet {app.rates['quiet']:,.0f} busy "
            f"{app.rates['busy']:,.0f}; load {os.getloadavg()[0]:.2f}")
        url = cluster.url(BENCH_DB)
        for kind in PERIOD:
            procs.append(subprocess.Popen([sys.executable, __file__, "--reader", kind, url, str(workdir / kind)]))
        app.begin()
        cycles = []
        for rep in range(args.reps):
            for setting in SETTINGS:
                cycle = app.cycle()
                if setting:
                    loop(url, setting, app.cycle_end(cycle), rows)
                app.wait_cycle_done(cycle)
                cycles.append((setting, cycle))
                say(f"rep {rep + 1}: {setting or 'alone'} done; load {os.getloadavg()[0]:.2f}")
        app.stop()
        report(app, workdir, cycles, args.phase_s)
    finally:
        for proc in procs:
            proc.kill()
        cluster.stop()


def phase_figures(app: Application, workdir: Path, start: float, end: float, kind: str) -> dict:
    window = app.window(start, end)[kind]
    out = {"app p99": window["p99_ms"], "app p50": window["p50_ms"]}
    for reading, share in (("trip", 0.99), ("tx", 0.99), ("write", 0.99), ("ages", 0.95)):
        out[reading] = p(read_timings(workdir / reading, start, end), share)
    return out


def report(app: Application, workdir: Path, cycles: list, phase_s: float) -> None:
    rows = []
    for setting, cycle in cycles:
        for n, kind in enumerate(("quiet", "busy")):
            start = cycle + n * phase_s + 1  # a second in: the phase's start is a pgbench start
            rows.append((setting, kind, phase_figures(app, workdir, start, cycle + (n + 1) * phase_s, kind)))
    alone = {kind: [f for s, k, f in rows if s is None and k == kind] for kind in ("quiet", "busy")}
    base = {kind: {key: median([f[key] for f in alone[kind] if f[key]]) for key in alone[kind][0]}
            for kind in alone}
    print(f"{'setting':18} {'phase':5} | {'app p99 ms':>10} {'ratio':>6} | {'trip':>6} {'formula':>7} | "
          f"{'tx':>6} | {'write':>6} | {'ages':>6}")
    for setting, kind, f in rows:
        b = base[kind]

        def ratio(key):
            return f"{f[key] / b[key]:6.2f}" if f[key] and b[key] else "   n/a"

        formula = 1 + max(0.0, f["trip"] - b["trip"]) / b["ages"] if f["trip"] and b["trip"] and b["ages"] else None
        name = "alone" if setting is None else f"loop {setting[0]}/{setting[1]}ms x{setting[2]}"
        print(f"{name:18} {kind:5} | {f['app p99'] or 0:10.2f} {ratio('app p99')} | {ratio('trip')} "
              f"{formula or 0:7.2f} | {ratio('tx')} | {ratio('write')} | {ratio('ages')}")
    print("alone:", {kind: {k: round(v, 3) for k, v in b.items()} for kind, b in base.items()})
    report_estimators(workdir, cycles, phase_s, base)


# ------------------------------------------------------------------------------------------- the canary's estimators

PROBE_S = 1.0  # the pacer's probe_seconds: its baseline's window


def top_mean(values: list[float], share: float) -> float | None:
    """The mean of the values above the `share` quantile (the tail's mean: every tail trip counts, not one)."""
    if not values:
        return None
    ordered = sorted(values)
    tail = ordered[min(len(ordered) - 1, int(share * len(ordered))):]
    return sum(tail) / len(tail)


ESTIMATORS = {  # name: (the figure's window in seconds, the statistic)
    "p99 2s": (2, lambda v: p(v, 0.99)),
    "p95 2s": (2, lambda v: p(v, 0.95)),
    "p90 2s": (2, lambda v: p(v, 0.90)),
    "top10% 2s": (2, lambda v: top_mean(v, 0.90)),
    "p95 4s": (4, lambda v: p(v, 0.95)),
    "top10% 4s": (4, lambda v: top_mean(v, 0.90)),
}


def windows(trips: list[tuple[float, float]], start: float, end: float, length: float, step: float) -> list:
    """The canary's trips (ms) in each window of `length` seconds from `start`, every `step`, inside the span."""
    out, at = [], start
    while at + length <= end:
        out.append([ms for epoch, ms in trips if at <= epoch < at + length])
        at += step
    return out


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{p(values, 0.5):.2f} [{p(values, 0.1):.2f}-{p(values, 0.9):.2f}]"


def report_estimators(workdir: Path, cycles: list, phase_s: float, base: dict) -> None:
    trips = [(float(a), float(b)) for a, b in (line.split() for line in
                                              (workdir / "canary").read_text().splitlines() if len(line.split()) == 2)]
    phases = []  # (setting, kind, start, end)
    for setting, cycle in cycles:
        for n, kind in enumerate(("quiet", "busy")):
            phases.append((setting, kind, cycle + n * phase_s + 1, cycle + (n + 1) * phase_s))
    print(f"\nthe canary's figure: 1 + (estimator now - estimator over {PROBE_S:g} s alone) / p95 age alone; "
          "median [p10-p90] over window pairs")
    print(f"{'setting':18} {'phase':5} | " + " | ".join(f"{name:>20}" for name in ESTIMATORS))
    for name_setting in dict.fromkeys(s for s, _, _, _ in phases):
        for kind in ("quiet", "busy"):
            spans = [(a, b) for s, k, a, b in phases if s == name_setting and k == kind]
            alone = [(a, b) for s, k, a, b in phases if s is None and k == kind]
            cells = []
            for length, stat in ESTIMATORS.values():
                bases = [stat(w) for a, b in alone for w in windows(trips, a, b, PROBE_S, PROBE_S) if w]
                nows = [stat(w) for a, b in spans for w in windows(trips, a, b, length, 1.0) if w]
                scale = base[kind]["ages"]
                ratios = [1 + max(0.0, now - b0) / scale for b0 in bases for now in nows] if scale else []
                cells.append(spread(ratios))
            name = "alone" if name_setting is None else f"loop {name_setting[0]}/{name_setting[1]}ms x{name_setting[2]}"
            print(f"{name:18} {kind:5} | " + " | ".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()
