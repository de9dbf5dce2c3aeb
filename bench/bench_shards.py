"""airmigrate's shards as separate processes (as Airflow runs them), for backfill_bench.py and bench_claims.py."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_pg import Cluster, sql

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "bench" / "migrations"
SCRIPT = ROOT / "bench" / "backfill_bench.py"


def migration_column(folder: str) -> str:
    import yaml

    return yaml.safe_load((MIGRATIONS / folder / "migration.yaml").read_text())["backfill"]["columns"][0]


def prepare_run(url: str, folder: Path) -> tuple[int, int]:
    """preflight, schema change, open the cursor: what the DAG does before its shards (the pg_dump backup is
    left out: it is not in the measured window and costs the quick run a minute). (run_id, shards)"""
    sys.path.insert(0, str(ROOT / "src"))
    from airmigrate.db import Target
    from airmigrate.spec import load_migration
    from airmigrate.stages import backfill, preflight, schema_change

    target, migration = Target.from_url(url), load_migration(folder)
    run_id = preflight.preflight(target, migration)["run_id"]
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id)
    return run_id, migration.spec.shards


CHILDREN: list[subprocess.Popen] = []  # shard processes still running: ended with the cluster on Ctrl-C


class Shards:
    """The shards of one run as separate processes (as Airflow runs them), started and imported before the
    clock starts; `go(deadline)` releases them; `results()` waits: rows, start, end, peak RSS per shard."""

    def __init__(self, url: str, folder: Path, run_id: int, shards: int, logdir: Path):
        self.procs = []
        for shard in range(shards):
            job = json.dumps({"url": url, "folder": str(folder), "run_id": run_id, "shard": shard, "shards": shards,
                              "log": str(logdir / f"{folder.name}.run{run_id}.shard{shard}.log")})
            self.procs.append(subprocess.Popen([sys.executable, str(SCRIPT), "--shard-worker", job], stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, text=True))
            CHILDREN.append(self.procs[-1])
        for proc in self.procs:
            line = proc.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"shard worker did not start: {line!r}")

    def go(self, deadline: float | None) -> None:
        for proc in self.procs:
            proc.stdin.write(f"{deadline or 0}\n")
            proc.stdin.flush()

    def results(self) -> list[dict]:
        out = []
        for proc in self.procs:
            line = proc.stdout.readline()
            proc.wait()
            out.append(json.loads(line) if line.strip() else {"error": f"exit {proc.returncode}", "rows": 0})
        return out


def shard_worker(job: dict) -> None:
    """Child process: one shard of a run, released by the parent, stopped at the deadline (0: run to the end)."""
    import logging

    sys.path.insert(0, str(ROOT / "src"))
    logging.basicConfig(filename=job["log"], level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from airmigrate.db import Target
    from airmigrate.spec import load_migration
    from airmigrate.stages import backfill

    target, migration = Target.from_url(job["url"]), load_migration(job["folder"])
    print("READY", flush=True)
    deadline = float(sys.stdin.readline() or 0)
    start, rows, batches, passes, error = time.time(), 0, 0, 0, None
    try:
        while True:
            result = backfill.run_shard(target, migration, job["run_id"], job["shard"], shards=job["shards"],
                                        should_stop=(lambda: time.time() >= deadline) if deadline else (lambda: False))
            rows, batches, passes = rows + result.get("rows", 0), batches + result.get("batches", 0), passes + 1
            if not deadline or time.time() >= deadline:
                break
            another_pass(target, job["run_id"])
    except Exception as exc:  # reported, not raised: the parent prints it with the scenario
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    end = time.time()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "batches": batches, "start": start, "end": end, "passes": passes,
                      "peak_rss_mb": rss_kb / 1024, "error": error}), flush=True)


def another_pass(target, run_id: int) -> None:
    """The table is done before the cycle's end: its cursor starts over (the bench's backfills always write), so
    a fast scenario is measured over the whole cycle like the slow ones. The first shard to finish resets it;
    the others find it going again."""
    from airmigrate.db import connect

    with connect(target, autocommit=True) as conn:
        conn.execute("UPDATE airmigrate.cursors SET position = NULL, exhausted = false WHERE run_id = %s "
                     "AND exhausted", (run_id,))



def pacing_summary(cluster: Cluster, run_id: int) -> dict | None:
    """What the pacer saw and decided (airmigrate.pacing_log): decisions, mean budget (the duty cycle summed over
    shards) and the mean application latency ratio it measured, to hold against pgbench's own figures."""
    try:
        row = sql(cluster, "SELECT count(*), avg(budget), avg(latency_ratio), max(latency_ratio) FROM "
                           f"airmigrate.pacing_log WHERE run_id = {int(run_id)}", fetch=True)[0]
        log = sql(cluster, "SELECT extract(epoch FROM at)::float8, budget, latency_ratio, decision FROM "
                           f"airmigrate.pacing_log WHERE run_id = {int(run_id)} ORDER BY at", fetch=True)
    except Exception:
        return None
    if not row[0]:
        return None
    return {"decisions": row[0], "mean_budget": row[1], "mean_latency_ratio": row[2], "max_latency_ratio": row[3],
            "log": [list(r) for r in log]}


