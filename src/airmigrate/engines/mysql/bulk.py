"""MySQL's and MariaDB's set-based write of a batch's computed values (the pandas path of the backfill). There is
no COPY: the rows go into a session temporary table by multi-row INSERTs (one round trip per CHUNK rows, never one
per row), then one UPDATE ... JOIN writes the rows whose values differ (<=> is NULL-safe equality)."""

from __future__ import annotations

from typing import Any

from airmigrate.engines import sql
from airmigrate.engines.base import BatchWrite

BATCH_TABLE = "airmigrate_batch"
CHUNK = 1000


def batch_write(table: tuple[str, str], names: list[str]) -> BatchWrite:
    """names[0] is the key, the others are written. Inside the caller's transaction: CREATE TEMPORARY TABLE
    does not commit; the table is the session's and emptied first."""
    target, key, batch = sql.Identifier(*table), sql.Identifier(names[0]), sql.Identifier(BATCH_TABLE)
    listed = sql.SQL(", ").join(map(sql.Identifier, names))
    temp = sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} ENGINE = InnoDB AS SELECT {} FROM {} LIMIT 0").format(
        batch, listed, target)
    empty = sql.SQL("DELETE FROM {}").format(batch)
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ").format(batch, listed)
    one_row = "(" + ", ".join(["%s"] * len(names)) + ")"
    written = [sql.Identifier(c) for c in names[1:]]
    update = sql.SQL(
        "UPDATE {t} AS t JOIN {b} AS s ON t.{k} = s.{k} SET {sets} WHERE t.{k} BETWEEN %(lo)s AND %(hi)s "
        "AND NOT ({same})").format(
        t=target, b=batch, k=key,
        sets=sql.SQL(", ").join(sql.SQL("t.{c} = s.{c}").format(c=c) for c in written),
        same=sql.SQL(" AND ").join(sql.SQL("t.{c} <=> s.{c}").format(c=c) for c in written))

    def run(conn: Any, columns: list, bounds: dict) -> int:
        conn.execute(temp)
        conn.execute(empty)
        chunk: list = []
        for values in zip(*(c if isinstance(c, list) else c.tolist() for c in columns)):
            chunk.append(values)
            if len(chunk) == CHUNK:
                _insert(conn, insert, one_row, chunk)
                chunk = []
        if chunk:
            _insert(conn, insert, one_row, chunk)
        return conn.execute(update, bounds).rowcount

    return BatchWrite(statements=[("", temp), ("", empty), (f"{CHUNK} rows a statement", insert + sql.SQL(one_row)),
                                  ("", update)], run=run)


def _insert(conn: Any, insert: Any, one_row: str, chunk: list) -> None:
    conn.execute(insert + sql.SQL(", ".join([one_row] * len(chunk))), [v for row in chunk for v in row])
