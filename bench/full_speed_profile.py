"""Full speed against the hand-written parallel loop, by CPU per row: what each row costs the client and the server.

    nice -n 19 .venv/bin/python bench/full_speed_profile.py [--rows 1000000] [--batch 10000] [--workers 2]

On a scratch database beside the local PostgreSQL's (as bench/pandas_profile.py makes it: a pgbench-like table,
packed again before each part), in one run:

  1. the single UPDATE of the whole table into a new column (the physical limit);
  2. the parallel hand loop: --workers connections taking the next --batch keys from one shared counter, one
     autocommitted ``UPDATE ... WHERE aid BETWEEN lo AND hi`` each, nothing recorded;
  3. airmigrate at full speed: bench/migrations/9001_bench_backfill with --workers shards and the same fixed batch
     size, as separate processes, through the package's own functions; each shard times its batches' claim
     (claim, the UPDATE, its state rows, commit) and the making of the next range (cursor, index walk) where they
     run, and the rest of its loop.

Printed: rows/s and the CPU per row (the client's and the server processes', from /proc) of each, and their
ratios. rows/s moves with whatever else runs on the machine; CPU per row holds still, so its ratio is what rows/s
tends to when the cores are busy (the bench's case). The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from pandas_profile import ROOT, Clock, backend_cpu, make_table, repack, say, scratch_url, single_update, sql

MIGRATION = ROOT / "bench" / "migrations" / "9001_bench_backfill"
STEPS = ("claim_and_run", "create_next_batch")


def hand_loop(url: str, rows: int, batch: int, workers: int) -> dict:
    """The parallel loop of bench/backfill_bench.py, once over the table, each worker's server CPU measured."""
    from airmigrate.db import Target, connect

    sql(url, "ALTER TABLE pgbench_accounts ADD COLUMN k_new bigint")
    conns = [connect(Target.from_url(url), autocommit=True) for _ in range(workers)]
    lock, position, done = threading.Lock(), [1], [0] * workers

    def work(n: int) -> None:
        while True:
            with lock:
                lo = position[0]
                position[0] += batch
            if lo > rows:
                return
            done[n] += conns[n].execute("UPDATE pgbench_accounts SET k_new = abalance + aid WHERE aid BETWEEN %s "
                                        "AND %s", (lo, lo + batch - 1)).rowcount

    try:
        server, client = [backend_cpu(c) for c in conns], time.process_time()
        start = time.perf_counter()
        threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        server_cpu = sum(backend_cpu(c) - s for c, s in zip(conns, server)) if None not in server else None
        return {"rows": sum(done), "seconds": seconds, "client": time.process_time() - client, "server": server_cpu}
    finally:
        for conn in conns:
            conn.close()


def shard_process(folder: Path, url: str, run_id: int, shard: int, shards: int, go, results) -> None:
    """A child: one shard at full speed, its claims and range-making timed, released by `go`."""
    from airmigrate.db import Target
    from airmigrate.spec import load_migration
    from airmigrate.stages import backfill

    clock = Clock()
    for name in STEPS:
        setattr(backfill, name, clock.timed(name, getattr(backfill, name)))
    target, migration = Target.from_url(url), load_migration(folder)
    go.wait()
    start, cpu = time.perf_counter(), time.process_time()
    result = backfill.run_shard(target, migration, run_id, shard, shards=shards)
    seconds = time.perf_counter() - start
    results.put({"rows": result["rows"], "batches": result["batches"], "seconds": seconds,
                 "start": time.time() - seconds, "end": time.time(), "client_cpu": time.process_time() - cpu,
                 "wall": clock.wall, "client": clock.client, "server": clock.server})


def airmigrate_full_speed(folder: Path, url: str, shards: int) -> dict:
    """The run opened as the DAG opens it (preflight, schema change, cursor), then its shards released together."""
    from airmigrate.db import Target
    from airmigrate.spec import load_migration
    from airmigrate.stages import backfill, preflight, schema_change

    target, migration = Target.from_url(url), load_migration(folder)
    run_id = preflight.preflight(target, migration)["run_id"]
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id)
    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    procs = [context.Process(target=shard_process, args=(folder, url, run_id, n, shards, go, results))
             for n in range(shards)]
    for proc in procs:
        proc.start()
    time.sleep(3)  # the children import airmigrate before the clock starts
    go.set()
    out = [results.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join()
    return {"rows": sum(r["rows"] for r in out), "batches": sum(r["batches"] for r in out),
            "seconds": max(r["end"] for r in out) - min(r["start"] for r in out), "shards": out}


def fixed_size(workdir: Path, batch: int, shards: int) -> Path:
    """9001 with a fixed batch size (adaptive off) and `shards` shards: the loop's batches, row for row."""
    import yaml

    copy = workdir / MIGRATION.name
    shutil.copytree(MIGRATION, copy)
    spec = yaml.safe_load((copy / "migration.yaml").read_text())
    spec["batch_size"], spec["shards"], spec["backfill"]["adaptive"] = batch, shards, False
    (copy / "migration.yaml").write_text(yaml.safe_dump(spec))
    return copy


def report(rows: int, update: tuple[float, float | None], loop: dict, ours: dict) -> None:
    update_s, update_cpu = update
    line = "{:34} {:>10,.0f} rows/s {:>6.2f}x   client {:>5.2f} + server {:>5.2f} = {:>5.2f} us/row"
    per_row = 1e6 / rows
    print(f"{rows:,} rows; batches of {ours['rows'] // max(ours['batches'], 1):,} rows")
    print(line.format("single UPDATE", rows / update_s, 1.0, 0.0, (update_cpu or 0) * per_row,
                      (update_cpu or 0) * per_row))
    loop_rate, loop_cpu = loop["rows"] / loop["seconds"], (loop["client"] + (loop["server"] or 0)) / loop["rows"] * 1e6
    print(line.format("hand loop (parallel)", loop_rate, loop_rate * update_s / rows, loop["client"] * per_row,
                      (loop["server"] or 0) * per_row, loop_cpu))
    shards = ours["shards"]
    client = sum(r["client_cpu"] for r in shards)
    server = sum(sum(r["server"].values()) for r in shards)
    our_rate, our_cpu = ours["rows"] / ours["seconds"], (client + server) / ours["rows"] * 1e6
    print(line.format("airmigrate full speed", our_rate, our_rate * update_s / rows, client * per_row,
                      server * per_row, our_cpu))
    for name in STEPS:
        c = sum(r["client"].get(name, 0.0) for r in shards) * per_row
        s = sum(r["server"].get(name, 0.0) for r in shards) * per_row
        w = sum(r["wall"].get(name, 0.0) for r in shards) / max(ours["batches"], 1) * 1000
        print(f"  {name:32} {w:8.1f} ms/batch   client {c:>5.2f} + server {s:>5.2f} us/row")
    say(f"airmigrate / hand loop: {our_rate / loop_rate:.2f}x by rows/s, {loop_cpu / our_cpu:.2f}x by CPU per row "
        "(what rows/s tends to when both share busy CPUs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="keys per batch, both loops (default 10,000)")
    parser.add_argument("--workers", type=int, default=2, help="loop workers = airmigrate shards (default 2)")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a server's maintenance database; the scratch database is made beside it")
    args = parser.parse_args()
    say(f"load average at start: {os.getloadavg()}")
    dbname = f"fs_profile_{os.getpid()}"
    url = scratch_url(args.url, dbname)
    sql(args.url, f"CREATE DATABASE {dbname}")
    try:
        make_table(url, args.rows)
        update = single_update(url)
        repack(url, "u_new")
        loop = hand_loop(url, args.rows, args.batch, args.workers)
        repack(url, "k_new")
        with tempfile.TemporaryDirectory(prefix="fs_profile_") as workdir:
            ours = airmigrate_full_speed(fixed_size(Path(workdir), args.batch, args.workers), url, args.workers)
        report(args.rows, update, loop, ours)
    finally:
        sql(args.url, f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        say(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
