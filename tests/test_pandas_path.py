"""The pandas path (backfill.transform) on a real PostgreSQL: the same rows as the SQL path, NULLs, text and
numeric included; the DataFrame the transform gets is the one pandas makes of the records; the bulk write's
binary block and its text fallback; a failed batch rolls back and runs again."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from airmigrate import engines
from airmigrate.db import connect
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, preflight, schema_change
from airmigrate.stages.backfill.transform import build_frame

COLUMNS = {"twice": "bigint", "small": "int", "n2": "bigint", "label": "text", "total": "numeric(12,2)",
           "quarter": "float8", "ok": "boolean"}
SQL_PATH = ("UPDATE items SET twice = id * 2, small = id %% 100, n2 = qty * 2, label = upper(name) || '-', "
            "total = price * 2, quarter = qty / 4.0::float8, ok = NOT flag WHERE id BETWEEN %(lo)s AND %(hi)s")
TRANSFORM = '''
import pandas as pd


def transform(df):
    flip = {True: False, False: True}
    return pd.DataFrame({
        "id": df["id"],
        "p_twice": df["id"] * 2,                                  # int64, no NULL: the binary block
        "p_small": df["id"] % 100,                                # int64 into an int column
        "p_n2": (df["qty"] * 2).astype("Int64"),                  # NULLs: pd.NA
        "p_label": df["name"].str.upper() + "-",                  # text with NULLs
        "p_total": df["price"].map(lambda p: None if p is None else p * 2),  # Decimal, None
        "p_quarter": df["qty"] / 4.0,                             # float64 with NaN
        "p_ok": df["flag"].map(lambda f: None if f is None else flip[f]),   # booleans with None
    })
'''


def migration_folder(tmp_path, name: str, backfill_spec: dict, up: str, files: dict | None = None):
    folder = tmp_path / name
    folder.mkdir()
    for file_name, text in (files or {}).items():
        (folder / file_name).write_text(text)
    (folder / "up.sql").write_text(up)
    (folder / "down.sql").write_text("SELECT 1;")
    spec = {"description": name, "table": "items", "key": "id", "batch_size": 300, "shards": 1,
            "out_of_order": True, "backfill": {"adaptive": False, **backfill_spec}}
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    return load_migration(folder)


def run(target, migration) -> dict:
    run_id = preflight.preflight(target, migration)["run_id"]
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id)
    return backfill.run_shard(target, migration, run_id)


@pytest.fixture
def items(empty_db):
    with connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, qty int, price numeric(10,2), name text, flag bool)")
        conn.execute("INSERT INTO items SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE g % 37 END, "
                     "CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 1000) / 7.0 END, "
                     "CASE WHEN g % 3 = 0 THEN NULL ELSE 'item ' || g END, "
                     "CASE WHEN g % 4 = 0 THEN NULL ELSE g % 2 = 0 END FROM generate_series(1, 2000) g")
    return empty_db


def test_the_pandas_path_writes_what_the_sql_path_writes_row_for_row(items, tmp_path):
    sql_cols = ", ".join(f"ADD COLUMN {c} {t}" for c, t in COLUMNS.items())
    pandas_cols = ", ".join(f"ADD COLUMN p_{c} {t}" for c, t in COLUMNS.items())
    by_sql = migration_folder(tmp_path, "0001_sql_path", {"sql": "backfill.sql", "columns": list(COLUMNS)},
                              f"ALTER TABLE items {sql_cols};", {"backfill.sql": SQL_PATH})
    by_pandas = migration_folder(tmp_path, "0002_pandas_path",
                                 {"transform": "transform.py", "reads": ["qty", "price", "name", "flag"],
                                  "columns": [f"p_{c}" for c in COLUMNS]}, f"ALTER TABLE items {pandas_cols};",
                                 {"transform.py": TRANSFORM})

    assert run(items, by_sql)["rows"] == 2000
    assert run(items, by_pandas)["rows"] == 2000
    with connect(items) as conn:
        differ = conn.execute("SELECT count(*) FROM items WHERE ({}) IS DISTINCT FROM ({})".format(
            ", ".join(COLUMNS), ", ".join(f"p_{c}" for c in COLUMNS))).fetchone()[0]
        nulls = conn.execute("SELECT count(*) FILTER (WHERE p_n2 IS NULL), count(*) FILTER (WHERE p_label IS NULL), "
                             "count(*) FILTER (WHERE p_total IS NULL), count(*) FILTER (WHERE p_ok IS NULL), "
                             "count(*) FILTER (WHERE p_label LIKE 'ITEM %-' AND p_total > 0) FROM items").fetchone()
        sample = conn.execute("SELECT p_twice, p_small, p_n2, p_label, p_total, p_quarter, p_ok FROM items "
                              "WHERE id = 1006").fetchone()
    assert differ == 0
    assert nulls == (400, 666, 285, 500, nulls[4]) and nulls[4] > 500  # NULLs where the inputs had them
    assert [str(v) for v in sample] == ["2012", "6", "14", "ITEM 1006-", "1.72", "1.75", "False"]


def test_the_dataframe_is_the_one_pandas_makes_of_the_records(empty_db):
    """build_frame's numpy shortcut gives the same frame, dtypes included, as pd.DataFrame(rows)."""
    with connect(empty_db) as conn:
        cur = conn.execute(
            "SELECT g::int AS i, CASE WHEN g % 3 = 0 THEN NULL ELSE g END::bigint AS i_null, g::numeric / 7 AS n, "
            "'x' || g AS t, g % 2 = 0 AS b, CASE WHEN g % 5 = 0 THEN NULL ELSE g % 2 = 0 END AS b_null, "
            "g / 3.0::float8 AS f, CASE WHEN g % 4 = 0 THEN NULL ELSE g / 3.0 END::float8 AS f_null, "
            "now() AS ts, current_date AS d, jsonb_build_object('g', g) AS j, ARRAY[g, g] AS arr, "
            "(2 ^ 62)::bigint AS big FROM generate_series(1, 500) g")
        names, rows = [d.name for d in cur.description], cur.fetchall()
    pd.testing.assert_frame_equal(build_frame(names, rows), pd.DataFrame(rows, columns=names))
    assert build_frame(names, rows)["i"].dtype == "int64" and build_frame(names, rows)["i_null"].dtype == "float64"


def copied(target, column_type: str, columns: list):
    """The values through the engine's write-back (Engine.batch_write: COPY, then UPDATE ... FROM) into a table
    whose rows 1..3 have v NULL."""
    with connect(target) as conn:
        conn.execute(f"CREATE TEMP TABLE scratch (k bigint PRIMARY KEY, v {column_type})")
        conn.execute("INSERT INTO scratch (k) VALUES (1), (2), (3)")
        write = engines.of(conn).batch_write(("pg_temp", "scratch"), ["k", "v"])
        changed = write.run(conn, columns, {"lo": 1, "hi": 3})
        rows = conn.execute("SELECT k, v FROM scratch ORDER BY k").fetchall()
        assert changed == sum(v is not None for _, v in rows)  # a NULL over a NULL is no change
        return rows


def test_the_bulk_write_goes_binary_or_falls_back_to_text_with_the_same_result(empty_db):
    import numpy as np

    keys = np.arange(1, 4, dtype="int64")
    assert copied(empty_db, "int", [keys, np.array([7, -8, 9])]) == [(1, 7), (2, -8), (3, 9)]
    assert copied(empty_db, "float8", [keys, np.array([0.1, 2.5, -3.0])]) == [(1, 0.1), (2, 2.5), (3, -3.0)]
    assert copied(empty_db, "boolean", [keys, np.array([True, False, True])]) == [(1, True), (2, False), (3, True)]
    assert copied(empty_db, "numeric", [keys, [None, 1, 2]]) == [(1, None), (2, 1), (3, 2)]  # text: NULLs
    assert copied(empty_db, "text", [keys, ["a\tb", None, "c\\d"]]) == [(1, "a\tb"), (2, None), (3, "c\\d")]
    with pytest.raises(Exception, match="out of range"):  # past int4: the server says so, as before
        copied(empty_db, "int", [keys, np.array([1, 2**40, 3])])


FLAKY = '''
from pathlib import Path


def transform(df):
    if 1001 in set(df["id"]) and not Path({marker!r}).exists():
        Path({marker!r}).write_text("x")
        raise RuntimeError("the first attempt at this batch fails")
    return df.assign(q2=(df["qty"] * 2).astype("Int64"))[["id", "q2"]]
'''


def test_a_failed_pandas_batch_rolls_back_and_runs_again(items, tmp_path):
    """The batch's change and its state row commit together: a transform failing once leaves nothing behind,
    and the batch's second attempt writes it."""
    marker = tmp_path / "failed_once"
    migration = migration_folder(tmp_path, "0003_flaky", {"transform": "transform.py", "reads": ["qty"],
                                                          "columns": ["q2"], "max_attempts": 3},
                                 "ALTER TABLE items ADD COLUMN q2 bigint;",
                                 {"transform.py": FLAKY.format(marker=str(marker))})
    result = run(items, migration)
    assert marker.exists() and result["rows"] == 1600  # the 400 rows with a NULL qty keep their NULL
    with connect(items) as conn:
        wrong = conn.execute("SELECT count(*) FROM items WHERE q2 IS DISTINCT FROM qty * 2").fetchone()[0]
        attempts = conn.execute("SELECT max(attempts), count(*) FILTER (WHERE status <> 'succeeded') "
                                "FROM airmigrate.batches").fetchone()
    assert wrong == 0 and attempts == (2, 0)
