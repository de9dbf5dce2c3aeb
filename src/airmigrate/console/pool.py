"""One connection per target database for the console's reads (issue 18 §11): every refresh of every tab used
to open a new connection per migration (54 in 30 s with three tabs). The connection is kept, used by one request
at a time (a lock; the reads take milliseconds) and opened again when the server dropped it."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from airmigrate import engines
from airmigrate.db import Target, connect

_lock = threading.Lock()
_pool: dict[Target, tuple[threading.Lock, list]] = {}


@contextmanager
def pooled(target: Target):
    """The target's shared autocommit connection, for the duration of the block."""
    with _lock:
        lock, holder = _pool.setdefault(target, (threading.Lock(), [None]))
    with lock:
        conn = holder[0]
        if conn is not None and not _alive(conn):
            _close(conn)
            conn = None
        if conn is None:
            holder[0] = conn = connect(target, autocommit=True)
        try:
            yield conn
        except Exception:
            if not engines.of(conn).console_sql().connection_idle(conn):
                _close(conn)  # a connection in doubt is not handed out again
                holder[0] = None
            raise


def _alive(conn) -> bool:
    """A kept connection still answers (the server may have restarted or ended it meanwhile)."""
    if not engines.of(conn).console_sql().connection_usable(conn):
        return False
    try:
        conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def _close(conn) -> None:
    """Close a connection the server may have ended already (a driver may refuse to close it twice)."""
    try:
        conn.close()
    except Exception:
        pass


def close_all() -> None:
    """Close every kept connection (tests; a server shutting down)."""
    with _lock:
        for lock, holder in _pool.values():
            with lock:
                if holder[0] is not None:
                    _close(holder[0])
                    holder[0] = None
        _pool.clear()
