"""The server-wide state of earlier versions (one database ``airmigrate`` for every target database on the
server) moved into a target database's own state database (:mod:`.state_names` says why each target database
has its own).

Moved, not copied: ``RENAME TABLE`` of every table at once is atomic and copies nothing, and the history is then
in one place only, so no two target databases ever both believe they applied the same rows. Which target gets it:
the first one that creates its own state (the old state cannot say which database each row was for; in the
common case, one target database per server, that is exactly right). The old database keeps one table,
``moved_to``, saying where its state went and when; a target database creating its state later logs a warning
naming that place instead of starting silently from nothing. Called by ``state_sql.create_state_tables`` under
its server-wide named lock, so two target databases starting at once cannot both take it.
"""

from __future__ import annotations

import logging

from airmigrate.engines.mysql.state_names import legacy_database, quote_identifier as quote

log = logging.getLogger(__name__)

MOVED_TABLE = "moved_to"


def _tables(conn, database: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' "
        "ORDER BY TABLE_NAME", (database,)).fetchall()]


def adopt_legacy_state(conn) -> str | None:
    """Before this target's state tables are first created: move the old server-wide state in, or warn where it
    went. Returns what was done (for the log and the tests), None when there was no old state."""
    legacy, own = legacy_database(), conn.state_database
    if not legacy or legacy == own:
        return None
    tables = _tables(conn, legacy)
    if "history" not in tables and MOVED_TABLE not in tables:
        return None
    if "history" in set(_tables(conn, own)):
        return None  # this target has its own state already
    if MOVED_TABLE in tables:
        went = conn.execute(f"SELECT target_db, state_db, moved_at FROM {quote(legacy)}.{MOVED_TABLE} "
                            "ORDER BY moved_at DESC LIMIT 1").fetchone()
        if went:
            log.warning("airmigrate's state of an earlier version (server-wide, in the database %s) was moved on %s "
                        "to the state of the target database %s (%s); this target database (%s) starts its own "
                        "state empty. If some of that history was this database's, copy its rows from %s.",
                        legacy, went[2], went[0], went[1], conn.db.decode() if isinstance(conn.db, bytes) else conn.db,
                        went[1])
            return f"already moved to {went[1]}"
    return _move(conn, legacy, own, [t for t in tables if t != MOVED_TABLE])


def _move(conn, legacy: str, own: str, tables: list[str]) -> str:
    conn.execute(f"CREATE DATABASE IF NOT EXISTS {quote(own)} CHARACTER SET utf8mb4")
    present = set(_tables(conn, own))   # e.g. the lease registry, made by a lease taken before the tables
    moving = [t for t in tables if t not in present]
    if moving:
        conn.execute("RENAME TABLE " + ", ".join(f"{quote(legacy)}.{quote(t)} TO {quote(own)}.{quote(t)}"
                                                 for t in moving))
    target_db = conn.db.decode() if isinstance(conn.db, bytes) else conn.db
    conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(legacy)}.{MOVED_TABLE} (target_db VARCHAR(64) NOT NULL, "
                 "state_db VARCHAR(64) NOT NULL, moved_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)), "
                 "tables TEXT) ENGINE = InnoDB")
    conn.execute(f"INSERT INTO {quote(legacy)}.{MOVED_TABLE} (target_db, state_db, tables) VALUES (%s, %s, %s)",
                 (target_db, own, ", ".join(moving)))
    log.warning("airmigrate's state of an earlier version, kept server-wide in the database %s, moved to %s, the "
                "state of the target database %s (tables: %s); %s.%s records it", legacy, own, target_db,
                ", ".join(moving) or "none", legacy, MOVED_TABLE)
    return f"moved {len(moving)} tables to {own}"
