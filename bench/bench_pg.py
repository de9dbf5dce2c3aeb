"""The bench's PostgreSQL cluster and its application (pgbench at a fixed arrival rate), for backfill_bench.py."""

from __future__ import annotations

import argparse
import os
import statistics
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

BENCH_DB = "bench"
APP_ROLE = "app"


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

    def __init__(self, parent: str | None = None):
        """`parent`: where the temp dir goes (default: the system's temp dir). /dev/shm takes the disk out of
        the measurement when other work on the machine shares it (commits then wait for no fsync)."""
        self.bindir = bindir()
        self.base = Path(tempfile.mkdtemp(prefix="airmigrate-bench-pg-", dir=parent))
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

    def per_second(self, start: float, end: float) -> list[list]:
        """[epoch second, p99 ms, phase kind] for every second of the window: the application's latency beside
        the pacer's decisions in the timeline plot."""
        seconds: dict[int, list[float]] = {}
        kinds: dict[int, str] = {}
        for phase in self.phases:
            if phase["kind"] not in ("quiet", "busy") or phase["end"] is None or phase["end"] < start or \
                    phase["start"] > end:
                continue
            for epoch, latency in self.transactions(phase):
                if start <= epoch <= end:
                    seconds.setdefault(int(epoch), []).append(latency if latency is not None else
                                                              self.latency_limit_ms)
                    kinds[int(epoch)] = phase["kind"]
        return [[second, sorted(v)[min(len(v) - 1, int(0.99 * len(v)))], kinds[second]]
                for second, v in sorted(seconds.items())]

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


# ------------------------------------------------------------------------------------------- rounds of variants

def rounds_arguments(variants: list[str], phase_s: float, rounds: int) -> argparse.Namespace:
    """The command line of the scripts that run their variants in turn, round after round, beside the application
    (monitor_cost.py, start_cost.py); `variants` are those --variants may name, all of them by default."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=30)
    parser.add_argument("--phase-s", type=float, default=phase_s)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--busy", type=float, default=0.6, help="busy phase rate, share of the max (0.6)")
    parser.add_argument("--variants", default=",".join(variants), help="comma-separated, of: " + ", ".join(variants))
    parser.add_argument("--data-parent")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args()


def started_application(cluster: Cluster, workdir: Path, args: argparse.Namespace) -> Application:
    """The bench database at --scale and the application on it, started: quiet at 30% of its maximum, busy at
    --busy, in phases of --phase-s."""
    create_bench_db(cluster, args.scale)
    app = Application(cluster, workdir, 8, 100, args.phase_s)
    max_tps = app.max_rate(5)
    app.rates = {"quiet": max_tps * 0.3, "busy": max_tps * args.busy}
    say(f"application alone {max_tps:,.0f} tps; quiet {app.rates['quiet']:,.0f} busy {app.rates['busy']:,.0f}; "
        f"load {os.getloadavg()[0]:.2f}")
    app.begin()
    return app


def print_ratios(p99: dict, rounds: list, variants, windows: list[tuple[str, str]], width: int = 12) -> None:
    """Per variant and window (key, label): the median over rounds of the application's p99 (lowest-highest) and
    of its ratio to the same round's `alone` over the same window. `p99`: (round, variant, window key) -> ms."""
    print(f"{'variant':{width}} {'window':14} | {'p99 ms, median (lowest-highest)':>31} | "
          f"{'ratio to alone, median':>22} | lowest-highest")
    for variant in variants:
        for key, label in windows:
            ms = [p99[r, variant, key] for r in rounds if p99.get((r, variant, key))]
            ratios = [p99[r, variant, key] / p99[r, "alone", key] for r in rounds
                      if p99.get((r, variant, key)) and p99.get((r, "alone", key))]
            if ms and ratios:
                spread = f"{statistics.median(ms):.2f} ({min(ms):.2f}-{max(ms):.2f})"
                print(f"{variant:{width}} {label:14} | {spread:>31} | {statistics.median(ratios):22.2f} | "
                      f"{min(ratios):.2f}-{max(ratios):.2f}")
