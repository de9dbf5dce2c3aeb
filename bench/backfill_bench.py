"""Backfill benchmark on a fixed-arrival-rate application: rows/s against the application's p99.

    .venv/bin/python bench/backfill_bench.py --quick [--json FILE]      # small scale, under 10 minutes
    .venv/bin/python bench/backfill_bench.py [--runs 3] [--json FILE]   # full scale (see bench/README.md)
    .venv/bin/python bench/backfill_bench.py --claims [--json FILE]     # section 4: claim rate, many shards
    python bench/backfill_bench.py --plot-from FILE.json                # the PNG (any Python with matplotlib)

Everything runs on a scratch PostgreSQL cluster of its own (`pg_config --bindir`, run as the `postgres` OS
user when we are root, 127.0.0.1 on a free port, pg_stat_statements preloaded), removed at the end.

The application is pgbench (simple-update, `-N`) connected as role `app`, open loop: a FIXED ARRIVAL RATE
(`-R`, `--latency-limit`, per-transaction log), so a hurt application shows up as latency, late and skipped
transactions instead of quietly slowing down. Its load changes: each measurement is one cycle of a quiet
phase (30% of the rate it reaches alone, closed loop) then a busy phase (--busy, 80%). Scenarios, each on the
same freshly packed table (previous column dropped, VACUUM FULL) and each time-boxed to the whole cycle
(passing over the table again when done, so the fast ones see the busy phase too; rows/s is rows written /
the cycle's seconds), except the single UPDATE which runs to its end:

  update          ALTER TABLE ADD COLUMN + one UPDATE of the whole table (the physical limit)
  loop B/Sms      a hand-written keyset loop: UPDATE ... WHERE aid BETWEEN lo AND lo+B-1, sleep S ms
  loop B/Sms xN   the same with N workers sharing one range counter (N = airmigrate's shards)
  airmigrate      bench/migrations/9001 (app_latency_ratio null: full speed), shards as separate processes
  protect X       bench/migrations/9002/9004/9005/9006 (app_latency_ratio 1.1 / 1.25 / 1.5 / 2.0)
  pandas          bench/migrations/9003 (the pandas path, full speed)

Printed and in --json: rows/s, ratio to the single UPDATE, application p50/p99/max per phase and their ratios
to the application alone in the same phase, late (latency > limit) and skipped transactions, seconds at zero
tps, the machine's idle CPU share, the load average; the median of --runs runs; for each protect level the best
loop setting at the same harm (p99 ratio in the worse phase). Also the shard's peak RSS at two table sizes.
Nothing here is a test: bench/README.md reads the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench's own modules, beside this file

from bench_pg import BENCH_DB, Application, Cluster, create_bench_db, say, sql  # noqa: E402
from bench_report import (  # noqa: E402
    baseline_figures, figures, median_of, noise_line, plot, print_start_effect, print_table, start_effect, targets, timelines)
from bench_shards import CHILDREN, MIGRATIONS, ROOT, Shards, migration_column, pacing_summary, prepare_run  # noqa: E402

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs, imported by Airflow's modules
BENCH = ROOT / "bench"

# (name, migration folder, asked app_latency_ratio or None)
AIRMIGRATE = [("airmigrate", "9001_bench_backfill", None),
              ("protect 1.1", "9002_bench_protect_110", 1.1),
              ("protect 1.25", "9004_bench_protect_125", 1.25),
              ("protect 1.5", "9005_bench_protect_150", 1.5),
              ("protect 2.0", "9006_bench_protect_200", 2.0),
              ("pandas", "9003_bench_pandas", None)]
# the hand-written loop's Pareto curve: (batch keys, sleep ms, workers); workers > 1 is the parallel loop, as many
# workers as airmigrate has shards (the fair anchor for full speed: the best of them, 20,000-key batches included,
# since airmigrate at full speed runs its default 0.2 s batches, about that size here)
LOOP_SETTINGS = [(b, s, 1) for b in (1_000, 2_000, 5_000, 10_000, 20_000) for s in (0, 20, 50, 100)] + \
                [(20_000, 0, 2), (10_000, 0, 2), (5_000, 20, 2), (2_000, 50, 2)]
QUICK_LOOP_SETTINGS = [(20_000, 0, 1), (10_000, 0, 1), (5_000, 0, 1), (10_000, 20, 1), (5_000, 20, 1),
                       (2_000, 20, 1), (2_000, 50, 1), (1_000, 100, 1), (20_000, 0, 2), (10_000, 0, 2),
                       (5_000, 20, 2)]


# ------------------------------------------------------------------------------------------- scenarios

def prepare_table(cluster: Cluster, drop: str | None) -> None:
    """Every scenario starts from the same packed table: the previous scenario's column dropped, VACUUM FULL."""
    statements = [f"ALTER TABLE pgbench_accounts DROP COLUMN IF EXISTS {drop}"] if drop else []
    sql(cluster, statements + ["VACUUM FULL ANALYZE pgbench_accounts", "CHECKPOINT"])


def single_update(cluster: Cluster, app: Application, rows: int) -> dict:
    sql(cluster, "ALTER TABLE pgbench_accounts ADD COLUMN u_new bigint")
    cycle = app.cycle()
    start = time.time()
    sql(cluster, "UPDATE pgbench_accounts SET u_new = abalance + aid")
    end = time.time()
    return {"rows": rows, "start": start, "end": end, "cycle": cycle, "column": "u_new"}


class KeyRanges:
    """The ranges a hand-written loop's workers share: the next `batch` keys, from the start again after the
    last one (another pass), so every scenario works through the whole load cycle."""

    def __init__(self, last: int, batch: int):
        self.last, self.batch, self.lo, self.passes, self.lock = last, batch, 1, 1, threading.Lock()

    def next(self) -> tuple[int, int]:
        with self.lock:
            if self.lo > self.last:
                self.lo, self.passes = 1, self.passes + 1
            lo, self.lo = self.lo, self.lo + self.batch
            return lo, lo + self.batch - 1


def keyset_loop(cluster: Cluster, app: Application, batch: int, sleep_ms: int, workers: int = 1) -> dict:
    """The simplest batched backfill a DBA writes by hand: one autocommitted UPDATE per range of `batch` keys,
    then a fixed sleep; nothing recorded. With `workers` > 1, that many connections take the next range from
    one shared counter (the parallel loop). Time-boxed to one load cycle, passing over the table again when it
    reaches the end (the UPDATE always writes, as the bench's migrations do)."""
    import psycopg

    with psycopg.connect(cluster.url(BENCH_DB), autocommit=True) as conn:
        conn.execute("ALTER TABLE pgbench_accounts ADD COLUMN k_new bigint")
        ranges = KeyRanges(conn.execute("SELECT max(aid) FROM pgbench_accounts").fetchone()[0], batch)
    conns = [psycopg.connect(cluster.url(BENCH_DB), autocommit=True) for _ in range(workers)]
    rows = [0] * workers

    def work(n: int, deadline: float) -> None:
        while time.time() < deadline:
            rows[n] += conns[n].execute("UPDATE pgbench_accounts SET k_new = abalance + aid WHERE aid BETWEEN %s "
                                        "AND %s", ranges.next()).rowcount
            if sleep_ms:
                time.sleep(sleep_ms / 1000)

    try:
        cycle = app.cycle()
        start = time.time()
        threads = [threading.Thread(target=work, args=(n, app.cycle_end(cycle))) for n in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        end = time.time()
    finally:
        for c in conns:
            c.close()
    return {"rows": sum(rows), "start": start, "end": end, "cycle": cycle, "column": "k_new", "passes": ranges.passes}



def airmigrate_scenario(cluster: Cluster, app: Application, folder: str, logdir: Path) -> dict:
    url = cluster.url(BENCH_DB)
    run_id, shards = prepare_run(url, MIGRATIONS / folder)
    workers = Shards(url, MIGRATIONS / folder, run_id, shards, logdir)
    cycle = app.cycle()
    workers.go(app.cycle_end(cycle))
    results = workers.results()
    errors = [r["error"] for r in results if r.get("error")]
    return {"rows": sum(r["rows"] for r in results), "start": cycle, "end": max(r["end"] for r in results),
            "cycle": cycle, "column": migration_column(folder), "errors": errors, "run_id": run_id,
            "peak_rss_mb": max(r.get("peak_rss_mb", 0) for r in results),
            "passes": max(r.get("passes", 1) for r in results), "pacing": pacing_summary(cluster, run_id)}



# ------------------------------------------------------------------------------------------- one run

def one_run(cluster: Cluster, args, run_no: int, workdir: Path) -> dict:
    say(f"run {run_no}: pgbench -i -s {args.scale} ...")
    rows = create_bench_db(cluster, args.scale)
    app = Application(cluster, workdir / f"run{run_no}", args.clients, args.latency_limit_ms, args.phase_s)
    app.workdir.mkdir(parents=True, exist_ok=True)
    max_tps = app.max_rate(args.max_rate_s)
    app.rates = {"quiet": max_tps * args.quiet, "busy": max_tps * args.busy}
    say(f"run {run_no}: {rows:,} rows; application alone, closed loop: {max_tps:,.0f} tps; driving it at "
        f"{app.rates['quiet']:,.0f} (quiet) / {app.rates['busy']:,.0f} (busy) tps, {args.phase_s:g} s phases")
    out = {"rows": rows, "max_tps": max_tps, "rates": dict(app.rates), "scenarios": {}}
    app.begin()
    try:
        cycle = app.cycle()
        app.wait_cycle_done(cycle)
        alone = [(cycle, app.cycle_end(cycle))]
        say(f"run {run_no}: application alone: {brief(app.window(*alone[0]))}")
        previous = None
        for n, (name, runner) in enumerate(scenario_plan(args)):
            prepare_table(cluster, previous)
            if n and args.alone_every and n % args.alone_every == 0:  # the machine's other load drifts: measure
                cycle = app.cycle()                                    # the application alone again, often
                app.wait_cycle_done(cycle)
                alone.append((cycle, app.cycle_end(cycle)))
                say(f"run {run_no}: application alone: {brief(app.window(*alone[-1]))}; load {os.getloadavg()[0]:.2f}")
            lsn = sql(cluster, "SELECT pg_current_wal_lsn()", fetch=True)[0][0]
            raw = runner(cluster, app, rows, workdir)
            raw["wal_bytes_per_row"] = sql(cluster, f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')",
                                           fetch=True)[0][0] / max(raw["rows"], 1)
            app.wait_cycle_done(raw["cycle"])
            previous = raw["column"]
            raw["app"] = app.window(raw["start"], min(raw["end"], app.cycle_end(raw["cycle"])) if name != "update"
                                    else raw["end"])
            raw["seconds"] = raw["end"] - raw["start"]
            raw["rows_per_s"] = raw["rows"] / max(raw["seconds"], 1e-9)
            if name != "update":  # second by second: the plot's timelines (beside the pacer's decisions) and
                raw["app_seconds"] = app.per_second(raw["start"], app.cycle_end(raw["cycle"]))  # the start effect
            out["scenarios"][name] = raw
            extra = f" ERRORS {raw['errors']}" if raw.get("errors") else ""
            raw["load"] = os.getloadavg()
            say(f"run {run_no}: {name}: {raw['rows']:,} rows in {raw['seconds']:.1f}s = {raw['rows_per_s']:,.0f} rows/s"
                f" ({raw.get('passes', 1)} pass(es)); app {brief(raw['app'])}; load {raw['load'][0]:.2f}{extra}")
        prepare_table(cluster, previous)
        cycle = app.cycle()  # the application alone again: the baseline is both cycles, so a drift in the
        app.wait_cycle_done(cycle)  # machine's other load over the run weighs on both ends alike
        alone.append((cycle, app.cycle_end(cycle)))
        out["baseline"] = app.window_of(alone)
        out["alone_seconds"] = [app.per_second(start, end) for start, end in alone]
        out["alone_noise"] = alone_noise(app, alone)
        for raw in out["scenarios"].values():
            raw["baseline"] = app.window_of(nearest(alone, raw["start"], raw["end"]))
        say(f"run {run_no}: application alone, after: {brief(app.window(*alone[-1]))}; all {len(alone)} cycles: "
            f"{brief(out['baseline'])}")
    finally:
        app.stop()
    return out


def alone_noise(app: Application, alone: list[tuple[float, float]]) -> dict[str, list[float]]:
    """The yardstick's own wobble: each application-alone cycle's p99 over that of the alone cycles beside it,
    measured as a scenario's baseline is (`nearest`). A scenario's ratio inside this range is the machine's noise,
    not the backfill's harm."""
    out: dict[str, list[float]] = {"quiet": [], "busy": []}
    for n, span in enumerate(alone):
        others = [s for i, s in enumerate(alone) if i != n]
        if not others:
            continue
        mine, theirs = app.window(*span), app.window_of(nearest(others, *span))
        for kind in out:
            if mine[kind]["p99_ms"] and theirs[kind]["p99_ms"]:
                out[kind].append(mine[kind]["p99_ms"] / theirs[kind]["p99_ms"])
    return out


def nearest(alone: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    """The application-alone cycles just before and just after a scenario: its baseline, measured under the same
    drift of the machine's other load (a run of 16 scenarios takes ten minutes; the load moves in that time)."""
    before = [span for span in alone if span[1] <= start + 1]
    after = [span for span in alone if span[0] >= end - 1]
    return [s for s in (before[-1] if before else None, after[0] if after else None) if s] or alone


def scenario_plan(args) -> list:
    plan = [("update", lambda c, a, rows, w: single_update(c, a, rows))]
    for batch, sleep_ms, workers in (QUICK_LOOP_SETTINGS if args.quick else LOOP_SETTINGS):
        plan.append((f"loop {batch}/{sleep_ms}ms" + (f" x{workers}" if workers > 1 else ""),
                     lambda c, a, rows, w, b=batch, s=sleep_ms, n=workers: keyset_loop(c, a, b, s, n)))
    for name, folder, _ratio in AIRMIGRATE:
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        plan.append((name, lambda c, a, rows, w, f=folder: airmigrate_scenario(c, a, f, w / "logs")))
    if args.only:
        plan = [p for p in plan if p[0] == "update" or any(o in p[0] for o in args.only.split(","))]
    return plan


def fmt_load(load) -> str:
    return " ".join(f"{v:.2f}" for v in load)


def load_note() -> str:
    """The machine's load average, with a warning over 1 (the bench's ratios then measure other work too)."""
    load = os.getloadavg()
    return fmt_load(load) + (" (WARNING: over 1, other work shares the cores)" if load[0] > 1 else "")


def brief(window: dict) -> str:
    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)
    q, b = window["quiet"], window["busy"]
    return (f"quiet p99 {f(q['p99_ms'])} ms, busy p99 {f(b['p99_ms'])} ms, late {q['late'] + b['late']}, "
            f"skipped {q['skipped'] + b['skipped']}, zero-tps {window['zero_tps_seconds']} s, idle cpu "
            f"{f(window['idle_cpu'], '{:.0%}')}")


# ------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale (3M rows, 10 s phases, 1 run): < 10 min")
    parser.add_argument("--runs", type=int, help="runs; the median is shown (default 3, --quick 1)")
    parser.add_argument("--scale", type=int, help="pgbench scale, 100,000 rows each (default 100, --quick 30)")
    parser.add_argument("--phase-s", type=float, help="seconds per load phase (default 30, --quick 10)")
    parser.add_argument("--quiet", type=float, default=0.3, help="quiet phase rate, share of the max (0.3)")
    parser.add_argument("--busy", type=float, default=0.8, help="busy phase rate, share of the max (0.8)")
    parser.add_argument("--clients", type=int, default=8, help="pgbench clients (8)")
    parser.add_argument("--latency-limit-ms", type=float, default=100, help="pgbench --latency-limit (100 ms)")
    parser.add_argument("--alone-every", type=int, default=4, help="measure the application alone again after "
                        "every N scenarios (4); each scenario's ratios are against the cycles just before and after it")
    parser.add_argument("--max-rate-s", type=float, help="closed-loop run measuring the max rate (10 s, --quick 5)")
    parser.add_argument("--only", help="comma-separated scenario name parts besides update, e.g. 'protect,loop'")
    parser.add_argument("--rss", help="table sizes for the peak RSS check, e.g. 1000000,10000000 "
                                      "(default: that in full mode, 100000,1000000 with --quick; 'none' skips)")
    parser.add_argument("--rss-only", action="store_true", help="only the peak RSS check (--rss sizes)")
    parser.add_argument("--claims", action="store_true", help="only section 4's claim-rate check")
    parser.add_argument("--claim-shards", default="1,4,16,32", help="shard counts for --claims")
    parser.add_argument("--data-parent", help="directory for the scratch cluster's files (default: the temp dir); "
                        "/dev/shm when other work shares the disk (no fsync wait then: CPU and row locks only)")
    parser.add_argument("--json", type=Path, help="write every scenario's figures here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the shard logs (pacer decisions, batches)")
    parser.add_argument("--plot-from", type=Path, help="only draw the PNG from a --json file")
    parser.add_argument("--shard-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shard_worker:
        from bench_shards import shard_worker

        return shard_worker(json.loads(args.shard_worker))
    if args.plot_from:  # the PNG again, and the targets and table as the run printed them
        result = json.loads(args.plot_from.read_text())
        plot(result, args.plot_from.with_suffix(".png"))
        print("targets:\n  " + "\n  ".join(targets(result["table"], result["baseline"])))
        print(noise_line(result["runs"]))
        print_table(result["table"], result["baseline"], result["meta"])
        print_start_effect(result.get("start_effect") or {})
        return
    args.runs = args.runs or (1 if args.quick else 3)
    args.scale = args.scale or (30 if args.quick else 100)
    args.phase_s = args.phase_s or (10 if args.quick else 30)
    args.max_rate_s = args.max_rate_s or (5 if args.quick else 10)
    rss_sizes = ([] if args.rss == "none" else [int(s) for s in args.rss.split(",")] if args.rss
                 else [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000])
    t0 = time.time()
    cluster = Cluster(args.data_parent)
    workdir = Path(tempfile.mkdtemp(prefix="airmigrate-bench-"))
    (workdir / "logs").mkdir()
    previous = signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        cluster.start()
        say(f"scratch PostgreSQL {cluster.bindir} at 127.0.0.1:{cluster.port} (pg_stat_statements preloaded); "
            f"load {load_note()}")
        if args.claims:
            from bench_claims import claims_check

            result = {"claims": claims_check(cluster, [int(n) for n in args.claim_shards.split(",")],
                                             10 if args.quick else 20, workdir),
                      "load": os.getloadavg()}
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
            return
        if args.rss_only:
            from bench_claims import rss_check

            result = {"rss": rss_check(cluster, rss_sizes, workdir, ("9001_bench_backfill", "9003_bench_pandas"))}
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
            return
        from bench_claims import rss_check

        load_before = os.getloadavg()
        runs = [one_run(cluster, args, n + 1, workdir) for n in range(args.runs)]
        rss = rss_check(cluster, rss_sizes, workdir, ("9001_bench_backfill",) if args.quick
                        else ("9001_bench_backfill", "9003_bench_pandas")) if rss_sizes else {}
        asked = {name: ratio for name, _folder, ratio in AIRMIGRATE if ratio}
        table = median_of([figures(r, asked) for r in runs])
        base = baseline_figures(runs)
        meta = {"rows": runs[0]["rows"], "rates": runs[0]["rates"], "max_tps": runs[0]["max_tps"],
                "phase_s": args.phase_s, "runs": args.runs, "quick": args.quick, "scale": args.scale,
                "clients": args.clients, "latency_limit_ms": args.latency_limit_ms,
                "load_before": load_before, "load_after": os.getloadavg(), "seconds": time.time() - t0,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "server": "PostgreSQL "
                + sql(cluster, "SHOW server_version", "postgres", fetch=True)[0][0]}
        result = {"meta": meta, "baseline": base, "table": table, "scenarios": list(table.values()),
                  "rss": rss, "runs": [{k: v for k, v in r.items() if k != "scenarios"} for r in runs],
                  "targets": targets(table, base), "timelines": timelines(runs[0], asked),
                  "start_effect": start_effect(runs)}
        out_dir = BENCH / "results"
        out_dir.mkdir(exist_ok=True)
        (out_dir / "last.json").write_text(json.dumps(result, indent=2, default=str))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str))
        plot(result, (args.json or out_dir / "last.json").with_suffix(".png"))
        for folder, sizes in rss.items():
            mbs = [f"{sizes[s]['peak_rss_mb']:.0f} MB at {s:,} rows" for s in sorted(sizes)]
            print(f"peak RSS per shard, {folder}: {', '.join(mbs)}")
        print("targets:\n  " + "\n  ".join(result["targets"]))
        print(noise_line(runs))
        print(f"took {meta['seconds']:.0f}s; load average (1, 5, 15 min) {fmt_load(meta['load_before'])} at the start, "
              f"{fmt_load(meta['load_after'])} at the end ({meta['date']})")
        if max(meta["load_before"][0], meta["load_after"][0]) > 1:
            print("WARNING: load average over 1: other work shared the two cores; the ratios measure it too")
        print_table(table, base, meta)
        print_start_effect(result["start_effect"])
    except KeyboardInterrupt:
        print("interrupted: stopping the scratch cluster", file=sys.stderr)
        raise SystemExit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for child in CHILDREN:
            if child.poll() is None:
                child.kill()
        cluster.stop()
        if args.keep_logs:
            print(f"logs kept in {workdir / 'logs'}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
