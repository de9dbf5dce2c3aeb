"""The pandas path's write-back on PostgreSQL (:meth:`airmigrate.engines.base.Engine.batch_write`): the batch's
values COPY into a temp table of this connection, then one ``UPDATE ... FROM`` writes the rows that differ, never
row by row (bench/pandas_profile.py: the UPDATE is most of a shard's time).

Measured on 30,000-row batches (bench/pandas_profile.py): psycopg's ``write_row`` costs ~0.3 us of Python per
row (a call and a tuple per row), as much as the fetch and more than the user's transform. So a batch whose every
column is a fixed-width number or a boolean without NULLs, going into a column of the same kind, goes as ONE block
of COPY's binary format that numpy lays out (no Python object per value; the server also parses binary faster).
Anything else (text, numeric, dates, NULLs, a value out of the column's range) goes row by row through psycopg's
text COPY, which adapts every type psycopg knows and lets the server report a bad value in its own words.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from psycopg import sql as pgsql

from airmigrate.engines import sql
from airmigrate.engines.base import BatchWrite

# PostgreSQL type OID -> the big-endian numpy type of its binary COPY form, and the numpy kinds that convert to it
# exactly (float4 is left to the text path: float64 -> float32 here and the server's parse of the decimal text
# could round differently).
BINARY = {16: ("?", "b"), 21: (">i2", "iu"), 23: (">i4", "iu"), 20: (">i8", "iu"), 701: (">f8", "iuf")}
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
TRAILER = b"\xff\xff"
TYPES: WeakKeyDictionary = WeakKeyDictionary()  # connection -> {(table, names): column type OIDs}: one query each
BATCH_TABLE = "airmigrate_batch"  # the temp table a batch goes through: one per connection, emptied at commit


def batch_write(table: tuple[str, str], names: list[str]) -> BatchWrite:
    """A temp table shaped like the written columns (made once per connection, ON COMMIT DELETE ROWS), the
    batch COPY'd into it (:func:`copy_columns`), one UPDATE ... FROM of the rows whose values differ."""
    tbl, key, batch = sql.Identifier(*table), sql.Identifier(names[0]), sql.Identifier(BATCH_TABLE)
    listed = sql.SQL(", ").join(map(sql.Identifier, names))
    written = [sql.Identifier(c) for c in names[1:]]
    temp = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS SELECT {} FROM {} LIMIT 0").format(
        batch, listed, tbl)
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(batch, listed)
    # The range on t lets the planner scan the batch's slice of the key index once and merge-join it with the
    # temp table (no statistics), instead of one index lookup per row: ~2.5x faster on 20k-row batches.
    update = sql.SQL("UPDATE {} AS t SET {} FROM {batch} s WHERE t.{k} = s.{k} "
                     "AND t.{k} BETWEEN %(lo)s AND %(hi)s AND ({})").format(
        tbl, sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=c) for c in written),
        sql.SQL(" OR ").join(sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=c) for c in written),
        k=key, batch=batch)

    def run(conn, columns: list, bounds: dict) -> int:
        conn.execute(temp)
        copy_columns(conn, BATCH_TABLE, names, columns)
        return conn.execute(update, bounds).rowcount

    return BatchWrite(statements=[("", temp), ("", copy), ("the transformed rows, streamed by COPY", update)],
                      run=run)


def copy_columns(conn, table: str, names: list[str], columns: list) -> None:
    """COPY the rows, given column by column (a numpy array, or a list of Python values with None for NULL),
    into `table`'s `names`: one binary block when every column allows it, else row by row in text."""
    target, listed = pgsql.Identifier(table), pgsql.SQL(", ").join(map(pgsql.Identifier, names))
    block = binary_block(columns, column_types(conn, table, names))
    if block is not None:
        with conn.cursor().copy(pgsql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(target, listed)) as copy:
            copy.write(block)
        return
    with conn.cursor().copy(pgsql.SQL("COPY {} ({}) FROM STDIN").format(target, listed)) as copy:
        for values in zip(*(column if isinstance(column, list) else column.tolist() for column in columns)):
            copy.write_row(values)


def column_types(conn, table: str, names: list[str]) -> list[int]:
    """The type OIDs of the table's columns, asked once per connection (a temp table dropped by a rollback comes
    back with the same types: it copies them from the migrated table)."""
    known = TYPES.setdefault(conn, {})
    if (table, tuple(names)) not in known:
        listed = pgsql.SQL(", ").join(map(pgsql.Identifier, names))
        shape = conn.execute(pgsql.SQL("SELECT {} FROM {} LIMIT 0").format(listed, pgsql.Identifier(table)))
        known[table, tuple(names)] = [column.type_code for column in shape.description]
    return known[table, tuple(names)]


def binary_block(columns: list, oids: list[int]) -> bytes | None:
    """The whole COPY binary stream for these columns, or None when one of them cannot go exactly."""
    import numpy as np  # already loaded by pandas when this runs; the engine is imported by processes without it

    if not columns or not all(fits(column, oid) for column, oid in zip(columns, oids)):
        return None
    fields = [("count", ">i2")]
    for n, oid in enumerate(oids):
        fields += [(f"length{n}", ">i4"), (f"value{n}", BINARY[oid][0])]
    rows = np.empty(len(columns[0]), dtype=fields)  # packed: no padding between fields, as COPY lays them out
    rows["count"] = len(columns)
    for n, (column, oid) in enumerate(zip(columns, oids)):
        rows[f"length{n}"] = np.dtype(BINARY[oid][0]).itemsize
        rows[f"value{n}"] = column
    return SIGNATURE + rows.tobytes() + TRAILER


def fits(column: Any, oid: int) -> bool:
    """A numpy array of a kind that converts exactly to the column's binary form, every value in its range."""
    import numpy as np

    kind = getattr(getattr(column, "dtype", None), "kind", None)
    if oid not in BINARY or kind is None or kind not in BINARY[oid][1] or column.ndim != 1:
        return False
    if kind in "iu" and oid != 701 and len(column):
        limits = np.iinfo(BINARY[oid][0])
        return bool(limits.min <= column.min() and column.max() <= limits.max)
    return True
