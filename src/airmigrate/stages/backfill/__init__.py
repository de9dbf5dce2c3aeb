"""backfill: key-range batches created on the fly, claimed by any number of workers, each batch one
transaction together with its state row.

A cursor row per run (``airmigrate.cursors``) hands out the next range: its `size` keys found by
walking the key's index (never count(*), so sparse keys still give even batches and planning a
billion rows costs nothing up front). Creating a batch is one short transaction; working it is
another, which claims the row with ``FOR UPDATE SKIP LOCKED`` and keeps that lock while it changes
the data, so the data change and ``status = 'succeeded'`` commit together: a killed worker leaves
its batch pending and nothing half-done, and no batch is ever done twice.

The batch size adapts to a target duration (:mod:`.tuning`); the pause between batches follows the
application's measured latency (:mod:`airmigrate.pacing`); a batch that hits statement_timeout is split
in half; health checks pause a shard; failed batches are retried, then recorded with their range and
error while the others go on.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from airmigrate import engines, state
from airmigrate.control import RunControl
from airmigrate.db import Target, connect, estimate_rows, set_timeouts
from airmigrate.engines import base, sql
from airmigrate.errors import BackfillError, SpecError
from airmigrate.operations.base import on_record
from airmigrate.pacing import UNSET, Pacer, open_shared_row
from airmigrate.spec import BackfillSpec, Migration
from airmigrate.stages.backfill.keys import Key
from airmigrate.stages.backfill.shares import one_shard_note
from airmigrate.stages.backfill.sweep import sweep_batches
from airmigrate.stages.backfill.transform import apply_transform, load_transform, transform_statements
from airmigrate.stages.backfill.tuning import BatchSizer, HealthGate
from airmigrate.stages.backfill.upkeep import Upkeep
from airmigrate.stages.generated import down_batch_statements, runtime_steps
from airmigrate.worker_name import batch_worker

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0  # the run-wide %/ETA (a query over the batch table) is refreshed at most this often

__all__ = ["start_backfill", "run_shard", "has_backfill", "key_of", "walk_key", "load_transform", "drop_sync_trigger"]


def settings_of(migration: Migration) -> BackfillSpec:
    """The backfill's tuning: the spec's, or the defaults for backfills that operations generate."""
    return migration.spec.backfill or BackfillSpec.model_construct(columns=[], reads=[])


def key_of(migration: Migration) -> Key:
    spec = migration.spec
    return Key(spec.schema_name, spec.table_name, spec.key_columns)


def walk_key(conn, migration: Migration, direction: str = "up", run_id: int | None = None) -> Key:
    """The key the batches walk: the table's, or for a rollback whose rows are elsewhere (delete_rows: its
    archive) that table's; a rollback whose archive is gone is refused, naming it."""
    key = key_of(migration)
    if direction != "down" or not migration.spec.operations:
        return key
    walk = runtime_steps(conn, migration).down_walk
    if walk is None:
        return key
    if not engines.of(conn).state_sql().relation_exists(conn, *walk):
        raise BackfillError(f"{walk[0]}.{walk[1]}, which holds the rows the rollback puts back, does not exist (the "
                            "contract dropped it after keep_archive_days): the rows can only come back from the "
                            f"backup stage's dump of the table (in {migration.id}/ of the backup folder, var/backups unless "
                            "AIRMIGRATE_BACKUP_DIR says otherwise; put back by "
                            "stages.backup.restore_dump: pg_dump's or mysqldump's); nothing was changed")
    return Key(walk[0], walk[1], key.columns)


def has_backfill(conn, migration: Migration, direction: str = "up", run_id: int | None = None) -> bool:
    if direction == "down":
        return bool(down_batch_statements(conn, migration, run_id))
    return migration.spec.backfill is not None or bool(runtime_steps(conn, migration).backfill)


def batch_statements(conn, migration: Migration, direction: str, run_id: int) -> list[str]:
    """The generated per-batch statements: the operations' backfill on the way up, their copy-back and the
    snapshot restore on the way down (the rollback uses this same engine)."""
    if direction == "down":
        return down_batch_statements(conn, migration, run_id)
    return runtime_steps(conn, migration).backfill


# -- start --------------------------------------------------------------------------------------------

def start_backfill(target: Target, migration: Migration, run_id: int, batch_size: int | None = None,
                   direction: str = "up", shards: int | None = None, app_latency_ratio=UNSET) -> int:
    """Open the run's cursor (once; a resumed run keeps its position), install the sync trigger and, when the
    run paces (the spec's throttle, or `app_latency_ratio` for this run), its shared pacing row. Returns the
    estimated number of batches."""
    spec = migration.spec
    size = batch_size or spec.batch_size
    with connect(target, autocommit=True) as conn:
        if not has_backfill(conn, migration, direction, run_id):
            return 0
        if direction == "up":
            install_sync_trigger(conn, migration)
        walked = walk_key(conn, migration, direction, run_id)
        estimated = estimate_rows(conn, walked.schema, walked.table)
        conn.execute(engines.of(conn).state_sql().OPEN_CURSOR, (run_id, size, estimated))
        throttle, ratio = pacing_of(conn, settings_of(migration).throttle, app_latency_ratio)
        open_shared_row(conn, run_id, throttle, shards or spec.shards, ratio)
        # a new trigger of a paused or cancelled run means: go on
        conn.execute("UPDATE airmigrate.controls SET paused = false, cancelled = false WHERE run_id = %s "
                     "AND (paused OR cancelled)", (run_id,))
    log.info("%s of %s by %s: ~%s rows, batches of %d rows to start with",
             "backfill" if direction == "up" else "rollback copy-back", spec.table,
             ", ".join(spec.key_columns), f"{estimated:,}", size)
    return -(-estimated // size)


def sync_trigger_name(migration: Migration) -> str:
    return f"am_derive_{migration.id}"[:63]


def sync_trigger_sql(migration: Migration) -> tuple[list[str], list[str]]:
    """(install, drop): the `backfill.sync` trigger's statements, as they run and as `plan` shows them (one
    text for both, so the plan cannot leave out or misstate what runs). Empty without `sync`."""
    sync = settings_of(migration).sync
    if not sync:
        return [], []

    spec, name = migration.spec, sync_trigger_name(migration)
    table, function = sql.Identifier(spec.schema_name, spec.table_name), sql.Identifier("airmigrate", name)
    sets = " ".join(sql.SQL("NEW.{} := {};").format(sql.Identifier(c), sql.SQL(on_record(e))).as_string(None)
                    for c, e in sync.items())
    install = [sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}").format(
                   function, sql.Literal(f"BEGIN {sets} RETURN NEW; END")),
               sql.SQL("CREATE OR REPLACE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW "
                       "EXECUTE FUNCTION {}()").format(sql.Identifier(name), table, function)]
    drop = [sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(name), table),
            sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function)]
    return [q.as_string(None) for q in install], [q.as_string(None) for q in drop]


def install_sync_trigger(conn, migration: Migration) -> None:
    """Before the first batch: keep derived columns right for rows the application writes meanwhile."""
    install, _ = sync_trigger_sql(migration)
    if not install:
        return
    spec = migration.spec
    with conn.transaction():  # CREATE TRIGGER waits for a SHARE ROW EXCLUSIVE lock: bounded like all our DDL
        set_timeouts(conn, spec.lock_timeout_ms, spec.statement_timeout_ms, local=True)
        for statement in install:
            conn.execute(statement)
    log.info("sync trigger %s keeps %s derived for rows written during the migration", sync_trigger_name(migration),
             ", ".join(settings_of(migration).sync))


def drop_sync_trigger(conn, migration: Migration) -> None:
    """Drop it outside the DDL executor (the cleanup and the rollback's down run sync_trigger_sql's drop
    through it, under lock_timeout with retries; this is for callers without a run)."""
    for statement in sync_trigger_sql(migration)[1]:
        conn.execute(statement)


# -- work ---------------------------------------------------------------------------------------------

@dataclass
class Batch:
    batch_no: int
    lo: str
    hi: str
    size: int
    attempts: int
    rows: int | None = None
    seconds: float = 0.0
    outcome: str = "succeeded"  # succeeded | retry | failed | split
    claimed_at: datetime | None = None  # when this attempt started (for airmigrate.batch_attempts)


def run_shard(target: Target, migration: Migration, run_id: int, shard: int = 0, retry_failed: bool = False,
              metrics: Callable[[str, float], None] | None = None,
              should_stop: Callable[[], bool] = lambda: False, direction: str = "up", shards: int | None = None,
              app_latency_ratio=UNSET) -> dict:
    """Claim and run batches until none is left (or `should_stop`, e.g. the off-peak window closed);
    raise BackfillError listing the failed ranges at the end. `shards` (how many run at once) and
    `app_latency_ratio` (a run's override of the spec's) feed the pacer."""
    settings = settings_of(migration)
    worker = batch_worker(shard)  # which worker ran which batch (airmigrate.worker_name)
    metrics = metrics or (lambda name, value: None)
    started = time.monotonic()
    with connect(target) as conn:
        if not has_backfill(conn, migration, direction, run_id):
            conn.commit()
            return {"batches": 0, "rows": 0}
        key = walk_key(conn, migration, direction, run_id)
        apply_batch = batch_function(migration, batch_statements(conn, migration, direction, run_id), key,
                                     with_user_code=direction == "up")
        upkeep = Upkeep(target, migration) if direction == "up" else None
        sweep = runtime_steps(conn, migration).sweep if direction == "up" else None
        if retry_failed:
            requeue_failed(conn, run_id)
        throttle, app_latency_ratio = pacing_of(conn, settings.throttle, app_latency_ratio)
        pacer = Pacer(target, run_id, throttle, shards or migration.spec.shards, app_latency_ratio, session=conn)
        sizer = BatchSizer.aimed(current_size(conn, run_id), settings.target_batch_seconds,
                                 pacer.batch_seconds(settings.target_batch_seconds), settings.min_batch_size,
                                 settings.max_batch_size, settings.adaptive)
        conn.commit()
        control = RunControl(run_id)
        with pacer:
            done_rows, done_batches = _batch_loop(conn, migration, key, run_id, worker, apply_batch, sizer, pacer,
                                                  shard, metrics,
                                                  lambda: should_stop() or _controlled(conn, control, sizer), started,
                                                  upkeep, sweep)
        summary = state.batch_summary(conn, run_id)
        failed = state.failed_batches(conn, run_id)
        alone = one_shard_note(conn, run_id, shards or migration.spec.shards) if done_batches else None
        conn.commit()
    elapsed = time.monotonic() - started
    log.info("shard %d done: %d batches, %s rows in %.1fs (%s rows/s); run: %d/%d batches succeeded, %d failed",
             shard, done_batches, f"{done_rows:,}", elapsed, f"{done_rows / max(elapsed, 1e-9):,.0f}",
             summary["succeeded"], summary["total"], summary["failed"])
    if alone:
        log.info(alone)
    if failed:
        lines = "; ".join(f"batch {b} [{lo}..{hi}] after {a} attempts: {err}" for b, lo, hi, a, err in failed[:10])
        raise BackfillError(f"{len(failed)} batch(es) failed: {lines}. Fix the cause, then clear this task or "
                            "trigger the DAG with retry_failed=true: only the failed batches run again", failed)
    stopped = control.stop_reason or ("window" if should_stop() else False)
    if stopped in ("paused", "cancelled"):
        log.info("shard %d stopped: the run was %s from the console", shard, stopped)
    return {"batches": done_batches, "rows": done_rows, "seconds": elapsed, "stopped": stopped}


_UNPACED: set[str] = set()  # engines whose "full speed, hard stops only" was said in this process


def pacing_of(conn, throttle, app_latency_ratio):
    """(throttle, ratio) for the pacer. An engine whose application latency the pacer cannot read yet (MySQL)
    goes at full speed: the pacer is off, the health checks (the throttle's hard stops) still pause a shard.
    Said once per process, not once per shard or batch."""
    engine = engines.of(conn)
    if engine.paces_by_latency() or (throttle is None and app_latency_ratio in (UNSET, None)):
        return throttle, app_latency_ratio
    if engine.name not in _UNPACED:
        _UNPACED.add(engine.name)
        log.info("throttle: the pacer does not measure the application's latency on %s yet: the backfill goes at "
                 "full speed, paused only by the throttle's hard stops (lock waiters, long transactions)", engine.name)
    return None, None


def _controlled(conn, control: RunControl, sizer: BatchSizer) -> bool:
    """Between batches: a pause or cancel stops the shard; a new batch size from the console is taken up."""
    control.refresh(conn)
    if control.batch_size and control.batch_size != sizer.asked:
        sizer.asked = sizer.size = control.batch_size
        sizer.recent.clear()
        log.info("batch size set to %s rows from the console", f"{control.batch_size:,}")
    return control.stop_reason is not None


def _batch_loop(conn, migration: Migration, key: Key, run_id: int, worker: str, apply_batch, sizer: BatchSizer,
                pacer: Pacer, shard: int, metrics, should_stop, started: float,
                upkeep: "Upkeep | None" = None, sweep: str | None = None) -> tuple[int, int]:
    """Health check, probe pause, one batch, the pacer's pause; until no batch is left. (rows, batches)"""
    settings = settings_of(migration)
    done_rows = done_batches = 0
    progress = Progress(run_id)
    health = HealthGate(settings.throttle, f'"{key.schema}"."{key.table}"', shard)
    # make_first: the queue of pending batches was empty when this shard last claimed, so it makes the next range
    # before claiming, instead of a claim that finds none first (three round trips per batch at full speed);
    # just_made: the batch made after such a claim is claimed next, before another is made at the sizer's new size
    make_first = just_made = False
    while not should_stop():
        health.wait(conn, should_stop)
        pacer.before_batch(should_stop)
        created = make_first and not just_made and create_next_batch(conn, key, run_id, sizer.size, sweep)
        batch = claim_and_run(conn, migration, run_id, worker, apply_batch, key)
        if batch is None:
            if not created and not create_next_batch(conn, key, run_id, sizer.size, sweep):
                break
            just_made = True
            continue
        make_first, just_made = just_made or created, False
        if batch.outcome == "succeeded":
            done_rows, done_batches = done_rows + batch.rows, done_batches + 1
            previous = sizer.size
            if abs(sizer.observe(batch.size, batch.seconds) - previous) > previous * 0.05:
                remember_size(conn, run_id, sizer.size)
            progress.log(conn, shard, batch, done_rows, time.monotonic() - started, sizer.size)
            metrics("rows", batch.rows)
            metrics("batches", 1)
            metrics("batch_seconds", batch.seconds)
            if upkeep is not None:
                upkeep.after_batch(batch.rows)
            pacer.after_batch(batch.seconds, should_stop)
        elif batch.outcome == "split":
            remember_size(conn, run_id, sizer.halve())
        elif batch.outcome == "failed" and failed_share(conn, run_id) > settings.max_failed_share:
            log.error("more than %.0f%% of batches failed: stopping early", settings.max_failed_share * 100)
            break
        if settings.sleep_between_batches_ms:
            time.sleep(settings.sleep_between_batches_ms / 1000)
    return done_rows, done_batches


def create_next_batch(conn, key: Key, run_id: int, size: int, sweep: str | None = None) -> bool:
    """One short transaction on the cursor row: the next range becomes a pending batch. False when done. With
    `sweep` (delete_rows, move_rows: their `where`), the end of the walk is followed by the final sweep (.sweep)."""
    with conn.transaction():
        cursor = conn.execute("SELECT position, exhausted, next_batch_no FROM airmigrate.cursors WHERE run_id = %s "
                              "FOR UPDATE", (run_id,)).fetchone()
        if cursor is None:
            raise BackfillError(f"run {run_id} has no backfill cursor: the backfill.plan task opens it; clear the "
                                "whole backfill group")
        position, exhausted, batch_no = cursor
        if exhausted:
            return False
        bounds = key.next_range(conn, position, size)
        if bounds is None:
            made = sweep_batches(conn, key, run_id, sweep, size, batch_no) if sweep else 0
            if made is None:  # another shard's batch is unfinished (or failed): the shard finishing last sweeps
                return False
            if made:
                return True
            conn.execute("UPDATE airmigrate.cursors SET exhausted = true WHERE run_id = %s", (run_id,))
            return False
        engines.of(conn).state_sql().add_batch(conn, run_id, batch_no, bounds[0], bounds[1], size)
    return True


def claim_and_run(conn, migration: Migration, run_id: int, worker: str, apply_batch,
                  key: Key | None = None) -> Batch | None:
    """One transaction: claim a pending batch (SKIP LOCKED) under the batch's lock and statement limits, change its
    rows, mark it succeeded with its attempt recorded: three statements besides the data change's, each one round
    trip (at full speed a shard's own CPU goes mostly into round trips)."""
    spec, batch = migration.spec, None
    try:
        with conn.transaction():
            statements = engines.of(conn).state_sql()
            row = statements.claim_batch(conn, run_id, spec.lock_timeout_ms * 10, spec.statement_timeout_ms)
            if row is None:
                return None
            batch = Batch(*row, claimed_at=datetime.now(timezone.utc))
            t0 = time.monotonic()
            batch.rows = apply_batch(conn, batch.lo, batch.hi)
            batch.seconds = time.monotonic() - t0
            statements.batch_succeeded(conn, run_id, batch.batch_no, batch.rows, worker, batch.claimed_at)
        return batch
    except Exception as exc:
        kind = engines.of(conn).error_kind(exc)
        if kind == base.CONNECTION or isinstance(exc, SpecError):
            raise  # connection lost or a broken transform: the batch rolled back; the task fails, a retry resumes
        if batch is None:
            raise
        if kind == base.STATEMENT_TIMEOUT:
            return split_batch(conn, migration, run_id, batch, worker, exc, key)
        # rows held by the application (a lock timeout: try this batch later), or the user's SQL or transform
        # failed on this batch: count it, go on with the others
        return record_failure(conn, run_id, batch, settings_of(migration).max_attempts, exc, worker)


def split_batch(conn, migration: Migration, run_id: int, batch: Batch, worker: str, exc,
                key: Key | None = None) -> Batch:
    """statement_timeout: replace the batch by its two halves (GitLab's rule); a single row cannot split."""
    halves = (key or key_of(migration)).split(conn, batch.lo, batch.hi)
    conn.commit()
    if halves is None:
        return record_failure(conn, run_id, batch, settings_of(migration).max_attempts, exc, worker)
    with conn.transaction():
        first = engines.of(conn).state_sql().take_batch_numbers(conn, run_id, 2)
        conn.execute("UPDATE airmigrate.batches SET status = 'split', attempts = attempts + 1, last_error = %s, "
                     "worker = %s WHERE run_id = %s AND batch_no = %s",
                     (f"split after: {_first_line(exc)}", worker, run_id, batch.batch_no))
        state.record_attempt(conn, run_id, batch.batch_no, batch.lo, batch.hi, "split",
                             f"split after: {_first_line(exc)}"[:500], worker, batch.claimed_at)
        for offset, (lo, hi) in enumerate(halves):
            conn.execute("INSERT INTO airmigrate.batches (run_id, batch_no, lo, hi, size) VALUES (%s, %s, %s, %s, %s)",
                         (run_id, first + offset, lo, hi, max(1, batch.size // 2)))
    log.warning("batch %d [%s..%s] hit statement_timeout: split into batches %d and %d", batch.batch_no, batch.lo,
                batch.hi, first, first + 1)
    batch.outcome = "split"
    return batch


def record_failure(conn, run_id: int, batch: Batch, max_attempts: int, exc, worker: str) -> Batch:
    """The batch's data change rolled back; count the attempt and keep it pending until max_attempts."""
    error = _first_line(exc)[:500]
    batch.outcome = "failed" if batch.attempts + 1 >= max_attempts else "retry"
    with conn.transaction():
        conn.execute("UPDATE airmigrate.batches SET attempts = attempts + 1, status = %s, last_error = %s, "
                     "worker = %s WHERE run_id = %s AND batch_no = %s",
                     ("failed" if batch.outcome == "failed" else "pending", error, worker, run_id, batch.batch_no))
        state.record_attempt(conn, run_id, batch.batch_no, batch.lo, batch.hi, "failed", error, worker,
                             batch.claimed_at)
    log.warning("batch %d [%s..%s] attempt %d/%d failed: %s", batch.batch_no, batch.lo, batch.hi,
                batch.attempts + 1, max_attempts, error)
    if batch.outcome == "retry":
        time.sleep(min(10.0, 0.5 * 2 ** batch.attempts))
    return batch


def requeue_failed(conn, run_id: int) -> None:
    with conn.transaction():
        n = conn.execute("UPDATE airmigrate.batches SET status = 'pending', attempts = 0 WHERE run_id = %s "
                         "AND status = 'failed'", (run_id,)).rowcount
    log.info("retry_failed: %d failed batch(es) queued again", n)


def current_size(conn, run_id: int) -> int:
    row = conn.execute("SELECT batch_size FROM airmigrate.cursors WHERE run_id = %s", (run_id,)).fetchone()
    conn.commit()
    if row is None:
        raise BackfillError(f"run {run_id} has no backfill cursor: the backfill.plan task opens it; clear the "
                            "whole backfill group")
    return row[0]


def remember_size(conn, run_id: int, size: int) -> None:
    """Share the tuned size with the other shards (and a resumed run)."""
    with conn.transaction():
        conn.execute("UPDATE airmigrate.cursors SET batch_size = %s WHERE run_id = %s AND batch_size <> %s",
                     (size, run_id, size))


def failed_share(conn, run_id: int) -> float:
    total, failed = conn.execute(engines.of(conn).state_sql().FAILED_SHARE, (run_id,)).fetchone()
    conn.commit()
    return failed / total if total else 0.0


class Progress:
    """One log line per batch: its rows and time, the shard's rows/s, and the run's percent done and ETA
    (keys covered against the planner's row estimate, from the state tables, refreshed every few seconds)."""

    def __init__(self, run_id: int):
        self.run_id, self.refreshed, self.percent, self.eta = run_id, 0.0, 0.0, 0.0

    def refresh(self, conn) -> None:
        covered, estimated, run_seconds = conn.execute(engines.of(conn).state_sql().PROGRESS_REFRESH,
                                                       (self.run_id,)).fetchone()
        conn.commit()
        self.percent = min(99.9, 100 * covered / estimated) if estimated else 0.0
        rate = covered / max(float(run_seconds or 0), 1e-9)
        self.eta = max(estimated - covered, 0) / rate if rate else 0
        self.refreshed = time.monotonic()

    def log(self, conn, shard: int, batch: Batch, shard_rows: int, elapsed: float, next_size: int) -> None:
        if time.monotonic() - self.refreshed >= PROGRESS_EVERY_S:
            self.refresh(conn)
        log.info("batch %d [%s..%s]: %s rows in %.2fs | shard %d: %s rows, %s rows/s | run: %.0f%% done, ETA %s | "
                 "next batch %s keys", batch.batch_no, batch.lo, batch.hi, f"{batch.rows:,}", batch.seconds, shard,
                 f"{shard_rows:,}", f"{shard_rows / max(elapsed, 1e-9):,.0f}", self.percent, _duration(self.eta),
                 f"{next_size:,}")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _escape_percent(statement: str) -> str:
    """Generated SQL carries user expressions (LIKE 'a%'): double every % but the batch placeholders."""
    return re.sub(r"%%\((lo|hi)(_\d+)?\)s", r"%(\1\2)s", statement.replace("%", "%%"))


def batch_function(migration: Migration, generated: list[str], key: Key, with_user_code: bool = True):
    """The per-batch change: the user's UPDATE or the pandas round trip through transform.py, then the
    statements the declared operations generate. Returns rows written. A rollback's batches run only
    generated statements (`with_user_code=False`)."""
    user_sql = migration.backfill_sql if with_user_code else None
    statements = [user_sql.strip().rstrip(";")] if user_sql is not None else []
    statements += [_escape_percent(statement) for statement in generated]
    transform = load_transform(migration.transform_file) if with_user_code and migration.transform_file else None
    pandas_sql: dict = {}  # composed at the first batch, for its connection's engine

    def apply_batch(conn, lo, hi) -> int:
        if transform and not pandas_sql:
            pandas_sql.update(transform_statements(migration, conn))
        rows = apply_transform(conn, migration, transform, lo, hi, pandas_sql) if transform else 0
        params = key.params(lo, hi)
        for statement in statements:
            rows += conn.execute(statement, params).rowcount
        return rows

    return apply_batch
