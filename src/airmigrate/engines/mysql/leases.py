"""The lease on MySQL / MariaDB (airmigrate.lease through the Engine): GET_LOCK is a session lock the server
releases when the session ends (a kill -9 included), but it has no shared mode. The exclusive lease (a CLI run)
keeps the migration's named lock and refuses while a shared holder lives; a shared lease (an Airflow task) takes
the migration's lock for a moment, takes a lock named after its own session, registers it in
``airmigrate.leases`` and lets the first go. Holders are named from that registry and the processlist."""

from __future__ import annotations

from datetime import timezone

from airmigrate.engines.mysql.state_names import lock_prefix, quote_identifier
from airmigrate.engines.mysql.state_sql import CREATE_DATABASE, NOW, count_tables

# The lease's registry (see the module's doc): made by the first lease, which may come before the other tables
LEASES_DDL = (
    f"""CREATE TABLE IF NOT EXISTS airmigrate.leases (
    lock_name     VARCHAR(64) NOT NULL PRIMARY KEY,
    lease_key     VARCHAR(64) NOT NULL,
    mode          VARCHAR(16) NOT NULL,
    connection_id BIGINT NOT NULL,
    label         TEXT,
    since         DATETIME(6) NOT NULL DEFAULT ({NOW}),
    KEY leases_key (lease_key)
) ENGINE = InnoDB""",
)

TRY_LOCK = "SELECT GET_LOCK(%s, 0)"
TRY_LOCK_SHARED = TRY_LOCK  # the shared mode is built from exclusive locks (module doc)
UNLOCK = "SELECT RELEASE_LOCK(%s)"
LOCK_SESSIONS = (
    "SELECT l.label, p.HOST, l.connection_id, l.mode, l.since FROM airmigrate.leases l "
    "LEFT JOIN information_schema.PROCESSLIST p ON p.ID = l.connection_id "
    "WHERE l.lease_key = %s AND IS_USED_LOCK(l.lock_name) = l.connection_id")


_LEASE_TABLES: set[tuple] = set()  # servers whose lease registry this process has seen


def lock_name(conn, key: tuple[int, int]) -> str:
    """The migration's named lock: named locks are server-wide, so the name carries the target's state database
    (two databases running the same migration id hold two leases) and the key's two halves; 43 characters
    (the limit is 64)."""
    return f"{lock_prefix(conn.state_database)}.lease.{key[0] & 0xFFFFFFFF:08x}.{key[1] & 0xFFFFFFFF:08x}"


def _ensure_leases(conn) -> None:
    where = (conn.host, conn.port, conn.state_database)
    if where in _LEASE_TABLES:
        return
    if count_tables(conn, ("leases",)) == 0:
        conn.execute(CREATE_DATABASE.format(quote_identifier(conn.state_database)))
        for statement in LEASES_DDL:
            conn.execute(statement)
    _LEASE_TABLES.add(where)


def _register(conn, name: str, key_name: str, mode: str, label: str) -> None:
    conn.execute(f"REPLACE INTO airmigrate.leases (lock_name, lease_key, mode, connection_id, label, since) "
                 f"VALUES (%s, %s, %s, CONNECTION_ID(), %s, {NOW})", (name, key_name, mode, label[:500]))


def _shared_holders(conn, key_name: str) -> int:
    return conn.execute("SELECT COUNT(*) FROM airmigrate.leases WHERE lease_key = %s AND mode = 'shared' "
                        "AND IS_USED_LOCK(lock_name) = connection_id", (key_name,)).fetchone()[0]


def lease_try(conn, key: tuple[int, int], exclusive: bool, label: str) -> bool:
    """The exclusive lease: the migration's lock, kept, and no live shared holder. The shared lease: the
    migration's lock for a moment, a lock of this session's own registered, the migration's lock let go."""
    _ensure_leases(conn)
    name = lock_name(conn, key)
    if not conn.execute(TRY_LOCK, (name,)).fetchone()[0]:
        return False
    if exclusive:
        if _shared_holders(conn, name):
            conn.execute(UNLOCK, (name,))
            return False
        _register(conn, name, name, "exclusive", label)
        return True
    try:
        own = f"{name}.s{conn.thread_id()}"
        if not conn.execute(TRY_LOCK, (own,)).fetchone()[0]:  # our own session's name: cannot be taken
            return False
        _register(conn, own, name, "shared", label)
        conn.execute("DELETE FROM airmigrate.leases WHERE lease_key = %s AND (IS_USED_LOCK(lock_name) IS NULL OR "
                     "IS_USED_LOCK(lock_name) <> connection_id)", (name,))  # the dead holders' rows
        return True
    finally:
        conn.execute(UNLOCK, (name,))


def lease_release(conn, key: tuple[int, int]) -> None:
    name = lock_name(conn, key)
    conn.execute("DELETE FROM airmigrate.leases WHERE lock_name = %s AND connection_id = CONNECTION_ID()", (name,))
    conn.execute(UNLOCK, (name,))


def lease_sessions(conn, key: tuple[int, int], exclude: set[int]) -> list[tuple]:
    """Registered holders whose session still holds their lock, and whoever holds the migration's lock without
    a row (a task between its two steps, or a session of another program): (label, host, session, mode, since)."""
    name = lock_name(conn, key)
    rows = []
    if count_tables(conn, ("leases",)):
        rows = [(label, host, session, mode, since.replace(tzinfo=timezone.utc) if since else None)
                for label, host, session, mode, since in conn.execute(LOCK_SESSIONS, (name,)).fetchall()
                if session not in exclude]
    holder = conn.execute("SELECT IS_USED_LOCK(%s)", (name,)).fetchone()[0]
    if holder is not None and holder not in exclude and holder not in {r[2] for r in rows}:
        found = conn.execute("SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE ID = %s",
                             (holder,)).fetchone()
        rows.append((f"session {holder}" + (f" of {found[0]}" if found else ""), found[1] if found else None,
                     holder, "exclusive", None))
    return rows
