"""Peak RSS of a shard and section 4's claim rate with many shards, for backfill_bench.py."""

from __future__ import annotations

import time
from pathlib import Path

from bench_pg import Cluster, say, sql
from bench_report import fmt
from bench_shards import MIGRATIONS, Shards, prepare_run


def rss_check(cluster: Cluster, sizes: list[int], workdir: Path, folders: tuple[str, ...]) -> dict:
    """The shard's peak RSS backfilling a whole table of each size (no application, run to the end)."""
    out = {}
    for size in sizes:
        dbname = f"rss_{size}"
        sql(cluster, [f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)", f"CREATE DATABASE {dbname}"], "postgres")
        sql(cluster, ["CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84)) "
                      "WITH (autovacuum_enabled = off)",
                      f"INSERT INTO pgbench_accounts SELECT g, 1, 0, '' FROM generate_series(1, {size}) g",
                      "VACUUM ANALYZE pgbench_accounts"], dbname)
        for folder in folders:
            url = cluster.url(dbname)
            run_id, shards = prepare_run(url, MIGRATIONS / folder)
            workers = Shards(url, MIGRATIONS / folder, run_id, shards, workdir / "logs")
            start = time.time()
            workers.go(None)
            results = workers.results()
            out.setdefault(folder, {})[size] = {
                "peak_rss_mb": max(r.get("peak_rss_mb", 0) for r in results),
                "rows": sum(r["rows"] for r in results), "seconds": time.time() - start,
                "errors": [r["error"] for r in results if r.get("error")]}
            say(f"peak RSS {folder} at {size:,} rows: {out[folder][size]['peak_rss_mb']:.0f} MB per shard "
                f"({out[folder][size]['rows']:,} rows in {out[folder][size]['seconds']:.0f}s)")
        sql(cluster, f"DROP DATABASE {dbname} WITH (FORCE)", "postgres")
    return out


# ------------------------------------------------------------------------------------------- section 4: claims

def claims_check(cluster: Cluster, shard_counts: list[int], seconds: float, workdir: Path,
                 configs: tuple = (("on", 100), ("off", 100), ("on", 20_000))) -> dict:
    """Create + claim rate of batches whose UPDATE matches nothing (100 keys: nothing but the bookkeeping; 20,000
    keys: the cursor also walks 20,000 index entries while it holds its row lock) with N shard processes
    against this one PostgreSQL: the ceiling the cursor row and the batch table put on any number of workers."""

    dbname = "claims"
    sql(cluster, [f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)", f"CREATE DATABASE {dbname}"], "postgres")
    sql(cluster, ["CREATE EXTENSION pg_stat_statements", "CREATE TABLE claims (id bigint PRIMARY KEY, x int)",
                  "INSERT INTO claims SELECT g, 0 FROM generate_series(1, 5000000) g", "VACUUM ANALYZE claims"], dbname)
    out = {}
    for series, (sync_mode, batch_size) in enumerate(configs):
        sql(cluster, f"ALTER DATABASE {dbname} SET synchronous_commit = {sync_mode}", "postgres")
        out[f"synchronous_commit={sync_mode}, {batch_size} keys"] = claims_series(
            cluster, dbname, shard_counts, seconds, workdir, sync_mode, batch_size, 91 + series)
    return out


def claims_series(cluster: Cluster, dbname: str, shard_counts: list[int], seconds: float, workdir: Path,
                  sync_mode: str, batch_size: int, prefix: int) -> dict:
    import yaml

    out = {}
    for n in shard_counts:
        folder = workdir / f"claims{prefix}" / f"{prefix}{n:02d}_claims_{n}"
        column = f"y{prefix}_{n}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "up.sql").write_text(f"ALTER TABLE claims ADD COLUMN IF NOT EXISTS {column} int;\n")
        (folder / "down.sql").write_text(f"ALTER TABLE claims DROP COLUMN IF EXISTS {column};\n")
        (folder / "backfill.sql").write_text(f"UPDATE claims SET {column} = x WHERE id BETWEEN %(lo)s AND %(hi)s "
                                             "AND x < 0;\n")
        (folder / "migration.yaml").write_text(yaml.safe_dump({
            "description": f"claim rate, {n} shards", "table": "claims", "key": "id", "batch_size": batch_size,
            "shards": n, "out_of_order": True, "backfill": {"sql": "backfill.sql", "columns": [column], "adaptive": False,
                                      "throttle": {"app_latency_ratio": None}}}))
        url = cluster.url(dbname)
        run_id, shards = prepare_run(url, folder)
        workers = Shards(url, folder, run_id, shards, workdir / "logs")
        sql(cluster, "SELECT pg_stat_statements_reset()", dbname)
        start = time.time()
        workers.go(start + seconds)
        results = workers.results()
        elapsed = max(r["end"] for r in results) - start
        batches = sum(r.get("batches", 0) for r in results)
        # mean time of the cursor's SELECT ... FOR UPDATE (includes waiting for the row lock) and of the claim
        cursor_ms, claim_ms, range_ms = sql(cluster, [
            "SELECT (SELECT sum(total_exec_time) / nullif(sum(calls), 0) FROM pg_stat_statements "
            "        WHERE query LIKE '%FROM airmigrate.cursors%FOR UPDATE%'),"
            "       (SELECT sum(total_exec_time) / nullif(sum(calls), 0) FROM pg_stat_statements "
            "        WHERE query LIKE '%SKIP LOCKED%'),"
            "       (SELECT sum(total_exec_time) / nullif(sum(calls), 0) FROM pg_stat_statements "
            "        WHERE query LIKE '%OFFSET%')"], dbname, fetch=True)[0]
        out[n] = {"batches": batches, "seconds": elapsed, "batches_per_s": batches / elapsed,
                  "cursor_lock_ms": cursor_ms, "claim_ms": claim_ms, "next_range_ms": range_ms,
                  "errors": [r["error"] for r in results if r.get("error")]}
        say(f"claims (synchronous_commit={sync_mode}, {batch_size} keys): {n:>3} shard(s): {batches:,} batches created+claimed+"
            f"committed in {elapsed:.1f}s = {batches / elapsed:,.0f}/s; cursor SELECT FOR UPDATE "
            f"{fmt(cursor_ms, '{:.2f}')} ms, its index walk {fmt(range_ms, '{:.2f}')} ms, claim {fmt(claim_ms, '{:.2f}')} "
            "ms on average")
    return out


