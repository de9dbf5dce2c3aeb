"""The replicas' lag on MySQL / MariaDB, for the throttle's max_replication_lag_s hard stop: a MySQL primary does
not know how far behind its replicas are (PostgreSQL's pg_stat_replication has no counterpart), so each replica
named in the throttle (``replicas: [host:port]``) is asked, with the target's user and password.

The statement differs by server and version: MariaDB 10.5+ ``SHOW ALL REPLICAS STATUS`` (every replication
connection of a multi-source replica), MySQL 8.0.22+ ``SHOW REPLICA STATUS``, older ones ``SHOW SLAVE STATUS``; the
column is ``Seconds_Behind_Master`` or ``Seconds_Behind_Source``. NULL there means the replication threads are
not running: reported as an unknown (infinite) lag, so the shard pauses (gh-ost does the same) rather than
piling up work a stopped replica will have to replay.

The health check runs before every batch: one connection per replica is kept for the process, and a figure is
reused for READ_EVERY_S.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from airmigrate.engines.mysql.connection import connect, message
from airmigrate.errors import AirmigrateError

STATEMENTS = ("SHOW ALL REPLICAS STATUS", "SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
COLUMNS = ("Seconds_Behind_Master", "Seconds_Behind_Source")
READ_EVERY_S = 0.5

_lock = threading.Lock()
_connections: dict[tuple, object] = {}
_last: dict[tuple, tuple[float, float]] = {}  # replica -> (when read, lag)


def _target(conn, replica: str):
    host, _, port = replica.rpartition(":") if ":" in replica else (replica, "", "3306")
    return dataclasses.replace(conn.target, host=host, port=int(port), dbname="mysql")


def _status(replica_conn) -> list[dict]:
    """The replica's status rows as dicts, from the first statement this server knows."""
    last_error = None
    for statement in STATEMENTS:
        try:
            cur = replica_conn.execute(statement)
        except Exception as exc:  # this server spells it otherwise: the next one
            last_error = exc
            continue
        names = [column[0] for column in cur.description or ()]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    raise last_error


def lag_of(replica_conn, replica: str) -> float:
    """One replica's lag in seconds (inf: its replication threads are stopped)."""
    rows = _status(replica_conn)
    if not rows:
        raise AirmigrateError(f"throttle.replicas: {replica} is not a replica (SHOW REPLICA STATUS is empty). Fix: "
                              "name the target's replicas there, or remove it")
    lags = [next((row[c] for c in COLUMNS if c in row), None) for row in rows]
    return float("inf") if any(lag is None for lag in lags) else float(max(lags))


def lag_s(conn, replicas: tuple[str, ...]) -> float | None:
    """The largest lag of `replicas`, each read at most every READ_EVERY_S on a connection kept for the process."""
    if not replicas:
        return None
    worst = 0.0
    for replica in replicas:
        target = _target(conn, replica)
        key = (target.host, target.port, target.user)
        with _lock:
            read_at, lag = _last.get(key, (0.0, 0.0))
            if time.monotonic() - read_at >= READ_EVERY_S:
                lag = _read(key, target, replica)
                _last[key] = (time.monotonic(), lag)
        worst = max(worst, lag)
    return worst


def _read(key: tuple, target, replica: str) -> float:
    """On the kept connection; a lost one is opened again once (the replica restarted)."""
    for attempt in (1, 2):
        replica_conn = _connections.get(key)
        if replica_conn is None:
            replica_conn = _connections[key] = connect(target, autocommit=True, application_name="airmigrate lag")
        try:
            return lag_of(replica_conn, replica)
        except AirmigrateError:
            raise
        except Exception as exc:
            _connections.pop(key, None)
            if attempt == 2:
                raise AirmigrateError(f"throttle.replicas: cannot read the lag of {replica} ({message(exc)}). Fix: "
                                      "let the target's user read the replica's status there (GRANT REPLICATION "
                                      "CLIENT; MariaDB 10.5+: REPLICA MONITOR)") from None
    raise AssertionError("unreachable")
