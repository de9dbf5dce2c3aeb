"""One runner per migration and target: who owns a run, and the lease that proves the owner is still there.

Two CI pipelines, two operators, or a CLI run beside a DAG run must never both act on one migration. Flyway
takes a lock for its whole migrate; we take one per migration, so the migrations of two `migrate` processes
still run one after the other, each once.

- The lease is a **session lock** keyed by the migration (the same key for its up, rollback and rehearsal):
  the server releases it the moment its holder's connection dies, which is what a kill -9 needs. Each
  engine takes it its own way (``Engine.lease_try``: PostgreSQL's advisory locks, exclusive and shared;
  MySQL's named locks, GET_LOCK, with the shared mode built from one lock per holder). A CLI process (`airmigrate run`, `migrate`, `complete`) holds it **exclusively** for
  its whole run; an Airflow task holds it **shared** while it works, so the mapped shards of one run
  share it and a CLI runner cannot slip in.
- A run row names its **owner** (the Airflow DAG run id), a human-readable **holder** (which process,
  host, pid, since when), its kind (cli or airflow) and a **heartbeat** with ``lease_until``: between two
  tasks of a DAG run nothing holds the lock, so a fresh ``lease_until`` says the DAG run is still there.
  Waiting states extend it (a paused shard rescheduled, the off-peak window, a human approval).
- A second runner never joins a live run: it waits (bounded, ``--wait``) or refuses at once with
  :class:`LeaseHeld`, naming the owner. A run whose owner is gone (lock free and, for a DAG run, the
  lease expired) is taken over by the next runner and resumes where it stopped.
- A task whose DAG run no longer owns the run raises :class:`LeaseLost` and writes nothing.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

from airmigrate import engines, settings
from airmigrate.db import Target, connect
from airmigrate.errors import PreflightError

log = logging.getLogger(__name__)

LOCK_CLASS = 0x616D6967  # "amig": the first half of every lease's advisory-lock key
CLI, AIRFLOW, PROCESS = "cli", "airflow", "process"  # PROCESS: stages called directly (no Airflow, no lock)
GRACE_S = 10.0  # a task waits this long for the lock at least: a CLI runner that is about to refuse lets go of it
EXIT_BUSY = 75  # sysexits EX_TEMPFAIL: another runner holds the migration; try again later (or --wait)


def lease_seconds() -> float:
    """How long a DAG run's lease outlives its last heartbeat: longer than the scheduler's gap between two
    tasks, short enough that a dead DAG run's migration is free again soon (AIRMIGRATE_LEASE_SECONDS)."""
    return settings.seconds("AIRMIGRATE_LEASE_SECONDS", 120.0)


def heartbeat_seconds() -> float:
    return max(0.5, min(10.0, lease_seconds() / 4))


def lock_key(migration_id: str) -> tuple[int, int]:
    """The two int4 halves of the migration's advisory-lock key (stable across processes and versions)."""
    second = zlib.crc32(migration_id.encode()) & 0xFFFFFFFF
    return LOCK_CLASS, second - (1 << 32) if second >= 1 << 31 else second


class LeaseHeld(PreflightError):
    """Another runner owns the migration: this one refuses (or has waited long enough)."""

    exit_code = EXIT_BUSY


class LeaseLost(PreflightError):
    """The run this task belongs to is owned by another runner now: stop, write nothing."""


@dataclass(frozen=True)
class Owner:
    """Who is asking: the DAG run (None outside Airflow), what to call it, and its kind (cli or airflow)."""

    dag_run_id: str | None
    holder: str
    kind: str


# --- this process's leases ------------------------------------------------------------------------------

# (server, database, migration id) -> (lock connection, holder) held here: two targets of one process (a demo on
# both engines, migrate against two databases) may hold migrations of the same id, and neither is the other's
_HELD: dict[tuple[str, int, str, str], tuple[object, str]] = {}
_OWN_PIDS: set[int] = set()  # backend pids of this process's lease connections (their locks are ours)
_LABELS: dict[int, str] = {}  # backend pid -> the label its lease connection was opened with


def _place(where, migration_id: str) -> tuple[str, int, str, str]:
    """The key of a lease held here: `where` is a Target or a connection to it (its ``info`` names the server
    and database the same way)."""
    info = getattr(where, "info", None)
    if info is None:
        return str(where.host), int(where.port), str(where.dbname), migration_id
    return str(info.host), int(info.port), str(info.dbname), migration_id


def held_here(where, migration_id: str) -> str | None:
    """The holder description when this process (a CLI run) holds the migration's lease exclusively on the
    target `where` (a Target or a connection to it)."""
    held = _HELD.get(_place(where, migration_id))
    return held[1] if held else None


def owner_for(where, migration_id: str, dag_run_id: str | None) -> Owner:
    """The CLI process that holds the lease, or the Airflow DAG run this task belongs to."""
    cli = held_here(where, migration_id)
    if cli:
        return Owner(dag_run_id, cli, CLI)
    if dag_run_id is None:  # the stages called directly (tests, scripts): no DAG run to outlive a process
        return Owner(None, f"a process on {socket.gethostname()} (pid {os.getpid()})", PROCESS)
    return Owner(dag_run_id, f"Airflow DAG run {dag_run_id} on {socket.gethostname()} (pid {os.getpid()})", AIRFLOW)


def _lock_connection(target: Target, label: str):
    """A connection of its own for the lock: its application_name names the holder in pg_stat_activity, so a
    refused runner can say who holds the lock even before that holder wrote a run row."""
    conn = connect(target, autocommit=True, application_name=label)
    _OWN_PIDS.add(conn.info.backend_pid)
    _LABELS[conn.info.backend_pid] = label
    return conn


def _take(conn, migration_id: str, exclusive: bool) -> bool:
    return engines.of(conn).lease_try(conn, lock_key(migration_id), exclusive,
                                      _LABELS.get(conn.info.backend_pid, "airmigrate"))


def _release(conn, migration_id: str) -> None:
    engines.of(conn).lease_release(conn, lock_key(migration_id))


def _close(conn) -> None:
    _OWN_PIDS.discard(conn.info.backend_pid)
    _LABELS.pop(conn.info.backend_pid, None)
    with contextlib.suppress(Exception):
        conn.close()


def describe_cli(what: str) -> str:
    return (f"airmigrate {what} (CLI) by {os.environ.get('AIRMIGRATE_USER') or getpass.getuser()} on "
            f"{socket.gethostname()} (pid {os.getpid()}) since {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")


def _say(text: str) -> None:
    print(text, flush=True)


@contextlib.contextmanager
def hold_for_cli(target: Target, migration_id: str, what: str, wait_s: float = 0.0, say=_say):
    """The CLI's lease for one migration: the exclusive lock, held for the whole run (dag.test runs the tasks
    in this process; they see the lease through :func:`held_here`). Waits up to `wait_s` for another runner,
    saying once what it waits for; then refuses with LeaseHeld. Re-entrant (a cascade, migrate's runs)."""
    key = _place(target, migration_id)
    if key in _HELD:
        yield _HELD[key][1]
        return
    conn = _lock_connection(target, f"airmigrate {what.split()[0]} on {socket.gethostname()} pid {os.getpid()}")
    deadline, said = time.monotonic() + max(0.0, wait_s), False
    try:
        while True:
            busy = _try_exclusive(conn, migration_id)
            if busy is None:
                break
            if time.monotonic() >= deadline:
                raise LeaseHeld(refusal(migration_id, busy, waited=wait_s))
            if not said:
                say(f"waiting up to {wait_s:.0f} s for {migration_id}: {busy}")
                said = True
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        holder = describe_cli(what)  # since now: when it holds the lease, not when it started waiting
        _HELD[key] = (conn, holder)
        try:
            yield holder
        finally:
            _HELD.pop(key, None)
            with contextlib.suppress(Exception):
                _release(conn, migration_id)
    finally:
        _close(conn)


def _try_exclusive(conn, migration_id: str) -> str | None:
    """Take the exclusive lock when nobody holds it and no live DAG run owns an open run of the migration.
    Returns None when taken, else who is in the way. The run is looked at before the lock is taken too, so a
    runner that will refuse holds the lock as briefly as possible (a task starting meanwhile waits it out:
    GRACE_S)."""
    live = live_foreign_run(conn, migration_id, dag_run_id=None)
    if live:
        return live
    if not _take(conn, migration_id, exclusive=True):
        return lock_holders(conn, migration_id) or "another runner holds its lock"
    live = live_foreign_run(conn, migration_id, dag_run_id=None)
    if live:
        _release(conn, migration_id)
        return live
    return None


@contextlib.contextmanager
def hold_for_task(target: Target, migration_id: str, dag_run_id: str | None, wait_s: float = 0.0):
    """An Airflow task's lease while it works: the shared lock (unless this process's CLI run holds it
    exclusively) and a heartbeat thread extending its run's lease_until. Refuses with LeaseHeld while a
    CLI runner holds the lock (after waiting up to `wait_s`)."""
    key = _place(target, migration_id)
    if key in _HELD:
        with _heartbeat(_HELD[key][0], migration_id, dag_run_id):
            yield
        return
    conn = _lock_connection(target, f"airmigrate task on {socket.gethostname()} pid {os.getpid()}")
    try:
        deadline = time.monotonic() + max(GRACE_S, wait_s)
        while not _take(conn, migration_id, exclusive=False):
            if time.monotonic() >= deadline:
                busy = lock_holders(conn, migration_id) or "another runner holds its lock"
                raise LeaseHeld(refusal(migration_id, busy, waited=wait_s))
            time.sleep(1.0)
        with _heartbeat(conn, migration_id, dag_run_id):
            yield
    finally:
        _close(conn)


@contextlib.contextmanager
def _heartbeat(conn, migration_id: str, dag_run_id: str | None):
    """Every few seconds, and once more at the end (so the next task of the DAG run has a full lease to
    start in), the owner's open run says it is alive. On the lease's own connection (the driver serialises its
    use between this thread and the holder): one connection a task, not two."""
    stop = threading.Event()

    def beat() -> None:
        with contextlib.suppress(Exception):
            extend(conn, migration_id, dag_run_id, lease_seconds())

    def loop() -> None:
        while not stop.wait(heartbeat_seconds()):
            beat()

    thread = threading.Thread(target=loop, name=f"airmigrate-heartbeat-{migration_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        beat()


def extend(conn, migration_id: str, dag_run_id: str | None, seconds: float) -> None:
    """The owner's open run is alive for `seconds` more (never shortened: a waiting state may have set more)."""
    conn.execute(
        engines.of(conn).state_sql().EXTEND_LEASE, (seconds, migration_id, dag_run_id))


def extend_until(conn, migration_id: str, dag_run_id: str | None, until: datetime, why: str) -> None:
    """A waiting owner (rescheduled to the window's opening, paused, awaiting approval) keeps its lease
    until it wakes up again, plus the usual margin."""
    conn.execute(
        engines.of(conn).state_sql().EXTEND_LEASE_UNTIL,
        (until, lease_seconds(), why, migration_id, dag_run_id))


# --- who is in the way ------------------------------------------------------------------------------------

def lock_holders(conn, migration_id: str) -> str | None:
    """The other sessions holding the migration's lock, as the server names them (PostgreSQL: pg_stat_activity;
    MySQL: the processlist and the label each holder left)."""
    rows = engines.of(conn).lease_sessions(conn, lock_key(migration_id), set(_OWN_PIDS))
    if not rows:
        return None
    run = _open_run(conn, migration_id)
    who = run["holder"] if run and run.get("holder") else ", ".join(
        f"{name or 'a session'} (from {addr or 'a local socket'}"
        + (f", connected {start.astimezone(timezone.utc):%H:%M:%S} UTC)" if start else ")")
        for name, addr, _, _, start in rows)
    if not run:
        return who + " (its run is not recorded yet)"
    beat = f", last heartbeat {run['heartbeat_age']:.0f} s ago" if run.get("heartbeat_age") is not None else ""
    return who + f"; its run {run['run_id']} ({run['direction']}) is {run['status']}{beat}"


def live_foreign_run(conn, migration_id: str, dag_run_id: str | None) -> str | None:
    """An open run (either direction) owned by someone else who is still there: a lock holder, or a DAG run
    whose lease has not expired. Returns who, or None."""
    run = _open_run(conn, migration_id)
    if run is None or run["owner"] == dag_run_id:  # ours (or, both None, an unowned run of direct stage calls)
        return None
    holders = lock_holders(conn, migration_id)
    if holders:
        return holders
    if run["status"] == "running" and run["owner_kind"] == AIRFLOW and run["lease_left"] and run["lease_left"] > 0:
        return (f"{run['holder']}: its run {run['run_id']} ({run['direction']}) is running, last heartbeat "
                f"{run['heartbeat_age']:.0f} s ago, lease for {run['lease_left']:.0f} s more"
                + (f" ({run['waiting']})" if run.get("waiting") else ""))
    return None


def _open_run(conn, migration_id: str) -> dict | None:
    """The migration's open run (a running one first), or None (also on a target with no state tables yet: the
    first deploy, whose winner is still creating them)."""
    statements = engines.of(conn).state_sql()
    if not statements.state_table_exists(conn, "runs"):
        return None
    cur = conn.execute(statements.OPEN_RUN, (migration_id,))
    row = cur.fetchone()
    return dict(zip([c[0] for c in cur.description], row)) if row else None


def refusal(migration_id: str, busy: str, waited: float = 0.0) -> str:
    waited_text = f"after waiting {waited:g} s" if waited else "at once"
    return (f"{migration_id} is being run by {busy}. This runner refused {waited_text} rather than join it "
            f"(one runner per migration): see it with `airmigrate status {migration_id}` or in the console; wait "
            f"for it with --wait SECONDS (DAG param wait_for_lease). Nothing was run")
