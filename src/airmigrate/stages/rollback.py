"""rollback: the down SQL, then the values the backfill overwrote restored from the snapshot."""

from __future__ import annotations

import logging

from psycopg import sql

from airmigrate import state
from airmigrate.db import Target, connect, set_timeouts
from airmigrate.errors import PreflightError
from airmigrate.spec import Migration
from airmigrate.stages.backfill import drop_sync_trigger
from airmigrate.stages.backfill.keys import Key
from airmigrate.stages.generated import join_sql, runtime_steps
from airmigrate.stages.schema_change import apply_sql

log = logging.getLogger(__name__)


def preflight_rollback(target: Target, migration: Migration, dag_run_id: str | None = None) -> dict:
    """Only a migration that ran (applied, or failed half-way) can be rolled back."""
    with connect(target, autocommit=True) as conn:
        state.ensure_schema(conn)
        hist = state.history(conn, migration.id)
        if hist is None or hist["status"] == "rolled_back":
            raise PreflightError(f"{migration.id} is not applied on {target.describe()} "
                                 f"({'never ran' if hist is None else 'already rolled back'}); nothing to roll back")
        run_id, resumed = state.begin_run(conn, migration.id, "down", dag_run_id)
    log.info("rolling back %s (status %s), run %d %s", migration.id, hist["status"], run_id,
             "resumed" if resumed else "started")
    return {"run_id": run_id, "resumed": resumed, "snapshot_table": hist["snapshot_table"]}


def down(target: Target, migration: Migration, run_id: int) -> list[str]:
    """The operations' down steps (in reverse order), then down.sql."""
    with connect(target, autocommit=True) as conn:
        drop_sync_trigger(conn, migration)
        steps = runtime_steps(conn, migration).down
    return apply_sql(target, migration, run_id, "down", join_sql(migration.down_sql, steps))


def restore(target: Target, migration: Migration, run_id: int, batch_size: int | None = None) -> dict:
    """Write the snapshot's old values back in key-range batches, then mark the history rolled back."""
    spec = migration.spec
    with connect(target, autocommit=True) as conn:
        snapshot = state.history(conn, migration.id)["snapshot_table"]
        restored = 0
        if snapshot and not state.stage_done(conn, run_id, "restore"):
            restored = restore_snapshot(conn, migration, snapshot, batch_size or spec.batch_size)
        with conn.transaction():
            state.mark_stage_done(conn, run_id, "restore", restored_rows=restored)
            state.mark_rolled_back(conn, migration.id)
            conn.execute("UPDATE airmigrate.runs SET status = 'rolled_back', finished_at = coalesce(finished_at, now()) "
                         "WHERE migration_id = %s AND direction = 'up' AND status <> 'rolled_back'", (migration.id,))
            state.finish_run(conn, run_id, "succeeded")
            if snapshot:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("airmigrate", snapshot)))
    log.info("%s rolled back; %s rows restored from the snapshot", migration.id, f"{restored:,}")
    return {"status": "rolled_back", "restored_rows": restored}


def restore_snapshot(conn, migration: Migration, snapshot: str, batch_size: int) -> int:
    spec = migration.spec
    snap = sql.Identifier("airmigrate", snapshot)
    keys = spec.key_columns
    columns = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'airmigrate' AND table_name = %s "
        "AND column_name <> ALL(%s) ORDER BY ordinal_position", (snapshot, list(keys))).fetchall()]
    placeholders = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(keys)))
    update = sql.SQL("UPDATE {t} AS t SET {sets} FROM {s} AS s WHERE {join} AND ({skeys}) BETWEEN {p} AND {p} "
                     "AND ({changed})").format(
        t=sql.Identifier(spec.schema_name, spec.table_name), s=snap, p=placeholders,
        join=sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in keys),
        skeys=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in keys),
        sets=sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in columns),
        changed=sql.SQL(" OR ").join(sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=sql.Identifier(c))
                                     for c in columns))
    total = 0
    snapshot_key = Key("airmigrate", snapshot, spec.key_columns)
    for lo, hi in list(snapshot_key.ranges(conn, batch_size)):
        with conn.transaction():
            set_timeouts(conn, spec.lock_timeout_ms * 10, spec.statement_timeout_ms, local=True)
            total += conn.execute(update, [*snapshot_key.decode(lo), *snapshot_key.decode(hi)]).rowcount
    return total
