"""The backfill on MySQL / MariaDB against a fixed-arrival-rate application (issue 22): the single UPDATE (the
physical limit), airmigrate at full speed (`app_latency_ratio: null`) and airmigrate protecting the application
at 1.25x (the pacer on MySQL's signals), each beside the same application; rows/s and the application's p99, as
ratios of the single UPDATE's rows/s and of the application's p99 alone.

    .venv/bin/python bench/mysql_bench.py --url mysql://root@127.0.0.1:3306/ --db airmigrate_bench
    flags: --rows 1000000 --phase-s 20 --rate 200 --clients 4 --keep (the database and its state database are
    dropped at the end otherwise) --keep-logs (the shards' logs, every pacer decision and baseline, in a temp dir)

backfill_bench.py is PostgreSQL's (its own cluster, pgbench); this one uses the server it is given (a database of
its own, dropped at the end) and an application of its own: `--clients` threads, each starting a transaction at a
fixed rate (`--rate` a second in all) whatever the last one took (open loop: a hurt application shows up as
latency, measured from the transaction's scheduled start, not as fewer transactions). A transaction is BEGIN, an
UPDATE of a random row, a SELECT of it, COMMIT (pgbench -N's shape), under innodb_lock_wait_timeout = 10 s (a
timed-out one counts with the time it waited). airmigrate's shards run as separate processes, as Airflow runs
them. The machine's load is printed: on a shared machine other work shows up as the application's latency.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402

from airmigrate import db, state  # noqa: E402
from airmigrate.engines.mysql.state_names import state_database  # noqa: E402
from airmigrate.engines.target import Target  # noqa: E402


class Application(threading.Thread):
    """One client at a fixed arrival rate; (scheduled start, latency s, failed?) of each transaction."""

    def __init__(self, target: Target, rows: int, every_s: float, seed: int):
        super().__init__(daemon=True)
        self.target, self.rows, self.every_s, self.rng = target, rows, every_s, random.Random(seed)
        self.stop, self.seen = threading.Event(), []

    def run(self) -> None:
        with db.connect(self.target, autocommit=True) as conn:
            conn.execute("SET SESSION innodb_lock_wait_timeout = 10")
            due = time.monotonic()
            while not self.stop.is_set():
                wait = due - time.monotonic()
                if wait > 0:
                    self.stop.wait(wait)
                failed = False
                try:
                    key = self.rng.randint(1, self.rows)
                    with conn.transaction():
                        conn.execute("UPDATE t SET a = a + 1 WHERE id = %s", (key,))
                        conn.execute("SELECT a FROM t WHERE id = %s", (key,)).fetchall()
                except Exception:
                    failed = True
                self.seen.append((due, time.monotonic() - due, failed))
                due += self.every_s

    def between(self, start: float, end: float) -> list[float]:
        return [latency for due, latency, _ in list(self.seen) if start <= due < end]


def p99(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else None


def make_table(target: Target, rows: int) -> None:
    """t(id, a, s) with ids 1..rows, made by the server (a cross join of digits), then ANALYZE."""
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE digits (d INT)")
        conn.execute("INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)")
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY, a INT NOT NULL, s VARCHAR(40)) ENGINE = InnoDB")
        conn.execute(
            "INSERT INTO t SELECT n, MOD(n, 1000), CONCAT('row ', n) FROM (SELECT 1 + a.d + 10 * b.d + 100 * c.d + "
            "1000 * e.d + 10000 * f.d + 100000 * g.d + 1000000 * h.d AS n FROM digits a, digits b, digits c, "
            f"digits e, digits f, digits g, digits h) x WHERE n <= {int(rows)}")
        conn.execute("ANALYZE TABLE t").fetchall()


def fresh_column(target: Target) -> None:
    with db.connect(target, autocommit=True) as conn:
        conn.execute("ALTER TABLE t DROP COLUMN IF EXISTS u_new")
        conn.execute("ALTER TABLE t ADD COLUMN u_new INT NULL")


def write_migration(parent: Path, target: Target, name: str, ratio: float | None) -> Path:
    folder = parent / name
    folder.mkdir()
    (folder / "up.sql").write_text("SELECT 1;\n")
    (folder / "down.sql").write_text("SELECT 1;\n")
    (folder / "backfill.sql").write_text("UPDATE t SET u_new = a + id WHERE id BETWEEN %(lo)s AND %(hi)s")
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": f"bench {name}", "table": f"{target.dbname}.t", "key": "id", "batch_size": 2000,
        "shards": 2, "backfill": {"sql": "backfill.sql", "columns": ["u_new"], "target_batch_seconds": 0.1,
                                  "throttle": {"app_latency_ratio": ratio}}}))
    return folder


SHARD = """
import json, logging, sys, time
sys.path.insert(0, {src!r})
job = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO if job["log"] else logging.WARNING, filename=job["log"] or None)
from airmigrate.engines.target import Target
from airmigrate.spec import load_migration
from airmigrate.pacing import leader
from airmigrate.stages import backfill
leader.CANARY_S = job["canary_s"] or leader.CANARY_S
target, migration = Target.from_url(job["url"]), load_migration(job["folder"])
print("READY", flush=True)
deadline = float(sys.stdin.readline())
result = backfill.run_shard(target, migration, job["run_id"], shard=job["shard"], shards=2,
                            should_stop=lambda: time.time() >= deadline)
print(json.dumps({{"rows": result["rows"]}}), flush=True)
"""


def run_airmigrate(target: Target, folder: Path, seconds: float, logdir: str | None,
                   canary_s: float | None = None) -> tuple[int, float, float, int]:
    """(rows, start, end on time.monotonic(), run id): two shard processes, started and imported before the
    clock; `canary_s` replaces the pacer's canary period in them (what the canary's own commits cost)."""
    from airmigrate.spec import load_migration
    from airmigrate.stages import backfill

    migration = load_migration(folder)
    with db.connect(target) as conn:
        state.ensure_schema(conn)
        run_id, _ = state.begin_run(conn, migration.id, "up", None)
    backfill.start_backfill(target, migration, run_id)
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": target.url()}
    procs = []
    for shard in range(2):
        job = json.dumps({"url": target.url(), "folder": str(folder), "run_id": run_id, "shard": shard,
                          "canary_s": canary_s,
                          "log": f"{logdir}/{folder.name}.shard{shard}.log" if logdir else None})
        procs.append(subprocess.Popen([sys.executable, "-c", SHARD.format(src=str(ROOT / "src")), job], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for proc in procs:
        assert proc.stdout.readline().strip() == "READY", "a shard did not start"
    start = time.monotonic()
    for proc in procs:
        proc.stdin.write(f"{time.time() + seconds}\n")
        proc.stdin.flush()
    rows = sum(json.loads(proc.stdout.readline())["rows"] for proc in procs)
    end = time.monotonic()
    for proc in procs:
        proc.wait(timeout=60)
    with db.connect(target) as conn:
        conn.execute("UPDATE airmigrate.runs SET status = 'succeeded' WHERE run_id = %s", (run_id,))
    return rows, start, end, run_id


def pacer_summary(target: Target, run_id: int) -> str:
    """What the pacer did, from its own record (airmigrate.pacing_log): decisions, the budget (mean, min), the
    figure it held against the target (mean, max), the baselines it measured and its reasons, counted."""
    with db.connect(target) as conn:
        rows = conn.execute("SELECT budget, latency_ratio, baseline_ms, blocked, decision FROM airmigrate.pacing_log "
                            "WHERE run_id = %s ORDER BY id", (run_id,)).fetchall()
    if not rows:
        return "no decisions"
    budgets, held = [float(r[0]) for r in rows], [float(r[1]) for r in rows if r[1] is not None]
    baselines = sorted({round(float(r[2]), 2) for r in rows if r[2] is not None})
    reasons: dict[str, int] = {}
    for *_, decision in rows:
        kind = re.sub(r"\d+(\.\d+)?", "N", decision.split(":")[0])
        reasons[kind] = reasons.get(kind, 0) + 1
    return (f"{len(rows)} decisions; budget mean {sum(budgets) / len(budgets):.2f}, min {min(budgets):.2f}; held "
            + (f"mean {sum(held) / len(held):.2f}x, max {max(held):.2f}x ({len(held)} with a figure)" if held else
               "no figure") + f"; blocked in {sum(1 for r in rows if r[3])}; baselines (ms) {baselines}; "
            + ", ".join(f"{kind} x{n}" for kind, n in sorted(reasons.items(), key=lambda kv: -kv[1])))


def run_update(target: Target) -> tuple[int, float, float]:
    with db.connect(target, autocommit=True) as conn:
        start = time.monotonic()
        rows = conn.execute("UPDATE t SET u_new = a + id").rowcount
        return rows, start, time.monotonic()


SCENARIOS = (("update", None, None), ("airmigrate", None, "9101_bench_full_speed"),
             ("protect 1.25", 1.25, "9102_bench_protect_125"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("AIRMIGRATE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/"))
    parser.add_argument("--db", default="airmigrate_bench")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--phase-s", type=float, default=20)
    parser.add_argument("--rate", type=float, default=200, help="the application's transactions a second, in all")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--canary-s", type=float, help="the pacer's canary period in the shards (default: the "
                        "pacer's CANARY_S, 0.01: a hundred commits a second; what those cost the application)")
    parser.add_argument("--keep", action="store_true", help="keep the database and its state database")
    parser.add_argument("--keep-logs", action="store_true", help="keep the shards' logs (a temp dir, named at the end)")
    args = parser.parse_args()
    server = Target.from_url(args.url).with_dbname("mysql")
    target = server.with_dbname(args.db)
    os.environ["AIRMIGRATE_TARGET_URL"] = target.url()  # the spec's SQL is read by the MySQL engine's parser
    print(f"load average at the start: {os.getloadavg()[0]:.2f} (a shared machine: other work shows up as the "
          "application's latency)", flush=True)
    with db.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS `{args.db}`")
        conn.execute(f"DROP DATABASE IF EXISTS `{state_database(args.db)}`")
        conn.execute(f"CREATE DATABASE `{args.db}`")
        version = conn.execute("SELECT VERSION(), @@performance_schema").fetchone()
    print(f"server {version[0]}, performance_schema {'on' if version[1] else 'off'}; {args.rows:,} rows; "
          f"application {args.rate:g} tx/s on {args.clients} clients; {args.phase_s:g} s a scenario"
          + (f"; canary every {args.canary_s:g} s" if args.canary_s else ""), flush=True)
    make_table(target, args.rows)
    apps = [Application(target, args.rows, args.clients / args.rate, seed) for seed in range(args.clients)]
    for app in apps:
        app.start()
    logdir = tempfile.mkdtemp(prefix="mysql-bench-") if args.keep or args.keep_logs else None
    results = []
    try:
        time.sleep(2)  # the clients' connections are up
        start = time.monotonic()
        time.sleep(args.phase_s)
        alone = p99([x for app in apps for x in app.between(start, time.monotonic())])
        results.append(("application alone", None, None, alone))
        with tempfile.TemporaryDirectory() as parent:
            for name, ratio, folder_name in SCENARIOS:
                fresh_column(target)
                time.sleep(2)
                run_id = None
                if name == "update":
                    rows, begin, end = run_update(target)
                else:
                    folder = write_migration(Path(parent), target, folder_name, ratio)
                    rows, begin, end, run_id = run_airmigrate(target, folder, args.phase_s, logdir, args.canary_s)
                latency = p99([x for app in apps for x in app.between(begin, end)])
                results.append((name, rows, rows / (end - begin), latency))
                print(f"  {name}: {rows:,} rows in {end - begin:.1f} s, application p99 "
                      f"{latency * 1000:.1f} ms; load {os.getloadavg()[0]:.2f}", flush=True)
                if ratio is not None:
                    print(f"    pacer: {pacer_summary(target, run_id)}", flush=True)
    finally:
        for app in apps:
            app.stop.set()
        for app in apps:
            app.join(timeout=30)
        if not args.keep:
            with db.connect(server, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS `{args.db}`")
                conn.execute(f"DROP DATABASE IF EXISTS `{state_database(args.db)}`")  # its runs, batches, pacing
    update_rate = results[1][2]
    print("\n| scenario | rows/s | rows/s vs single UPDATE | app p99 ms | app p99 vs alone |\n|---|---|---|---|---|")
    for name, rows, rate, latency in results:
        print(f"| {name} | {'' if rate is None else f'{rate:,.0f}'} | "
              f"{'' if rate is None else f'{rate / update_rate:.2f}'} | {latency * 1000:.1f} | "
              f"{latency / alone:.2f} |")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}" + (f"; shards' logs in {logdir}" if logdir else ""))


if __name__ == "__main__":
    main()
