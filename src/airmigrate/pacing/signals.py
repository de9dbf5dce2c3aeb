"""The application's impact, read from inside the database (so it works wherever the database runs), through the
engine's ``pacing_sql`` (``Engine.pacing_sql()``: PostgreSQL's statistics views, MySQL's information_schema and
performance_schema); the figures below are PostgreSQL's, MySQL's equivalents are in its module:

- backends of the application waiting on a lock one of ours holds (``pg_blocking_pids``);
- the age of the application's transactions in flight (``pg_stat_activity.xact_start``), sampled ten times a
  second (the engine's ``SAMPLE_S``): what the application feels per transaction, its statements and the waits
  between them (for a CPU, for a row lock of ours, for the WAL flush), which statement execution time alone
  misses; compared by the caller with the same figure taken while we pause;
- the application's mean time per statement, from ``pg_stat_statements`` deltas for every role but ours
  (so our own batches never count), compared by the caller with a baseline taken while we pause;
- the round trip of a tiny committing statement timed from our own client a hundred times a second
  (:class:`Canary`): what any client of the database waits for a CPU, a lock on the server's shared structures,
  the log flush, the network: on a busy database server the application's tail latency (its p99) is mostly such
  waits, seen by every client alike, while the transactions' ages above move with the typical transaction;
- the run queue: active backends of this database that wait on nothing, per CPU (logged only);
- optional: ``/proc/pressure/cpu`` when airmigrate runs on the database host, and an external number
  (a SQL query or an HTTP URL, like gh-ost's throttle-query and throttle-http).

Sampled several times a second by :class:`Sampler`; :meth:`Sampler.collect` sums up since the last call.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from airmigrate import engines

log = logging.getLogger(__name__)

MIN_CALLS = 5  # fewer application statements in a window than this: no latency figure (too noisy)
MAX_AGE_MS = 10_000  # a transaction open longer is a batch job or a forgotten session, not the latency we protect
BLOCKED_S = 0.2  # an application session seen waiting on our lock this long (samples in a row) counts as blocked

@dataclass
class StatementTotals:
    """pg_stat_statements sums for the application's roles at one moment."""

    at: float
    total_ms: float
    calls: int

    def latency_since(self, earlier: "StatementTotals") -> float | None:
        calls = self.calls - earlier.calls
        return (self.total_ms - earlier.total_ms) / calls if calls >= MIN_CALLS else None


@dataclass
class Sampler:
    """Samples on one autocommit connection (its own, not a shard's)."""

    conn: object
    cpus: int
    use_cpu_pressure: bool = False
    external_query: str | None = None
    external_url: str | None = None
    statements: Callable[[], tuple] | None = None  # (total ms, calls) of the application's statements, when usable
    missing_statements: str | None = None       # why not, said once in the log
    activity: object = None                      # the engine's reader of the sessions (pacing_sql.activity)
    _runnable: list[int] = field(default_factory=list)
    _ages: list[float] = field(default_factory=list)
    _blocked: int = 0
    _pressure: tuple[float, float] | None = None
    _waiting: tuple = ()
    in_a_row: int = field(default=3, init=False)  # samples in a row seeing a session wait: blocked (the engine's)
    blocked_now: frozenset = field(default=frozenset(), init=False)  # the sessions the last sample counted

    def __post_init__(self):
        queries = engines.of(self.conn).pacing_sql()
        self.in_a_row = samples_in_a_row(queries.SAMPLE_S)
        self._waiting = (frozenset(),) * (self.in_a_row - 1)
        self.activity = queries.activity(self.conn)
        self.statements, self.missing_statements = queries.statements(self.conn)
        if self.missing_statements:
            log.warning("pacing without the application's latency per statement: %s. Pacing by its transactions' "
                        "age and lock waits", self.missing_statements)

    def sample(self) -> int:
        """One look at the sessions (pg_stat_activity); returns the application backends blocked by ours. A
        backend counts when `in_a_row` samples in a row see it waiting (BLOCKED_S or longer: three at PostgreSQL's
        0.1 s, two at MySQL's 0.2 s): a row lock held for a few milliseconds is no harm, one held for a batch is
        (the ages count the shorter waits)."""
        runnable, waiting, ages = self.activity.read()
        self.blocked_now = frozenset(waiting).intersection(*self._waiting)
        blocked = len(self.blocked_now)
        self._waiting = (*self._waiting[1:], frozenset(waiting))
        self._runnable.append(runnable)
        self._ages.extend(float(age) for age in ages if 0 <= age < MAX_AGE_MS)
        self._blocked = max(self._blocked, blocked)
        return blocked

    def statement_totals(self) -> StatementTotals | None:
        if self.statements is None:
            return None
        total_ms, calls = self.statements()
        return StatementTotals(time.monotonic(), float(total_ms), int(calls))

    def collect(self) -> dict:
        """Blocked (max), runnable per CPU (mean), the ages (ms) of the application's transactions seen in
        flight, CPU pressure and the external value since the last call."""
        runnable = sum(self._runnable) / len(self._runnable) if self._runnable else None
        figures = {"blocked": self._blocked,
                   "runnable_ratio": None if runnable is None else max(1.0, runnable / self.cpus),
                   "runnable": runnable,
                   "ages": self._ages,
                   "cpu_pressure_ratio": self._cpu_pressure() if self.use_cpu_pressure else None,
                   "external": self._external()}
        self._runnable, self._blocked, self._ages = [], 0, []
        return figures

    def _cpu_pressure(self) -> float | None:
        """1 + the share of time some task waited for a CPU since the last call (Linux PSI)."""
        try:
            line = open("/proc/pressure/cpu").readline()
        except OSError:
            return None
        total_us = float(line.rsplit("total=", 1)[1])
        now, previous = time.monotonic(), self._pressure
        self._pressure = (now, total_us)
        if previous is None or now <= previous[0]:
            return None
        return 1 + min(1.0, (total_us - previous[1]) / 1e6 / (now - previous[0]))

    def _external(self) -> float | None:
        try:
            if self.external_query:
                row = self.conn.execute(self.external_query).fetchone()
                return None if row is None or row[0] is None else float(row[0])
            if self.external_url:
                with urllib.request.urlopen(self.external_url, timeout=1) as response:  # noqa: S310 (user's URL)
                    return float(response.read(100).decode().strip())
        except Exception as exc:  # a broken signal must not stop the backfill: say so, treat as unknown
            log.warning("external throttle signal failed: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return None


def samples_in_a_row(period_s: float) -> int:
    """How many samples `period_s` apart, in a row, span BLOCKED_S: the first and as many periods as it takes
    (rounded so that 0.2 / 0.1 is 2, not 3)."""
    return 1 + max(1, math.ceil(round(BLOCKED_S / period_s, 6)))


def default_cpus(conn, host: str | None) -> int:
    """The database's cores: this machine's when the database is local, else what the server says (PostgreSQL:
    max_parallel_workers)."""
    if host in (None, "", "localhost", "127.0.0.1", "::1") or (host or "").startswith("/"):
        return os.cpu_count() or 1
    return engines.of(conn).pacing_sql().server_cpus(conn)


class Canary:
    """A thread timing the engine's ``CANARY`` statement from its own connection every `every_s`; `take()` hands
    over the round trips (ms) since the last call. The statement commits a write (PostgreSQL: a transaction id;
    MySQL: a counter row), so a trip waits where the application's commits wait: for a CPU, the server's shared
    structures and the log flush behind our batches' log (a ``SELECT 1`` missed that, the largest harm on the
    bench: bench/signal_check.py). Its connection is airmigrate's (`connect` marks it so: on PostgreSQL its
    application_name), so it never counts as the application. A failure stops the canary, not the backfill (the
    other signals remain)."""

    def __init__(self, connect, every_s: float = 0.02):
        self.connect, self.every_s = connect, every_s
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._trips: list[float] = []
        self.thread = threading.Thread(target=self._run, name="airmigrate-pacer-canary", daemon=True)

    def start(self) -> "Canary":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    def take(self) -> list[float]:
        with self._lock:
            trips, self._trips = self._trips, []
        return trips

    def _run(self) -> None:
        try:
            with self.connect() as conn:
                statement = engines.of(conn).pacing_sql().CANARY
                next_at = time.perf_counter()
                while not self.stopped.is_set():
                    started = time.perf_counter()
                    cur = conn.execute(statement)
                    if cur.description:
                        cur.fetchone()
                    with self._lock:
                        self._trips.append((time.perf_counter() - started) * 1000)
                    next_at = max(next_at + self.every_s, time.perf_counter())
                    self.stopped.wait(next_at - time.perf_counter())
        except Exception as exc:  # the pacer goes on with its other signals
            log.warning("pacing: the round-trip canary stopped (%s)", str(exc).splitlines()[0] if str(exc) else exc)
