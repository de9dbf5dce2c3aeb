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
phase (30% of the rate it reaches alone, closed loop) then a busy phase (80%). Scenarios, each on the same
freshly packed table (previous column dropped, VACUUM FULL) and each measured over one cycle (time-boxed:
rows/s is rows written / seconds, the cycle's two phases both seen), except the single UPDATE which runs to
its end:

  update          ALTER TABLE ADD COLUMN + one UPDATE of the whole table (the physical limit)
  loop B/S        a hand-written keyset loop: UPDATE ... WHERE aid BETWEEN lo AND lo+B-1, sleep S ms
  airmigrate      bench/migrations/9001 (app_latency_ratio null: full speed), shards as separate processes
  protect X       bench/migrations/9002/9004/9005/9006 (app_latency_ratio 1.1 / 1.25 / 1.5 / 2.0)
  pandas          bench/migrations/9003 (the pandas path, full speed)

Printed and in --json: rows/s, ratio to the single UPDATE, application p50/p99/max per phase and their ratios
to the application alone in the same phase, late (latency > limit) and skipped transactions, seconds at zero
tps, the machine's idle CPU share; the median of --runs runs. Also the shard's peak RSS at two table sizes.
Nothing here is a test: bench/README.md reads the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs, imported by Airflow's modules
ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
MIGRATIONS = BENCH / "migrations"
BENCH_DB = "bench"
APP_ROLE = "app"

# (name, migration folder, asked app_latency_ratio or None)
AIRMIGRATE = [("airmigrate", "9001_bench_backfill", None),
              ("protect 1.1", "9002_bench_protect_110", 1.1),
              ("protect 1.25", "9004_bench_protect_125", 1.25),
              ("protect 1.5", "9005_bench_protect_150", 1.5),
              ("protect 2.0", "9006_bench_protect_200", 2.0),
              ("pandas", "9003_bench_pandas", None)]
LOOP_SETTINGS = [(10_000, 0), (5_000, 20), (2_000, 30), (1_000, 50), (500, 100)]
QUICK_LOOP_SETTINGS = [(10_000, 0), (5_000, 20), (2_000, 50), (1_000, 100)]


def say(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


# ------------------------------------------------------------------------------------------- the cluster

def bindir() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """initdb + pg_ctl in a temp dir (the approach of tests/test_autovacuum.py); as root, everything runs as
    the `postgres` system user, which PostgreSQL requires."""

    def __init__(self):
        self.bindir = bindir()
        self.base = Path(tempfile.mkdtemp(prefix="airmigrate-bench-pg-"))
        self.as_user = None
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.base, pg.pw_uid, pg.pw_gid)
            self.as_user = "postgres"
        self.pgdata, self.logfile, self.port = self.base / "data", self.base / "postgresql.log", None

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, cwd=self.base, capture_output=True, text=True, check=check, timeout=timeout,
                              env={**os.environ, "LC_ALL": "C"})

    def start(self) -> "Cluster":
        self.run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C",
                 "--no-sync")
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\n# bench/backfill_bench.py\n"
                       "listen_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.base}'\n"
                       "shared_preload_libraries = 'pg_stat_statements'\n"
                       "shared_buffers = '512MB'\n"
                       "max_connections = 200\n"
                       "max_wal_size = '4GB'\n"
                       "checkpoint_timeout = '15min'\n"
                       "synchronous_commit = on\n")
        for _ in range(5):  # a port picked free may be taken before the postmaster binds it
            self.port = free_port()
            started = self.run("pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.logfile), "-w", "-t", "60",
                               "-o", f"-p {self.port}", check=False)
            if started.returncode == 0:
                return self
        raise RuntimeError(f"pg_ctl start failed: {started.stdout}{started.stderr}\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self.run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "immediate", "-w", "-t", "60", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def env(self, dbname: str = BENCH_DB, user: str = "postgres") -> dict:
        return {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": user, "PGDATABASE": dbname}


def sql(cluster: Cluster, statements: str | list[str], dbname: str = BENCH_DB, fetch: bool = False):
    import psycopg

    with psycopg.connect(cluster.url(dbname), autocommit=True) as conn:
        result = None
        for statement in [statements] if isinstance(statements, str) else statements:
            cur = conn.execute(statement)
            if fetch:
                result = cur.fetchall()
        return result


def create_bench_db(cluster: Cluster, scale: int, dbname: str = BENCH_DB) -> int:
    """pgbench -i at `scale` (100,000 accounts each) in a fresh database; role `app` may use it."""
    sql(cluster, [f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)", f"CREATE DATABASE {dbname}"], "postgres")
    sql(cluster, [f"DO $$BEGIN CREATE ROLE {APP_ROLE} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$",
                  "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"], dbname)
    subprocess.run([str(cluster.bindir / "pgbench"), "-i", "-q", "-s", str(scale)], env=cluster.env(dbname),
                   check=True, capture_output=True)
    # No autovacuum on the table: it would start at random points of a scenario (the application's updates plus
    # a backfill's pass 20% of the rows) and airmigrate's hard stop pauses every shard while it works on the
    # table (15.75 s of a 20 s window in one run), which a fixed loop does not. VACUUM FULL between scenarios
    # cleans up instead. bench/README.md says what that pause means for real tables.
    sql(cluster, [f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}",
                  "ALTER TABLE pgbench_accounts SET (autovacuum_enabled = off)",
                  "VACUUM ANALYZE", "CHECKPOINT"], dbname)
    return sql(cluster, "SELECT count(*) FROM pgbench_accounts", dbname, fetch=True)[0][0]


# ------------------------------------------------------------------------------------------- the application

class CpuSampler(threading.Thread):
    """The machine's idle share (idle + iowait) over a window, from /proc/stat every 0.25 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.stopping = [], threading.Event()

    def run(self):
        while not self.stopping.is_set():
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
            self.samples.append((time.time(), sum(fields), fields[3] + fields[4]))
            time.sleep(0.25)

    def idle_share(self, start: float, end: float) -> float | None:
        inside = [s for s in list(self.samples) if start <= s[0] <= end]
        if len(inside) < 2:
            return None
        (_, total0, idle0), (_, total1, idle1) = inside[0], inside[-1]
        return (idle1 - idle0) / max(total1 - total0, 1)


class Application(threading.Thread):
    """pgbench -N as role `app` at a fixed arrival rate. Between measurements it runs 1-second filler phases
    at the quiet rate; `cycle()` queues a quiet + busy phase and returns when the quiet one has started."""

    def __init__(self, cluster: Cluster, workdir: Path, clients: int, latency_limit_ms: float, phase_s: float):
        super().__init__(daemon=True)
        self.cluster, self.workdir, self.clients = cluster, workdir, clients
        self.latency_limit_ms, self.phase_s = latency_limit_ms, phase_s
        self.rates = {"quiet": 0.0, "busy": 0.0}
        self.queue, self.lock, self.stopping = [], threading.Lock(), threading.Event()
        self.phases = []  # dict(no, kind, start, end, prefix)
        self.started_event, self.proc = threading.Event(), None
        self.cpu = CpuSampler()

    def pgbench(self, *args: str) -> list[str]:
        return [str(self.cluster.bindir / "pgbench"), "-n", "-N", "-c", str(self.clients), "-j", "2", *args]

    def max_rate(self, seconds: float) -> float:
        """Closed loop, the application alone: transactions per second it reaches."""
        out = subprocess.run(self.pgbench("-T", str(int(seconds))), env=self.cluster.env(user=APP_ROLE),
                             capture_output=True, text=True, check=True).stdout
        line = next(l for l in out.splitlines() if l.startswith("tps = "))
        return float(line.split()[2])

    def run(self):
        no = 0
        while not self.stopping.is_set():
            with self.lock:
                kind, seconds = self.queue.pop(0) if self.queue else ("filler", 1)
            no += 1
            prefix = self.workdir / f"app{no:05d}"
            rate = self.rates["quiet" if kind == "filler" else kind]
            phase = {"no": no, "kind": kind, "start": time.time(), "end": None, "prefix": str(prefix)}
            self.phases.append(phase)
            if kind == "quiet":
                self.started_event.set()
            self.proc = subprocess.Popen(
                self.pgbench("-T", str(int(seconds)), "-R", f"{rate:.0f}", "--latency-limit",
                             f"{self.latency_limit_ms:g}", "-l", f"--log-prefix={prefix}"),
                env=self.cluster.env(user=APP_ROLE), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.proc.wait()
            phase["end"] = time.time()

    def cycle(self) -> float:
        """Queue one quiet + one busy phase; wait for the quiet one to begin; its start time."""
        while True:  # the queue holds at most one cycle: wait for the previous one to finish
            with self.lock:
                if not self.queue and (not self.phases or self.phases[-1]["kind"] in ("filler",)):
                    self.started_event.clear()
                    self.queue += [("quiet", self.phase_s), ("busy", self.phase_s)]
                    break
            time.sleep(0.05)
        self.started_event.wait()
        return self.phases[-1]["start"]

    def cycle_end(self, start: float) -> float:
        return start + 2 * self.phase_s

    def wait_cycle_done(self, start: float) -> None:
        while True:
            done = [p for p in self.phases if p["start"] >= start - 0.01 and p["kind"] == "busy" and p["end"]]
            if done:
                return
            time.sleep(0.1)

    def begin(self):
        self.cpu.start()
        self.start()

    def stop(self):
        self.stopping.set()
        self.cpu.stopping.set()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.join(timeout=30)

    # -- figures -------------------------------------------------------------------------------------------

    def transactions(self, phase: dict) -> list[tuple[float, float | None]]:
        """(completion epoch, latency ms or None when skipped) of one phase's pgbench logs."""
        out = []
        for log in Path(phase["prefix"]).parent.glob(Path(phase["prefix"]).name + ".*"):
            for line in log.read_text().splitlines():
                parts = line.split()
                if len(parts) < 6:
                    continue
                epoch = int(parts[4]) + int(parts[5]) / 1e6
                out.append((epoch, None if parts[2] == "skipped" else int(parts[2]) / 1000))
        return out

    def window(self, start: float, end: float) -> dict:
        return self.window_of([(start, end)])

    def window_of(self, spans: list[tuple[float, float]]) -> dict:
        """Per phase kind (quiet, busy): tps, p50/p99/max ms, late and skipped transactions; and over the whole
        window: seconds at zero tps and the idle CPU share."""
        result, per_second = {}, {}
        for kind in ("quiet", "busy"):
            latencies, skipped, seconds, idle = [], 0, 0.0, []
            for phase, (start, end) in ((p, span) for p in self.phases for span in spans):
                if phase["kind"] != kind or phase["end"] is None:
                    continue
                lo, hi = max(start, phase["start"]), min(end, phase["end"])
                if hi <= lo:
                    continue
                seconds += hi - lo
                share = self.cpu.idle_share(lo, hi)
                if share is not None:
                    idle.append((share, hi - lo))
                for epoch, latency in self.transactions(phase):
                    if lo <= epoch <= hi:
                        if latency is None:
                            skipped += 1
                        else:
                            latencies.append(latency)
                            per_second[int(epoch)] = per_second.get(int(epoch), 0) + 1
            latencies.sort()
            n = len(latencies)
            result[kind] = {
                "seconds": round(seconds, 1), "tps": n / seconds if seconds else None,
                "p50_ms": latencies[n // 2] if n else None,
                "p99_ms": latencies[min(n - 1, int(n * 0.99))] if n else None,
                "max_ms": latencies[-1] if n else None,
                "late": sum(1 for l in latencies if l > self.latency_limit_ms), "skipped": skipped,
                "idle_cpu": sum(s * w for s, w in idle) / sum(w for _, w in idle) if idle else None}
        result["zero_tps_seconds"] = sum(1 for start, end in spans for s in range(int(start) + 1, int(end))
                                         if per_second.get(s, 0) == 0)
        shares = [(self.cpu.idle_share(start, end), end - start) for start, end in spans]
        shares = [(v, w) for v, w in shares if v is not None]
        result["idle_cpu"] = sum(v * w for v, w in shares) / sum(w for _, w in shares) if shares else None
        return result


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


def keyset_loop(cluster: Cluster, app: Application, batch: int, sleep_ms: int) -> dict:
    """The simplest batched backfill a DBA writes by hand: one autocommitted UPDATE per range of `batch` keys,
    then a fixed sleep; nothing recorded. Time-boxed to one load cycle."""
    import psycopg

    with psycopg.connect(cluster.url(BENCH_DB), autocommit=True) as conn:
        conn.execute("ALTER TABLE pgbench_accounts ADD COLUMN k_new bigint")
        last = conn.execute("SELECT max(aid) FROM pgbench_accounts").fetchone()[0]
        cycle = app.cycle()
        deadline, rows, lo = app.cycle_end(cycle), 0, 1
        start = time.time()
        while lo <= last and time.time() < deadline:
            rows += conn.execute("UPDATE pgbench_accounts SET k_new = abalance + aid WHERE aid BETWEEN %s AND %s "
                                 "AND k_new IS DISTINCT FROM abalance + aid", (lo, lo + batch - 1)).rowcount
            lo += batch
            if sleep_ms:
                time.sleep(sleep_ms / 1000)
        end = time.time()
    return {"rows": rows, "start": start, "end": end, "cycle": cycle, "column": "k_new"}


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
            self.procs.append(subprocess.Popen([sys.executable, __file__, "--shard-worker", job], stdin=subprocess.PIPE,
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
    start, result, error = time.time(), {}, None
    try:
        result = backfill.run_shard(target, migration, job["run_id"], job["shard"], shards=job["shards"],
                                    should_stop=(lambda: time.time() >= deadline) if deadline else (lambda: False))
    except Exception as exc:  # reported, not raised: the parent prints it with the scenario
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    end = time.time()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": result.get("rows", 0), "batches": result.get("batches", 0), "start": start, "end": end,
                      "peak_rss_mb": rss_kb / 1024, "error": error}), flush=True)


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
            "pacing": pacing_summary(cluster, run_id)}


def pacing_summary(cluster: Cluster, run_id: int) -> dict | None:
    """What the pacer saw and decided (airmigrate.pacing_log): decisions, mean budget (the duty cycle summed over
    shards) and the mean application latency ratio it measured, to hold against pgbench's own figures."""
    try:
        row = sql(cluster, "SELECT count(*), avg(budget), avg(latency_ratio), max(latency_ratio) FROM "
                           f"airmigrate.pacing_log WHERE run_id = {int(run_id)}", fetch=True)[0]
    except Exception:
        return None
    return {"decisions": row[0], "mean_budget": row[1], "mean_latency_ratio": row[2], "max_latency_ratio": row[3]}


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
        for name, runner in scenario_plan(args):
            prepare_table(cluster, previous)
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
            out["scenarios"][name] = raw
            extra = f" ERRORS {raw['errors']}" if raw.get("errors") else ""
            say(f"run {run_no}: {name}: {raw['rows']:,} rows in {raw['seconds']:.1f}s = {raw['rows_per_s']:,.0f} rows/s;"
                f" app {brief(raw['app'])}{extra}")
        prepare_table(cluster, previous)
        cycle = app.cycle()  # the application alone again: the baseline is both cycles, so a drift in the
        app.wait_cycle_done(cycle)  # machine's other load over the run weighs on both ends alike
        alone.append((cycle, app.cycle_end(cycle)))
        out["baseline"] = app.window_of(alone)
        say(f"run {run_no}: application alone, after: {brief(app.window(*alone[1]))}; both: {brief(out['baseline'])}")
    finally:
        app.stop()
    return out


def scenario_plan(args) -> list:
    plan = [("update", lambda c, a, rows, w: single_update(c, a, rows))]
    for batch, sleep_ms in (QUICK_LOOP_SETTINGS if args.quick else LOOP_SETTINGS):
        plan.append((f"loop {batch}/{sleep_ms}ms", lambda c, a, rows, w, b=batch, s=sleep_ms: keyset_loop(c, a, b, s)))
    for name, folder, _ratio in AIRMIGRATE:
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        plan.append((name, lambda c, a, rows, w, f=folder: airmigrate_scenario(c, a, f, w / "logs")))
    if args.only:
        plan = [p for p in plan if p[0] == "update" or any(o in p[0] for o in args.only.split(","))]
    return plan


def brief(window: dict) -> str:
    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)
    q, b = window["quiet"], window["busy"]
    return (f"quiet p99 {f(q['p99_ms'])} ms, busy p99 {f(b['p99_ms'])} ms, late {q['late'] + b['late']}, "
            f"skipped {q['skipped'] + b['skipped']}, zero-tps {window['zero_tps_seconds']} s, idle cpu "
            f"{f(window['idle_cpu'], '{:.0%}')}")


# ------------------------------------------------------------------------------------------- figures

def figures(run: dict) -> dict:
    """One run's figures per scenario, with every ratio against that run's single UPDATE and application alone."""
    base, update_rps = run["baseline"], run["scenarios"]["update"]["rows_per_s"]
    asked = {name: ratio for name, _f, ratio in AIRMIGRATE if name.startswith("protect")}
    out = {}
    for name, s in run["scenarios"].items():
        row = {"name": name, "rows_per_s": s["rows_per_s"], "ratio_to_update": s["rows_per_s"] / update_rps,
               "asked_ratio": asked.get(name), "zero_tps_seconds": s["app"]["zero_tps_seconds"],
               "idle_cpu": s["app"]["idle_cpu"], "peak_rss_mb": s.get("peak_rss_mb"), "errors": s.get("errors") or [],
               "wal_bytes_per_row": float(s.get("wal_bytes_per_row") or 0),
               "pacer_mean_budget": (s.get("pacing") or {}).get("mean_budget"),
               "pacer_mean_latency_ratio": (s.get("pacing") or {}).get("mean_latency_ratio"),
               "pacer_decisions": (s.get("pacing") or {}).get("decisions")}
        for kind in ("quiet", "busy"):
            app, alone = s["app"][kind], base[kind]
            for stat in ("p50_ms", "p99_ms", "max_ms", "tps", "late", "skipped", "idle_cpu"):
                row[f"{kind}_{stat}"] = app[stat]
            for stat in ("p50", "p99", "max"):
                mine, theirs = app[f"{stat}_ms"], alone[f"{stat}_ms"]
                row[f"{kind}_{stat}_ratio"] = mine / theirs if mine is not None and theirs else None
        out[name] = row
    return out


def median_of(runs: list[dict]) -> dict:
    """Per scenario and figure, the median over runs (numbers only; the rest from the first run)."""
    merged = {}
    for name in runs[0]:
        rows = [r[name] for r in runs if name in r]
        row = dict(rows[0])
        for key, value in rows[0].items():
            values = [r.get(key) for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and values:
                row[key] = statistics.median(values)
        row["runs"] = len(rows)
        merged[name] = row
    return merged


def baseline_figures(runs: list[dict]) -> dict:
    out = {}
    for kind in ("quiet", "busy"):
        for stat in ("p50_ms", "p99_ms", "max_ms", "tps", "late", "skipped", "idle_cpu"):
            values = [r["baseline"][kind][stat] for r in runs if r["baseline"][kind][stat] is not None]
            out[f"{kind}_{stat}"] = statistics.median(values) if values else None
    out["zero_tps_seconds"] = statistics.median(r["baseline"]["zero_tps_seconds"] for r in runs)
    out["idle_cpu"] = statistics.median(r["baseline"]["idle_cpu"] or 0 for r in runs)
    return out


def targets(table: dict, base: dict) -> list[str]:
    """Issue 10's targets against this run's figures (text for the log and the README)."""
    lines = []
    update = table["update"]["rows_per_s"]
    for name, row in table.items():
        if row.get("asked_ratio"):
            limit = row["asked_ratio"] * 1.1
            worst = max(row["quiet_p99_ratio"] or 0, row["busy_p99_ratio"] or 0)
            lines.append(f"{name}: app p99 ratio quiet {fmt(row['quiet_p99_ratio'])} busy {fmt(row['busy_p99_ratio'])}"
                         f" (target <= {limit:.2f}): {'met' if worst <= limit else f'MISSED by {worst / limit:.2f}x'}")
    loops = [r for n, r in table.items() if n.startswith("loop")]
    for name, row in table.items():
        if not row.get("asked_ratio"):
            continue
        if row["busy_p99_ratio"] is None:
            lines.append(f"{name}: finished before the busy phase: no comparison with the loop")
            continue
        holding = [l for l in loops if (l["busy_p99_ratio"] or 1e9) <= row["busy_p99_ratio"]]
        best = max((l["rows_per_s"] for l in holding), default=None)
        if best:
            lines.append(f"{name}: {row['rows_per_s']:,.0f} rows/s vs best loop holding its busy p99 "
                         f"{best:,.0f} = {row['rows_per_s'] / best:.2f}x (target >= 1.25)")
        else:
            lines.append(f"{name}: no loop setting holds busy p99 <= {row['busy_p99_ratio']:.2f}")
        idle = base.get("idle_cpu") or 0
        if idle < 0.01:
            lines.append(f"{name}: the application alone left no idle CPU ({idle:.0%}): spare capacity target undefined")
        else:
            lines.append(f"{name}: harvest {row['rows_per_s']:,.0f} / (update {update:,.0f} x idle {idle:.0%}) = "
                         f"{row['rows_per_s'] / (update * idle):.0%} (target >= 70%)")
    for name, goal in (("airmigrate", 0.9), ("pandas", 0.7)):
        if name in table:
            row = table[name]
            lines.append(f"{name}: {row['ratio_to_update']:.2f}x the single UPDATE (target >= {goal}), "
                         f"{row['zero_tps_seconds']} s at zero tps (target 0)")
    return lines


def fmt(v, spec="{:.2f}") -> str:
    return "-" if v is None else spec.format(v)


def print_table(table: dict, base: dict, meta: dict) -> None:
    print(f"\n{meta['rows']:,} rows; application pgbench -N as role app at {meta['rates']['quiet']:,.0f} (quiet) / "
          f"{meta['rates']['busy']:,.0f} (busy) tps, {meta['phase_s']:g} s phases; median of {meta['runs']} run(s)")
    print(f"application alone: quiet p50/p99/max {fmt(base['quiet_p50_ms'], '{:.1f}')}/{fmt(base['quiet_p99_ms'], '{:.1f}')}"
          f"/{fmt(base['quiet_max_ms'], '{:.0f}')} ms, busy {fmt(base['busy_p50_ms'], '{:.1f}')}/"
          f"{fmt(base['busy_p99_ms'], '{:.1f}')}/{fmt(base['busy_max_ms'], '{:.0f}')} ms, idle cpu "
          f"{fmt(base['quiet_idle_cpu'], '{:.0%}')} quiet / {fmt(base['busy_idle_cpu'], '{:.0%}')} busy")
    print(f"{'scenario':<17} {'rows/s':>9} {'x upd':>6} {'asked':>5} | {'quiet p50 p99 max (ratio)':>25} | "
          f"{'busy p50 p99 max (ratio)':>25} | {'late':>5} {'skip':>5} {'0tps':>4} {'idle':>5}")
    for name, row in table.items():
        quiet = f"{fmt(row['quiet_p50_ratio'])} {fmt(row['quiet_p99_ratio'])} {fmt(row['quiet_max_ratio'], '{:.1f}')}"
        busy = f"{fmt(row['busy_p50_ratio'])} {fmt(row['busy_p99_ratio'])} {fmt(row['busy_max_ratio'], '{:.1f}')}"
        late = (row["quiet_late"] or 0) + (row["busy_late"] or 0)
        skipped = (row["quiet_skipped"] or 0) + (row["busy_skipped"] or 0)
        print(f"{name:<17} {row['rows_per_s']:>9,.0f} {row['ratio_to_update']:>6.2f} {fmt(row['asked_ratio'], '{:g}'):>5} | "
              f"{quiet:>25} | {busy:>25} | {late:>5.0f} {skipped:>5.0f} {row['zero_tps_seconds']:>4.0f} "
              f"{fmt(row['idle_cpu'], '{:.0%}'):>5}"
              + (f" (pacer saw {row['pacer_mean_latency_ratio']:.2f}x)" if row.get("pacer_mean_latency_ratio") else "")
              + (" ERR" if row.get("errors") else ""), flush=True)


# ------------------------------------------------------------------------------------------- peak RSS

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
    import yaml

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


# ------------------------------------------------------------------------------------------- plot

def plot(result: dict, png: Path) -> bool:
    """rows/s against the application's busy-phase p99 ratio: the loop's curve and airmigrate's points."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"no matplotlib in {sys.executable}: no plot (run `python bench/backfill_bench.py --plot-from FILE` "
              "with a Python that has it)")
        return False
    table = result["table"]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    loops = sorted((r for n, r in table.items() if n.startswith("loop") and r["busy_p99_ratio"]),
                   key=lambda r: r["busy_p99_ratio"])
    ax.plot([r["busy_p99_ratio"] for r in loops], [r["rows_per_s"] for r in loops], "o-", color="grey",
            label="hand-written keyset loop (batch/sleep)")
    for r in loops:
        ax.annotate(r["name"].replace("loop ", ""), (r["busy_p99_ratio"], r["rows_per_s"]), fontsize=7,
                    xytext=(4, -10), textcoords="offset points", color="grey")
    for name, row in table.items():
        if name.startswith("loop") or not row["busy_p99_ratio"]:
            continue
        style = {"update": ("s", "black"), "pandas": ("D", "tab:purple"), "airmigrate": ("^", "tab:red")}.get(
            name, ("o", "tab:blue"))
        ax.plot(row["busy_p99_ratio"], row["rows_per_s"], style[0], color=style[1], markersize=8)
        label = name + (f" (quiet phase: {row['quiet_p99_ratio']:.2f})" if row.get("quiet_p99_ratio") else "")
        ax.annotate(label, (row["busy_p99_ratio"], row["rows_per_s"]), fontsize=8, xytext=(5, 4),
                    textcoords="offset points", color=style[1])
        if row.get("asked_ratio"):
            ax.axvline(row["asked_ratio"], color="tab:blue", alpha=0.15, linestyle="--")
    ax.set_xlabel("application p99 latency in the busy phase, ratio to the application alone "
                  "(dashed: the asked ratios)")
    ax.set_ylabel("backfill rows/s")
    meta = result["meta"]
    ax.set_title(f"{meta['rows']:,} rows, median of {meta['runs']} run(s), {meta['phase_s']:g} s phases "
                 f"({'quick' if meta['quick'] else 'full'})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    print(f"plot: {png}")
    return True


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
    parser.add_argument("--max-rate-s", type=float, help="closed-loop run measuring the max rate (10 s, --quick 5)")
    parser.add_argument("--only", help="comma-separated scenario name parts besides update, e.g. 'protect,loop'")
    parser.add_argument("--rss", help="table sizes for the peak RSS check, e.g. 1000000,10000000 "
                                      "(default: that in full mode, 100000,1000000 with --quick; 'none' skips)")
    parser.add_argument("--rss-only", action="store_true", help="only the peak RSS check (--rss sizes)")
    parser.add_argument("--claims", action="store_true", help="only section 4's claim-rate check")
    parser.add_argument("--claim-shards", default="1,4,16,32", help="shard counts for --claims")
    parser.add_argument("--json", type=Path, help="write every scenario's figures here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the shard logs (pacer decisions, batches)")
    parser.add_argument("--plot-from", type=Path, help="only draw the PNG from a --json file")
    parser.add_argument("--shard-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shard_worker:
        return shard_worker(json.loads(args.shard_worker))
    if args.plot_from:
        plot(json.loads(args.plot_from.read_text()), args.plot_from.with_suffix(".png"))
        return
    args.runs = args.runs or (1 if args.quick else 3)
    args.scale = args.scale or (30 if args.quick else 100)
    args.phase_s = args.phase_s or (10 if args.quick else 30)
    args.max_rate_s = args.max_rate_s or (5 if args.quick else 10)
    rss_sizes = ([] if args.rss == "none" else [int(s) for s in args.rss.split(",")] if args.rss
                 else [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000])
    t0 = time.time()
    cluster = Cluster()
    workdir = Path(tempfile.mkdtemp(prefix="airmigrate-bench-"))
    (workdir / "logs").mkdir()
    previous = signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        cluster.start()
        say(f"scratch PostgreSQL {cluster.bindir} at 127.0.0.1:{cluster.port} (pg_stat_statements preloaded); "
            f"load {os.getloadavg()[0]:.2f}")
        if args.claims:
            result = {"claims": claims_check(cluster, [int(n) for n in args.claim_shards.split(",")],
                                             10 if args.quick else 20, workdir),
                      "load": os.getloadavg()}
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
            return
        if args.rss_only:
            result = {"rss": rss_check(cluster, rss_sizes, workdir, ("9001_bench_backfill", "9003_bench_pandas"))}
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
            return
        load_before = os.getloadavg()
        runs = [one_run(cluster, args, n + 1, workdir) for n in range(args.runs)]
        rss = rss_check(cluster, rss_sizes, workdir, ("9001_bench_backfill",) if args.quick
                        else ("9001_bench_backfill", "9003_bench_pandas")) if rss_sizes else {}
        table = median_of([figures(r) for r in runs])
        base = baseline_figures(runs)
        meta = {"rows": runs[0]["rows"], "rates": runs[0]["rates"], "max_tps": runs[0]["max_tps"],
                "phase_s": args.phase_s, "runs": args.runs, "quick": args.quick, "scale": args.scale,
                "clients": args.clients, "latency_limit_ms": args.latency_limit_ms,
                "load_before": load_before, "load_after": os.getloadavg(), "seconds": time.time() - t0,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "server": "PostgreSQL "
                + sql(cluster, "SHOW server_version", "postgres", fetch=True)[0][0]}
        result = {"meta": meta, "baseline": base, "table": table, "scenarios": list(table.values()),
                  "rss": rss, "runs": [{k: v for k, v in r.items() if k != "scenarios"} for r in runs],
                  "targets": targets(table, base)}
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
        print(f"took {meta['seconds']:.0f}s; load {meta['load_before'][0]:.2f} before, {meta['load_after'][0]:.2f} after")
        print_table(table, base, meta)
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
