"""Where the pandas path's time goes, against a single UPDATE of the same table measured in the same run.

    nice -n 19 ionice -c3 .venv/bin/python bench/pandas_profile.py [--rows 1000000] [--shards 2] [--batch N] [--airflow]

A scratch database (h20p_profile_<pid>) on the local PostgreSQL (127.0.0.1:5432 unless --url names another
server's postgres database) gets a pgbench-like table of --rows accounts (fillfactor 100, autovacuum off, as
`pgbench -i` makes it). Then, on the same packed table:

  1. the baseline: ALTER TABLE ADD COLUMN u_new bigint; one UPDATE pgbench_accounts SET u_new = abalance + aid;
  2. the pandas path of bench/migrations/9003_bench_pandas (d_new = abalance + aid in pandas) with --shards
     shards as separate processes, through the package's own functions (preflight, schema_change,
     start_backfill, run_shard), released together; each shard times the steps of
     airmigrate.stages.backfill.transform where they run (fetch, DataFrame, transform, write: COPY + UPDATE) and the
     rest of its batches (claim, state rows, commit, next range) as the shard's time outside them.

Printed: the load average at start and end (ratios are only comparable within one run: the machine is shared),
rows/s of both, their ratio, and the mean milliseconds per batch of each step. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
MIGRATION = ROOT / "bench" / "migrations" / "9003_bench_pandas"
STEPS = ("fetch_batch", "build_frame", "transform", "write_batch")  # write_batch: the engine's COPY and UPDATE


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def scratch_url(url: str, dbname: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + dbname


def sql(url: str, statements, fetch: bool = False):
    """Autocommit statements on `url` (the package's own connection); the last one's rows when `fetch`."""
    from airmigrate.db import Target, connect

    with connect(Target.from_url(url), autocommit=True) as conn:
        rows = None
        for statement in [statements] if isinstance(statements, str) else statements:
            cur = conn.execute(statement)
            rows = cur.fetchall() if fetch and cur.description else rows
        return rows


def make_table(url: str, rows: int) -> None:
    """pgbench_accounts as `pgbench -i` makes it (abalance varied, so the transform has something to add)."""
    sql(url, ["CREATE TABLE pgbench_accounts (aid integer NOT NULL, bid integer, abalance integer, "
              "filler character(84)) WITH (fillfactor = 100, autovacuum_enabled = off)",
              "INSERT INTO pgbench_accounts SELECT a, (a - 1) / 100000 + 1, "
              f"((a::bigint * 7919) % 10000 - 5000)::int, '' "
              f"FROM generate_series(1, {int(rows)}) a",
              "ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)", "VACUUM ANALYZE pgbench_accounts",
              "CHECKPOINT"])


def repack(url: str, drop: str) -> None:
    sql(url, [f"ALTER TABLE pgbench_accounts DROP COLUMN IF EXISTS {drop}", "VACUUM FULL ANALYZE pgbench_accounts",
              "CHECKPOINT"])


def single_update(url: str) -> tuple[float, float | None]:
    """Seconds of the baseline, one UPDATE of the whole table into a new column, and its server CPU seconds."""
    from airmigrate.db import Target, connect

    sql(url, "ALTER TABLE pgbench_accounts ADD COLUMN u_new bigint")
    with connect(Target.from_url(url), autocommit=True) as conn:
        cpu, start = backend_cpu(conn), time.perf_counter()
        conn.execute("UPDATE pgbench_accounts SET u_new = abalance + aid")
        seconds = time.perf_counter() - start
        return seconds, (backend_cpu(conn) - cpu) if cpu is not None else None


def backend_cpu(conn) -> float | None:
    """CPU seconds the connection's server process has used (user + system), when the server runs on this
    machine and /proc shows it; None otherwise. CPU per row holds still when the machine's load moves."""
    try:
        fields = Path(f"/proc/{conn.info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, AttributeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------- one shard

class Clock:
    """Per step: wall seconds, the shard's own CPU seconds and its server process's CPU seconds."""

    def __init__(self):
        self.wall, self.client, self.server = {}, {}, {}
        self.server_seen: list[float] = []  # the server CPU at each step's start and end: the span of the batches

    def timed(self, name: str, function):
        def wrapper(*args, **kwargs):
            conn = args[0] if args and hasattr(args[0], "info") else None
            server = backend_cpu(conn) if conn is not None else None
            wall, client = time.perf_counter(), time.thread_time()  # the step's thread only
            try:
                return function(*args, **kwargs)
            finally:
                self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
                self.client[name] = self.client.get(name, 0.0) + time.thread_time() - client
                if server is not None:
                    end = backend_cpu(conn)
                    self.server[name] = self.server.get(name, 0.0) + end - server
                    self.server_seen[:] = [self.server_seen[0] if self.server_seen else server, end]
        return wrapper


def fixed_batches(folder: Path, batch: int, workdir: Path) -> Path:
    """A copy of the migration with a fixed batch size (adaptive off): per-row figures without the sizer's
    answer to the machine's load (it shrinks batches when they take longer, and the bookkeeping's share grows)."""
    import yaml

    copy = workdir / folder.name
    shutil.copytree(folder, copy)
    spec = yaml.safe_load((copy / "migration.yaml").read_text())
    spec["batch_size"], spec["backfill"]["adaptive"] = batch, False
    (copy / "migration.yaml").write_text(yaml.safe_dump(spec))
    return copy


def shard_process(folder: Path, url: str, run_id: int, shard: int, shards: int, go, results,
                  with_airflow: bool = False) -> None:
    """A child: one shard of the run, its steps timed, released by `go`; puts its figures on `results`."""
    from airmigrate.db import Target
    from airmigrate.spec import load_migration
    from airmigrate.stages import backfill
    from airmigrate.stages.backfill import transform as steps

    clock, spec_transform = Clock(), backfill.load_transform
    for name in STEPS[:2] + STEPS[3:]:
        setattr(steps, name, clock.timed(name, getattr(steps, name)))
    backfill.load_transform = lambda path: clock.timed("transform", spec_transform(path))
    target, migration = Target.from_url(url), load_migration(folder)
    import pandas  # noqa: F401  (imported before the clock starts, as a long-running worker has it)
    if with_airflow:  # the heap of a shard that runs as an Airflow task: what a full garbage collection walks
        import airflow.sdk  # noqa: F401

    go.wait()
    start, cpu = time.perf_counter(), time.process_time()
    result = backfill.run_shard(target, migration, run_id, shard, shards=shards)
    seconds = time.perf_counter() - start
    server_span = clock.server_seen[1] - clock.server_seen[0] if clock.server_seen else None
    results.put({"shard": shard, "rows": result["rows"], "batches": result["batches"],
                 "start": time.time() - seconds, "end": time.time(), "seconds": seconds,
                 "client_cpu": time.process_time() - cpu, "server_span": server_span,
                 "wall": clock.wall, "client": clock.client, "server": clock.server})


def pandas_path(folder: Path, url: str, shards: int, with_airflow: bool = False) -> dict:
    """The migration's run opened as the DAG opens it, then its shards as processes released together."""
    from airmigrate.db import Target
    from airmigrate.spec import load_migration
    from airmigrate.stages import backfill, preflight, schema_change

    target, migration = Target.from_url(url), load_migration(folder)
    run_id = preflight.preflight(target, migration)["run_id"]
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id)
    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    procs = [context.Process(target=shard_process, args=(folder, url, run_id, n, shards, go, results, with_airflow))
             for n in range(shards)]
    for proc in procs:
        proc.start()
    time.sleep(3)  # the children import airmigrate and pandas before the clock starts
    go.set()
    out = [results.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join()
    return {"rows": sum(r["rows"] for r in out), "batches": sum(r["batches"] for r in out),
            "wall": max(r["end"] for r in out) - min(r["start"] for r in out), "shards": out}


def report(rows: int, update: tuple[float, float | None], pandas: dict) -> None:
    (update_s, update_cpu), shards = update, pandas["shards"]
    update_rate, pandas_rate = rows / update_s, pandas["rows"] / pandas["wall"]
    say(f"single UPDATE: {rows:,} rows in {update_s:.2f}s = {update_rate:,.0f} rows/s"
        + (f", server CPU {update_cpu / rows * 1e6:.2f} us/row" if update_cpu is not None else ""))
    say(f"pandas path:   {pandas['rows']:,} rows in {pandas['wall']:.2f}s = {pandas_rate:,.0f} rows/s with "
        f"{len(shards)} shard(s), {pandas['batches']} batches "
        f"(mean {pandas['rows'] / max(pandas['batches'], 1):,.0f} rows)")
    say(f"ratio pandas / UPDATE, rows/s: {pandas_rate / update_rate:.2f}x")
    batches, per_row = max(pandas["batches"], 1), 1e6 / max(pandas["rows"], 1)
    total = {"wall": sum(r["seconds"] for r in shards), "client": sum(r["client_cpu"] for r in shards),
             "server": sum(r["server_span"] or 0.0 for r in shards)}
    figures = {name: {kind: sum(r[kind].get(name, 0.0) for r in shards) for kind in total} for name in STEPS}
    figures["rest (claim, state rows, commit, next range)"] = {
        kind: total[kind] - sum(f[kind] for f in figures.values()) for kind in total}
    print(f"{'step':46} {'wall ms/batch':>13} {'share':>6} {'client CPU us/row':>18} {'server CPU us/row':>18}")
    for name, f in [*figures.items(), ("shard total", total)]:
        print(f"{name:46} {f['wall'] / batches * 1000:13.1f} {f['wall'] / total['wall']:6.0%} "
              f"{f['client'] * per_row:18.2f} {f['server'] * per_row:18.2f}")
    if update_cpu is not None and total["server"]:
        pandas_cpu = (total["client"] + total["server"]) * per_row
        say(f"CPU per row: pandas path {pandas_cpu:.2f} us (client + server) against the UPDATE's "
            f"{update_cpu / rows * 1e6:.2f} us: ratio by CPU {update_cpu / rows * 1e6 / pandas_cpu:.2f}x "
            "(what rows/s tends to when both share busy CPUs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=2, help="as bench/migrations/9003 runs (default 2)")
    parser.add_argument("--batch", type=int, help="a fixed batch size (default: the migration's, adaptive)")
    parser.add_argument("--airflow", action="store_true",
                        help="import Airflow in the shards first, as a shard running as an Airflow task has it")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a server's maintenance database; the scratch database is made beside it")
    args = parser.parse_args()
    say(f"load average at start: {os.getloadavg()}")
    dbname = f"h20p_profile_{os.getpid()}"
    url = scratch_url(args.url, dbname)
    sql(args.url, f"CREATE DATABASE {dbname}")
    try:
        make_table(url, args.rows)
        update = single_update(url)
        repack(url, "u_new")
        with tempfile.TemporaryDirectory(prefix="h20p_") as workdir:
            folder = fixed_batches(MIGRATION, args.batch, Path(workdir)) if args.batch else MIGRATION
            report(args.rows, update, pandas_path(folder, url, args.shards, args.airflow))
    finally:
        sql(args.url, f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        say(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
