"""Preflight: every table, column, type and index the migration refers to exists (or does not, for what it
creates), before the backup and before any change."""

from __future__ import annotations

from airmigrate.spec import Migration


def check_references(conn, migration: Migration) -> None:
    """Raise PreflightError naming the file, the line and the missing (or already existing) object."""
