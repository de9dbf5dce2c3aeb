"""The target database, whichever engine runs it: connect, run DDL safely, split SQL files.

Each function hands over to the target's engine (``airmigrate.engines``): the target's own for a target, the
connection's driver for a connection, the configured target's for bare SQL text. Callers never ask which
engine they have.
"""

from __future__ import annotations

from typing import Any

from airmigrate import engines
from airmigrate.engines.base import Engine
from airmigrate.engines.target import Target
from airmigrate.errors import AirmigrateError, TransientError

__all__ = ["Target", "connect", "run_ddl", "run_group", "split_statements", "group_statements", "needs_autocommit",
           "set_timeouts", "estimate_rows", "is_transient", "engine_of", "refuse_unsupported"]


def engine_of(target: Target) -> Engine:
    return engines.named(target.engine)


def connect(target: Target, autocommit: bool = False, application_name: str | None = None) -> Any:
    return engine_of(target).connect(target, autocommit=autocommit, application_name=application_name)


def run_ddl(target: Target, sql_text: str, **options: Any) -> list[str]:
    return engine_of(target).run_ddl(target, sql_text, **options)


def run_group(target: Target, group: list[str], autocommit: bool, **options: Any) -> None:
    engine_of(target).run_group(target, group, autocommit, **options)


def split_statements(text: str) -> list[str]:
    return engines.current().split_statements(text)


def group_statements(statements: list[str]) -> list[tuple[bool, list[str]]]:
    return engines.current().group_statements(statements)


def needs_autocommit(statement: str) -> bool:
    return engines.current().needs_autocommit(statement)


def set_timeouts(cur: Any, lock_timeout_ms: int, statement_timeout_ms: int, local: bool) -> None:
    engines.of(cur).set_timeouts(cur, lock_timeout_ms, statement_timeout_ms, local)


def estimate_rows(conn: Any, schema: str, table: str) -> int:
    return engines.of(conn).estimate_rows(conn, schema, table)


def is_transient(exc: BaseException) -> bool:
    """Could a retry help? Our own TransientError, or what the configured engine says of its driver's error."""
    return isinstance(exc, TransientError) or engines.current().is_transient(exc)


def refuse_unsupported(target: Target, command: str) -> None:
    """Raise AirmigrateError, before anything connects or changes, when the target's engine cannot run the CLI
    command `command` (``Engine.command_refusal``): why, and what to do instead."""
    refusal = engine_of(target).command_refusal(command)
    if refusal is not None:
        why, fix = refusal
        raise AirmigrateError(f"`airmigrate {command}` cannot run on {target.describe()} ({target.engine}): {why}. "
                              f"Fix: {fix}. Nothing was changed")
