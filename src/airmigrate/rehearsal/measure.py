"""What a rehearsal measures on the copy: locks held by our sessions (sampled from pg_locks), WAL bytes
(pg_current_wal_lsn before and after), relation sizes, and per-stage durations."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from airmigrate.db import Target, connect

SAMPLE_S = 0.02  # pg_locks every 20 ms: a DDL held for less than that may be missed (and is harmless)

LOCKS = """
SELECT a.pid, l.mode, c.relname, left(a.query, 300)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid JOIN pg_class c ON c.oid = l.relation
WHERE l.granted AND l.locktype = 'relation' AND a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.application_name LIKE 'airmigrate%%' AND c.relname = ANY (%s)
  AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock',
                 'ShareUpdateExclusiveLock')
"""


@dataclass
class LockHold:
    stage: str
    relation: str
    mode: str
    statement: str
    first: float
    last: float

    @property
    def held_ms(self) -> float:
        return (self.last - self.first) * 1000 + SAMPLE_S * 1000  # at least one sample interval


ENDS_TRANSACTION = {"COMMIT", "ROLLBACK", "END", "COMMIT PREPARED"}


@dataclass
class LockSampler:
    """A thread that records every strong lock our sessions hold on the copied tables, per statement."""

    target: Target
    relations: list[str]
    stage: str = "start"
    holds: dict = field(default_factory=dict)
    latest: dict = field(default_factory=dict)  # (stage, pid, mode, relation) -> the hold its COMMIT extends

    def __post_init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="airmigrate-rehearsal-locks")

    def __enter__(self) -> "LockSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        with connect(self.target, autocommit=True) as conn:
            while not self.stop.is_set():
                now = time.monotonic()
                for pid, mode, relation, query in conn.execute(LOCKS, (self.relations,)).fetchall():
                    latest = self.latest.get((self.stage, pid, mode, relation))
                    if latest and query.strip().rstrip(";").upper() in ENDS_TRANSACTION:
                        latest.last = now  # still the statement that took the lock: its COMMIT is running
                        continue
                    key = (self.stage, pid, mode, relation, query)
                    hold = self.holds.get(key)
                    if hold is None or now - hold.last > 0.5:  # a new episode of the same statement
                        key = (*key, now) if hold else key
                        hold = self.holds[key] = LockHold(self.stage, relation, mode, " ".join(query.split()),
                                                          now, now)
                    else:
                        hold.last = now
                    self.latest[(self.stage, pid, mode, relation)] = hold
                self.stop.wait(SAMPLE_S)

    def summary(self) -> list[dict]:
        """The longest hold per (stage, relation, mode, statement), longest first."""
        best: dict[tuple, LockHold] = {}
        for hold in self.holds.values():
            key = (hold.stage, hold.relation, hold.mode, hold.statement)
            if key not in best or hold.held_ms > best[key].held_ms:
                best[key] = hold
        return [{"stage": h.stage, "relation": h.relation, "mode": h.mode, "statement": h.statement[:200],
                 "held_ms": round(h.held_ms, 1)} for h in sorted(best.values(), key=lambda h: -h.held_ms)]


def wal_lsn(conn) -> int:
    return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


def sizes(conn, tables: list) -> dict[str, dict]:
    out = {}
    for table in tables:
        name = f'"{table.schema}"."{table.name}"'
        heap, indexes, total = conn.execute(
            "SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass), pg_total_relation_size(%s::regclass)",
            (name, name, name)).fetchone()
        out[str(table)] = {"table_bytes": heap, "index_bytes": indexes, "total_bytes": total}
    return out


@dataclass
class Stopwatch:
    """Stage durations and the WAL each stage wrote."""

    target: Target
    stages: list = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, sampler: LockSampler | None = None):
        with connect(self.target, autocommit=True) as conn:
            before = wal_lsn(conn)
        if sampler:
            sampler.stage = name
        started, entry = time.monotonic(), {"stage": name, "status": "failed"}
        self.stages.append(entry)
        try:
            yield entry
            entry["status"] = "succeeded"
        finally:
            entry["seconds"] = round(time.monotonic() - started, 3)
            with connect(self.target, autocommit=True) as conn:
                entry["wal_bytes"] = wal_lsn(conn) - before
