"""backfill: key-range batches, each its own transaction together with its state row.

Planning walks the key index (never count(*), never min..max arithmetic, so sparse keys
still give even batches). Workers claim a batch with ``FOR UPDATE SKIP LOCKED`` and keep
that row lock while they change the data: the data change and ``status = 'succeeded'``
commit together, so a killed worker leaves its batch pending and nothing half-done.
Any number of shards (mapped Airflow tasks) can share one run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import time
from pathlib import Path

import psycopg
from psycopg import sql

from airmigrate import state
from airmigrate.db import Target, connect, set_timeouts
from airmigrate.errors import BackfillError, SpecError
from airmigrate.spec import Migration
from airmigrate.stages.generated import runtime_steps

log = logging.getLogger(__name__)


def plan_batches(target: Target, migration: Migration, run_id: int, batch_size: int | None = None) -> int:
    """Write the run's batch rows once (a resumed run keeps its plan). Returns the number of batches."""
    spec = migration.spec
    size = batch_size or spec.batch_size
    with connect(target, autocommit=True) as conn, conn.transaction():
        if not has_backfill(conn, migration):
            return 0
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (run_id,))
        planned = conn.execute("SELECT count(*) FROM airmigrate.batches WHERE run_id = %s", (run_id,)).fetchone()[0]
        if planned:
            log.info("run %d already has %d batches planned; resuming", run_id, planned)
            return planned
        bounds = list(key_ranges(conn, spec.schema_name, spec.table_name, spec.key, size))
        with conn.cursor().copy("COPY airmigrate.batches (run_id, batch_no, lo, hi) FROM STDIN") as copy:
            for batch_no, (lo, hi) in enumerate(bounds):
                copy.write_row((run_id, batch_no, lo, hi))
    log.info("planned %d batches of up to %d rows on %s.%s", len(bounds), size, spec.table, spec.key)
    return len(bounds)


def key_ranges(conn, schema: str, table: str, key: str, size: int):
    """Yield inclusive (lo, hi) key bounds of `size` rows each, by walking the key's index."""
    tbl, col = sql.Identifier(schema, table), sql.Identifier(key)
    first = sql.SQL("SELECT {c}::text AS k FROM {t} ORDER BY {c} LIMIT 1").format(c=col, t=tbl)
    nth = sql.SQL("SELECT {c}::text AS k FROM {t} WHERE {c} >= %s ORDER BY {c} OFFSET %s LIMIT 1").format(c=col, t=tbl)
    last = sql.SQL("SELECT max({c})::text AS k FROM {t} WHERE {c} >= %s").format(c=col, t=tbl)
    after = sql.SQL("SELECT {c}::text AS k FROM {t} WHERE {c} > %s ORDER BY {c} LIMIT 1").format(c=col, t=tbl)
    row = conn.execute(first).fetchone()
    lo = row[0] if row else None
    while lo is not None:
        row = conn.execute(nth, (lo, size - 1)).fetchone()
        hi = row[0] if row else conn.execute(last, (lo,)).fetchone()[0]
        yield lo, hi
        row = conn.execute(after, (hi,)).fetchone()
        lo = row[0] if row else None


def run_shard(target: Target, migration: Migration, run_id: int, shard: int = 0, retry_failed: bool = False,
              max_failed_share: float = 0.5) -> dict:
    """Claim and run batches until none is left; raise BackfillError listing the failed ranges at the end."""
    spec = migration.spec
    with connect(target, autocommit=True) as conn:
        if not has_backfill(conn, migration):
            return {"batches": 0, "rows": 0}
        generated = runtime_steps(conn, migration).backfill
    apply_batch = _batch_function(migration, generated)
    worker = f"{socket.gethostname()}:{os.getpid()}:shard{shard}"
    done_rows = done_batches = 0
    started = time.monotonic()
    with connect(target) as conn:
        if retry_failed:
            _requeue_failed(conn, run_id)
        while (batch := _claim_and_run(conn, migration, run_id, worker, apply_batch)) is not None:
            if batch.get("rows") is not None:
                done_rows += batch["rows"]
                done_batches += 1
                _log_progress(conn, run_id, shard, batch, done_rows, time.monotonic() - started)
            if _failed_share(conn, run_id) > max_failed_share:
                log.error("more than %.0f%% of batches failed: stopping early", max_failed_share * 100)
                break
        summary = state.batch_summary(conn, run_id)
        failed = state.failed_batches(conn, run_id)
    elapsed = time.monotonic() - started
    log.info("shard %d done: %d batches, %s rows in %.1fs (%s rows/s); run: %d/%d batches succeeded, %d failed",
             shard, done_batches, f"{done_rows:,}", elapsed, f"{done_rows / max(elapsed, 1e-9):,.0f}",
             summary["succeeded"], summary["total"], summary["failed"])
    if failed:
        lines = "; ".join(f"batch {b} [{lo}..{hi}] after {a} attempts: {err}" for b, lo, hi, a, err in failed[:10])
        raise BackfillError(f"{len(failed)} batch(es) failed: {lines}. Fix the cause, then clear this task or "
                            "trigger the DAG with retry_failed=true: only the failed batches run again", failed)
    return {"batches": done_batches, "rows": done_rows, "seconds": elapsed}


def _claim_and_run(conn, migration: Migration, run_id: int, worker: str, apply_batch) -> dict | None:
    """One transaction: claim a pending batch (SKIP LOCKED), change its rows, mark it succeeded."""
    spec = migration.spec
    batch_no = lo = hi = attempts = None
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT batch_no, lo, hi, attempts FROM airmigrate.batches WHERE run_id = %s AND status = 'pending' "
                "ORDER BY batch_no LIMIT 1 FOR UPDATE SKIP LOCKED", (run_id,)).fetchone()
            if row is None:
                return None
            batch_no, lo, hi, attempts = row
            set_timeouts(conn, spec.lock_timeout_ms * 10, spec.statement_timeout_ms, local=True)
            t0 = time.monotonic()
            rows = apply_batch(conn, lo, hi)
            conn.execute(
                "UPDATE airmigrate.batches SET status = 'succeeded', rows = %s, attempts = attempts + 1, worker = %s, "
                "last_error = NULL, started_at = now() - make_interval(secs => %s), finished_at = now() "
                "WHERE run_id = %s AND batch_no = %s", (rows, worker, time.monotonic() - t0, run_id, batch_no))
        return {"batch_no": batch_no, "lo": lo, "hi": hi, "rows": rows, "seconds": time.monotonic() - t0}
    except (psycopg.OperationalError, SpecError):
        raise  # connection lost or a broken transform: the batch rolled back; the task fails, a retry resumes
    except Exception as exc:  # the user's SQL or transform failed on this batch: count it, go on with others
        if batch_no is None:
            raise
        return _record_failure(conn, run_id, batch_no, lo, hi, attempts, spec.backfill.max_attempts if spec.backfill else 3,
                               exc, worker)


def _record_failure(conn, run_id, batch_no, lo, hi, attempts, max_attempts, exc, worker) -> dict:
    """The batch's data change rolled back; count the attempt and keep it pending until max_attempts."""
    error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
    status = "failed" if attempts + 1 >= max_attempts else "pending"
    with conn.transaction():
        conn.execute("UPDATE airmigrate.batches SET attempts = attempts + 1, status = %s, last_error = %s, "
                     "worker = %s WHERE run_id = %s AND batch_no = %s", (status, error, worker, run_id, batch_no))
    log.warning("batch %d [%s..%s] attempt %d/%d failed: %s", batch_no, lo, hi, attempts + 1, max_attempts, error)
    if status == "pending":
        time.sleep(min(10.0, 0.5 * 2 ** attempts))
    return {"batch_no": batch_no, "rows": None}


def _requeue_failed(conn, run_id: int) -> None:
    with conn.transaction():
        n = conn.execute("UPDATE airmigrate.batches SET status = 'pending', attempts = 0 WHERE run_id = %s "
                         "AND status = 'failed'", (run_id,)).rowcount
    log.info("retry_failed: %d failed batch(es) queued again", n)


def _failed_share(conn, run_id: int) -> float:
    total, failed = conn.execute("SELECT count(*), count(*) FILTER (WHERE status = 'failed') FROM airmigrate.batches "
                                 "WHERE run_id = %s", (run_id,)).fetchone()
    conn.commit()
    return failed / total if total else 0.0


def _log_progress(conn, run_id: int, shard: int, batch: dict, shard_rows: int, elapsed: float) -> None:
    total, done = conn.execute("SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') "
                               "FROM airmigrate.batches WHERE run_id = %s", (run_id,)).fetchone()
    conn.commit()
    rate = shard_rows / max(elapsed, 1e-9)
    batches_per_s = max(done, 1) / max(elapsed, 1e-9)
    eta = (total - done) / batches_per_s
    log.info("batch %d [%s..%s]: %s rows in %.2fs | shard %d: %s rows, %s rows/s | run %d/%d batches (%.0f%%), "
             "ETA %s", batch["batch_no"], batch["lo"], batch["hi"], f"{batch['rows']:,}", batch["seconds"], shard,
             f"{shard_rows:,}", f"{rate:,.0f}", done, total, 100 * done / max(total, 1), _duration(eta))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _escape_percent(statement: str) -> str:
    """Generated SQL carries user expressions (LIKE 'a%'): double every % but the batch placeholders."""
    return statement.replace("%", "%%").replace("%%(lo)s", "%(lo)s").replace("%%(hi)s", "%(hi)s")


def has_backfill(conn, migration: Migration) -> bool:
    return migration.spec.backfill is not None or bool(runtime_steps(conn, migration).backfill)


def _batch_function(migration: Migration, generated: list[str]):
    """The per-batch change: the user's UPDATE or the pandas round trip through transform.py, then the
    statements the declared operations generate. Returns rows written."""
    statements = [migration.backfill_sql.strip().rstrip(";")] if migration.backfill_sql is not None else []
    statements += [_escape_percent(statement) for statement in generated]
    transform = load_transform(migration.transform_file) if migration.transform_file else None

    def apply_batch(conn, lo, hi) -> int:
        rows = apply_transform(conn, migration, transform, lo, hi) if transform else 0
        for statement in statements:
            rows += conn.execute(statement, {"lo": lo, "hi": hi}).rowcount
        return rows

    return apply_batch


def load_transform(path: Path):
    """Import transform(df) -> df from the migration's transform.py."""
    module_spec = importlib.util.spec_from_file_location(f"airmigrate_transform_{path.parent.name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, "transform", None)):
        raise SpecError(path, "transform", "no function transform(df) defined",
                        "define `def transform(df: pandas.DataFrame) -> pandas.DataFrame` in the file")
    return module.transform


def apply_transform(conn, migration: Migration, transform, lo, hi) -> int:
    """Read the batch into pandas, transform it, COPY the result into a temp table, one UPDATE ... FROM."""
    import pandas as pd

    spec, bf = migration.spec, migration.spec.backfill
    tbl, key = sql.Identifier(spec.schema_name, spec.table_name), sql.Identifier(spec.key)
    read_cols = [spec.key, *[c for c in bf.reads if c != spec.key]]
    cur = conn.execute(sql.SQL("SELECT {} FROM {} WHERE {} BETWEEN %s AND %s").format(
        sql.SQL(", ").join(map(sql.Identifier, read_cols)), tbl, key), (lo, hi))
    frame = pd.DataFrame(cur.fetchall(), columns=read_cols)
    if frame.empty:
        return 0
    result = transform(frame)
    missing = [c for c in [spec.key, *bf.columns] if c not in result.columns]
    if missing:
        raise SpecError(migration.transform_file, "transform", f"the returned DataFrame lacks columns {missing}",
                        f"return the key '{spec.key}' and every column in backfill.columns")
    out_cols = [spec.key, *bf.columns]
    conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS airmigrate_batch ON COMMIT DELETE ROWS AS "
                         "SELECT {} FROM {} LIMIT 0").format(sql.SQL(", ").join(map(sql.Identifier, out_cols)), tbl))
    with conn.cursor().copy(sql.SQL("COPY airmigrate_batch ({}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, out_cols)))) as copy:
        for values in result[out_cols].astype(object).where(result[out_cols].notna(), None).itertuples(index=False):
            copy.write_row(values)
    changed = sql.SQL(" OR ").join(
        sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=sql.Identifier(c)) for c in bf.columns)
    return conn.execute(sql.SQL("UPDATE {} AS t SET {} FROM airmigrate_batch s WHERE t.{k} = s.{k} AND ({})").format(
        tbl, sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in bf.columns),
        changed, k=key)).rowcount
