"""MySQL's and MariaDB's set-based write of a batch's computed values (the pandas path of the backfill). There is
no COPY: the rows go into a session temporary table by multi-row INSERTs (one round trip per CHUNK rows, never one
per row), then one UPDATE ... JOIN writes the rows whose values differ (<=> is NULL-safe equality)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airmigrate.engines import sql

BATCH_TABLE = "airmigrate_batch"
CHUNK = 1000


def statements(table: tuple[str, str], columns: list[str]) -> dict[str, sql.Composed]:
    """The write's statements in run order (temp, clear, insert: the prefix before the rows' tuples, update with
    %(lo)s and %(hi)s): one place, so the plan and the report show what runs."""
    target, key, batch = sql.Identifier(*table), sql.Identifier(columns[0]), sql.Identifier(BATCH_TABLE)
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    written = [sql.Identifier(c) for c in columns[1:]]
    return {
        "temp": sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} ENGINE = InnoDB AS SELECT {} FROM {} LIMIT 0")
        .format(batch, names, target),
        "clear": sql.SQL("DELETE FROM {}").format(batch),
        "insert": sql.SQL("INSERT INTO {} ({}) VALUES ").format(batch, names),
        "update": sql.SQL("UPDATE {t} AS t JOIN {b} AS s ON t.{k} = s.{k} SET {sets} WHERE t.{k} BETWEEN %(lo)s "
                          "AND %(hi)s AND NOT ({same})").format(
            t=target, b=batch, k=key,
            sets=sql.SQL(", ").join(sql.SQL("t.{c} = s.{c}").format(c=c) for c in written),
            same=sql.SQL(" AND ").join(sql.SQL("t.{c} <=> s.{c}").format(c=c) for c in written)),
    }


def write_rows(conn: Any, table: tuple[str, str], columns: list[str], rows: Iterable[tuple], bounds: dict) -> int:
    """columns[0] is the key, the others are written; returns the rows changed. Inside the caller's transaction:
    CREATE TEMPORARY TABLE does not commit; the table is the session's and emptied first."""
    steps = statements(table, columns)
    conn.execute(steps["temp"])
    conn.execute(steps["clear"])
    one_row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    chunk: list = []
    for values in rows:
        chunk.append(values)
        if len(chunk) == CHUNK:
            _insert(conn, steps["insert"], one_row, chunk)
            chunk = []
    if chunk:
        _insert(conn, steps["insert"], one_row, chunk)
    return conn.execute(steps["update"], bounds).rowcount


def _insert(conn: Any, insert: Any, one_row: str, chunk: list) -> None:
    conn.execute(insert + sql.SQL(", ".join([one_row] * len(chunk))), [v for row in chunk for v in row])
