"""The pandas path: read a batch, transform it with the migration's transform.py, write it back set-based.

Results go back with COPY into a temporary table (the engine's bulk load: ``Engine.copy_columns``) and one
``UPDATE ... FROM`` per batch, never row by row. bench/pandas_profile.py times each step below: the UPDATE is
65-69% of a shard's time, the bookkeeping around the batch 17-22%, all of the Python side 9-13% (0.75 us a row
of the shard's CPU, 1.3-1.55 before the DataFrame was built column by column and the COPY went binary).
"""

from __future__ import annotations

import gc
import importlib.util
from contextlib import contextmanager
from pathlib import Path

from airmigrate import engines
from airmigrate.engines import sql
from airmigrate.errors import SpecError
from airmigrate.spec import Migration

BATCH_TABLE = "airmigrate_batch"  # the temp table a batch's result goes through: one per connection, emptied at commit


def load_transform(path: Path):
    """Import transform(df) -> df from the migration's transform.py."""
    module_spec = importlib.util.spec_from_file_location(f"airmigrate_transform_{path.parent.name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, "transform", None)):
        raise SpecError(path, "transform", "no function transform(df) defined",
                        "define `def transform(df: pandas.DataFrame) -> pandas.DataFrame` in the file")
    return module.transform


def transform_statements(migration: Migration) -> dict[str, sql.Composed]:
    """The SQL of the pandas path, per batch in this order: read, temp table, copy, update (bounds %(lo)s and
    %(hi)s). One place, so `airmigrate plan --sql` prints exactly what runs."""
    spec, bf = migration.spec, migration.spec.backfill
    tbl, key = sql.Identifier(spec.schema_name, spec.table_name), sql.Identifier(spec.key)
    batch = sql.Identifier(BATCH_TABLE)
    read_cols = [spec.key, *[c for c in bf.reads if c != spec.key]]
    out_cols = sql.SQL(", ").join(map(sql.Identifier, [spec.key, *bf.columns]))
    changed = sql.SQL(" OR ").join(
        sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=sql.Identifier(c)) for c in bf.columns)
    return {
        "read": sql.SQL("SELECT {} FROM {} WHERE {} BETWEEN %(lo)s AND %(hi)s").format(
            sql.SQL(", ").join(map(sql.Identifier, read_cols)), tbl, key),
        "temp": sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS "
                        "SELECT {} FROM {} LIMIT 0").format(batch, out_cols, tbl),
        "copy": sql.SQL("COPY {} ({}) FROM STDIN").format(batch, out_cols),
        # The range on t lets the planner scan the batch's slice of the key index once and merge-join it with
        # the temp table (no statistics), instead of one index lookup per row: ~2.5x faster on 20k-row batches.
        "update": sql.SQL("UPDATE {} AS t SET {} FROM {batch} s WHERE t.{k} = s.{k} "
                          "AND t.{k} BETWEEN %(lo)s AND %(hi)s AND ({})").format(
            tbl, sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in bf.columns),
            changed, k=key, batch=batch),
    }


def apply_transform(conn, migration: Migration, transform, lo: str, hi: str, statements: dict | None = None) -> int:
    """Read the batch into pandas, transform it, write the result back: the engine's own set-based write where it
    has one (MySQL), else COPY into a temp table and one UPDATE ... FROM (PostgreSQL).
    `statements`: transform_statements(migration), composed once by a caller that runs many batches."""
    statements, bounds = statements or transform_statements(migration), {"lo": lo, "hi": hi}
    with collector_paused():
        names, rows = fetch_batch(conn, statements["read"], bounds)
        if not rows:
            return 0
        result = checked(migration, transform(build_frame(names, rows)))
        del rows
        spec = migration.spec
        out_cols = [spec.key, *spec.backfill.columns]
        written = engines.of(conn).write_rows(conn, (spec.schema_name, spec.table_name), out_cols,
                                              lambda: python_rows(result, out_cols), bounds)
        if written is not None:
            return written
        write_batch(conn, migration, statements, result)
    return update_batch(conn, statements["update"], bounds)


def python_rows(result, out_cols: list[str]):
    """The result's rows as tuples of Python objects (NaN/NaT -> None), column by column: ~4x faster than
    itertuples."""
    columns = [result[c].astype(object).where(result[c].notna(), None).tolist() for c in out_cols]
    return zip(*columns)


@contextmanager
def collector_paused():
    """Python's cyclic garbage collector off while a batch goes through pandas. The fetch makes one tuple per
    row; with the collector on they are moved to the old generation while alive, and every few batches that sets
    off a full collection walking every object of the process (a process that imported Airflow holds 200,000):
    fetching 20,000-row batches and building their DataFrames in a loop there took 2.0 us a row, 0.3 paused.
    Paused, the rows die by reference count when the batch is done; cycles the transform makes are collected
    after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# Each step a function of its own, so bench/pandas_profile.py can time it where it runs.

def fetch_batch(conn, statement, bounds: dict) -> tuple[list[str], list]:
    """The batch's rows as the driver returns them, and their column names."""
    cur = conn.execute(statement, bounds)
    return [d[0] for d in cur.description], cur.fetchall()


def build_frame(names: list[str], rows: list):
    """The DataFrame the user's transform(df) gets: the same as ``pd.DataFrame(rows, columns=names)`` (dtypes
    included), built column by column. A column of only ints, only floats or only booleans becomes its numpy
    array directly, skipping pandas' per-value type inference (0.25 us a row, more than the fetch: see
    bench/pandas_profile.py); any other column (a NULL among the values, text, numeric, dates) goes through
    pandas' own inference of records, which works column by column."""
    import pandas as pd  # start-up time: half a second, paid only by migrations with a transform.py

    if len(set(names)) != len(names):
        return pd.DataFrame(rows, columns=names)
    columns = dict(zip(names, zip(*rows)))
    frame = {name: plain_array(values) for name, values in columns.items()}
    slow = [name for name, array in frame.items() if array is None]
    if slow:
        inferred = pd.DataFrame(list(zip(*(columns[name] for name in slow))), columns=slow)
        frame.update({name: inferred[name] for name in slow})
    return pd.DataFrame(frame, columns=names)


PLAIN = {int: "i", float: "f", bool: "b"}  # a column's Python type -> the numpy kind pandas infers for it


def plain_array(values: tuple):
    """The values as the int64, float64 or bool array pandas would infer, or None when that takes inference."""
    import numpy as np

    kind = PLAIN.get(type(values[0]))  # a database column's values share one Python type, or are None
    if kind is None:
        return None
    array = np.array(values)  # a None among them: dtype object, not the kind
    return array if array.dtype.kind == kind and (kind == "b" or array.dtype.itemsize == 8) else None


def checked(migration: Migration, result):
    """The transform's result, once it is known to hold the key and every column the backfill writes."""
    spec, bf = migration.spec, migration.spec.backfill
    out_cols = [spec.key, *bf.columns]
    missing = [c for c in out_cols if c not in result.columns]
    if missing:
        raise SpecError(migration.transform_file, "transform", f"the returned DataFrame lacks columns {missing}",
                        f"return the key '{spec.key}' and every column in backfill.columns")
    return result


def write_batch(conn, migration: Migration, statements: dict, result) -> None:
    """The result into the temp table, through the engine's bulk load (COPY on PostgreSQL): a number column
    without NaN as its numpy array, any other as Python objects with NaN/NaT as None (NULL)."""
    spec, bf = migration.spec, migration.spec.backfill
    out_cols = [spec.key, *bf.columns]
    conn.execute(statements["temp"])
    columns = []
    for name in out_cols:
        values = result[name]
        if values.dtype.kind in "biuf" and not values.isna().any():
            columns.append(values.to_numpy())
        else:  # column by column to Python objects, then rows: ~4x faster than itertuples
            columns.append(values.astype(object).where(values.notna(), None).tolist())
    engines.of(conn).copy_columns(conn, BATCH_TABLE, out_cols, columns)


def update_batch(conn, statement, bounds: dict) -> int:
    """One UPDATE ... FROM the temp table: rows changed."""
    return conn.execute(statement, bounds).rowcount
