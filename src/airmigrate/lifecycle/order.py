"""Order and dependencies between migrations: folder order, `depends_on`, and what a rollback would break."""

from __future__ import annotations

from airmigrate.spec import Migration


def check_order(conn, migration: Migration) -> None:
    """Refuse to start while an earlier migration is pending, running or failed (unless out_of_order)."""
