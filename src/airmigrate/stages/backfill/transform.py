"""The pandas path: read a batch, transform it with the migration's transform.py, write it back set-based.

Results go back set-based through the engine's write (``Engine.batch_write``: on PostgreSQL COPY into a
temporary table and one ``UPDATE ... FROM`` per batch; on MySQL multi-row INSERTs and one ``UPDATE ... JOIN``),
never row by row. bench/pandas_profile.py times each step below: the write (mostly its UPDATE) is 65-69% of a
shard's time, the bookkeeping around the batch 17-22%, all of the Python side 9-13% (0.75 us a row of the
shard's CPU, 1.3-1.55 before the DataFrame was built column by column and the COPY went binary).
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


def load_transform(path: Path):
    """Import transform(df) -> df from the migration's transform.py."""
    module_spec = importlib.util.spec_from_file_location(f"airmigrate_transform_{path.parent.name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, "transform", None)):
        raise SpecError(path, "transform", "no function transform(df) defined",
                        "define `def transform(df: pandas.DataFrame) -> pandas.DataFrame` in the file")
    return module.transform


def transform_statements(migration: Migration, conn=None) -> dict:
    """The pandas path per batch: "read" (bounds %(lo)s and %(hi)s), then "write", the write-back of `conn`'s
    engine (the configured target's without one: :class:`~airmigrate.engines.base.BatchWrite`, whose statements
    are the ones it runs). One place, so `airmigrate plan --sql` prints exactly what runs. Composed once by a
    caller that runs many batches."""
    spec, bf = migration.spec, migration.spec.backfill
    read_cols = [spec.key, *[c for c in bf.reads if c != spec.key]]
    return {
        "read": sql.SQL("SELECT {} FROM {} WHERE {} BETWEEN %(lo)s AND %(hi)s").format(
            sql.SQL(", ").join(map(sql.Identifier, read_cols)), sql.Identifier(spec.schema_name, spec.table_name),
            sql.Identifier(spec.key)),
        "write": engines.of(conn).batch_write((spec.schema_name, spec.table_name), [spec.key, *bf.columns]),
    }


def apply_transform(conn, migration: Migration, transform, lo: str, hi: str, statements: dict | None = None) -> int:
    """Read the batch into pandas, transform it, write the result back (the engine's set-based write); the rows
    changed. `statements`: transform_statements(migration), composed once by a caller that runs many batches."""
    statements, bounds = statements or transform_statements(migration, conn), {"lo": lo, "hi": hi}
    with collector_paused():
        names, rows = fetch_batch(conn, statements["read"], bounds)
        if not rows:
            return 0
        result = checked(migration, transform(build_frame(names, rows)))
        del rows
        return write_batch(conn, migration, statements["write"], result, bounds)


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


def write_batch(conn, migration: Migration, write, result, bounds: dict) -> int:
    """The result through the engine's write (`write`: a BatchWrite), column by column: a number column without
    NaN as its numpy array (PostgreSQL's COPY sends it as one binary block), any other as Python objects with
    NaN/NaT as None (NULL), ~4x faster than itertuples. Returns the rows changed."""
    spec = migration.spec
    columns = []
    for name in [spec.key, *spec.backfill.columns]:
        values = result[name]
        if values.dtype.kind in "biuf" and not values.isna().any():
            columns.append(values.to_numpy())
        else:
            columns.append(values.astype(object).where(values.notna(), None).tolist())
    return write.run(conn, columns, bounds)
