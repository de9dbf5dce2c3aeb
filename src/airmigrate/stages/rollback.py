"""rollback: the way up in reverse, and as safe: short DDL, data copied back in batches, short DDL.

A rollback runs exactly when production is already in trouble, so it must never hold a lock longer
than a short DDL statement. Three phases, like expand / backfill / contract:

- ``down``: down.sql and the operations' down DDL (drop triggers, re-add columns empty, install a
  reverse sync trigger), each group in its own short transaction under lock_timeout with retries;
- the copy-back: the operations' copy-back statements and the snapshot restore of overwritten values,
  run by the backfill engine (key-range batches, resumable, throttled, failed batches retried);
- ``finish``: the operations' last DDL (swap names back, drop what the migration created), then the
  history marked rolled back and the snapshot dropped.

The table's shape when the rollback starts (before or after the contract) picks each operation's path;
it is recorded in the run, so a resumed rollback keeps the path it started on.
"""

from __future__ import annotations

import logging

from airmigrate import engines, state, structure
from airmigrate.db import Target, connect
from airmigrate.engines import sql
from airmigrate.errors import PreflightError
from airmigrate.order import check_dependents
from airmigrate.schemadocs import changelog
from airmigrate.spec import Migration
from airmigrate.stages import backfill
from airmigrate.stages.generated import (
    column_types,
    down_batch_statements,
    join_sql,
    recorded_fact,
    rollback_steps,
    runtime_steps,
)
from airmigrate.stages.schema_change import apply_sql

log = logging.getLogger(__name__)


def preflight_rollback(target: Target, migration: Migration, dag_run_id: str | None = None,
                       dry_run: bool = False) -> dict:
    """Only a migration that ran (applied, or failed half-way) can be rolled back. A dry run prints the SQL
    the rollback would run and starts nothing."""
    spec = migration.spec
    with connect(target, autocommit=True) as conn:
        state.ensure_schema(conn)
        hist = state.history(conn, migration.id)
        if hist is None or hist["status"] == "rolled_back":
            raise PreflightError(f"{migration.id} is not applied on {target.describe()} "
                                 f"({'never ran' if hist is None else 'already rolled back'}); nothing to roll back")

        check_dependents(conn, migration, dry_run=dry_run)
        if dry_run:
            live = frozenset(column_types(conn, spec.schema_name, spec.table_name))
            text = rollback_sql(conn, migration, live)
            log.info("dry_run: the rollback of %s would run:\n%s", migration.id, text)
            return {"dry_run": True, "sql": text}
        run_id, resumed = state.begin_run(conn, migration.id, "down", dag_run_id)
        record_table_shape(conn, migration, run_id)
    log.info("rolling back %s (status %s), run %d %s", migration.id, hist["status"], run_id,
             "resumed" if resumed else "started")
    return {"run_id": run_id, "resumed": resumed, "snapshot_table": hist["snapshot_table"]}


def record_table_shape(conn, migration: Migration, run_id: int) -> None:
    """Once per rollback run: the columns the table has now decide each operation's rollback path."""
    spec = migration.spec
    live = sorted(column_types(conn, spec.schema_name, spec.table_name))
    engines.of(conn).state_sql().add_fact_once(conn, run_id, "live_columns", live)


def rollback_sql(conn, migration: Migration, live: frozenset[str]) -> str:
    """The rollback's SQL by phase, as it would run now (for dry runs, the plan and the report)."""
    steps = runtime_steps(conn, migration, live)
    parts = ["-- down (short DDL, each group under lock_timeout with retries)",
             join_sql(migration.down_sql, steps.down).strip() or "(nothing)"]
    parts += ["-- copy-back, per key-range batch", ";\n".join(steps.down_backfill) or "(only the snapshot restore, "
              "when the backup kept overwritten values)"]
    parts += ["-- finish (short DDL)", ";\n".join(steps.down_contract) or "(nothing)"]
    return "\n".join(parts)


def down(target: Target, migration: Migration, run_id: int) -> list[str]:
    """down.sql and the operations' down DDL (in reverse order): short transactions only."""
    with connect(target, autocommit=True) as conn:
        steps = rollback_steps(conn, migration, run_id).down
    # the sync trigger first (it writes columns down.sql may drop), under lock_timeout like the rest
    return apply_sql(target, migration, run_id, "down",
                     join_sql(None, backfill.sync_trigger_sql(migration)[1]) + join_sql(migration.down_sql, steps))


def start_restore(target: Target, migration: Migration, run_id: int, batch_size: int | None = None,
                  **pacing) -> int:
    """Open the copy-back's cursor (the backfill engine's, for this rollback run; `pacing`: start_backfill's
    shards and app_latency_ratio). Returns estimated batches."""
    return backfill.start_backfill(target, migration, run_id, batch_size, direction="down", **pacing)


def restore_shard(target: Target, migration: Migration, run_id: int, shard: int = 0, retry_failed: bool = False,
                  should_stop=lambda: False, **pacing) -> dict:
    """One worker of the copy-back: claims batches like a backfill shard, paced the same way (`pacing`:
    run_shard's shards and app_latency_ratio)."""
    return backfill.run_shard(target, migration, run_id, shard, retry_failed=retry_failed, should_stop=should_stop,
                              direction="down", **pacing)


def finish(target: Target, migration: Migration, run_id: int) -> dict:
    """The last short DDL, then the history marked rolled back and the snapshot dropped (in one transaction)."""
    with connect(target, autocommit=True) as conn:
        summary = state.batch_summary(conn, run_id)  # every batch but the split ones: unfinished = not succeeded
        unfinished = int(summary["total"] or 0) - int(summary["succeeded"] or 0)
        if unfinished:
            raise PreflightError(f"the copy-back of {migration.id} has {unfinished} unfinished batch(es): clear the "
                                 "restore tasks (or trigger the rollback with retry_failed=true) before finishing")
        steps = rollback_steps(conn, migration, run_id)
    apply_sql(target, migration, run_id, "down_contract", join_sql(None, steps.down_contract))
    restored = int(summary["rows"] or 0)
    with connect(target, autocommit=True) as conn:
        differences = verify_structure(conn, migration)
        state.add_facts(conn, run_id, structure_identical=not differences, structure_differences=differences)
    if differences:
        log.warning("after the rollback %s is NOT identical to before the migration:\n- %s",
                    migration.spec.table, "\n- ".join(differences))
    else:
        log.info("after the rollback %s is identical to before the migration (columns, constraints, indexes, "
                 "triggers, comments, grants)", migration.spec.table)
    with connect(target, autocommit=True) as conn, conn.transaction():
        before = state.history(conn, migration.id)
        snapshot = before["snapshot_table"]
        state.mark_stage_done(conn, run_id, "restore", restored_rows=restored)
        state.mark_rolled_back(conn, migration.id)
        conn.execute(engines.of(conn).state_sql().UP_RUNS_ROLLED_BACK, (migration.id,))
        state.finish_run(conn, run_id, "succeeded")
        if snapshot:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("airmigrate", snapshot)))
    if before["status"] == "applied":  # its applied entry is in the changelog: say it went back
        with connect(target, autocommit=True) as conn:
            when, by = conn.execute("SELECT rolled_back_at, rolled_back_by FROM airmigrate.history "
                                    "WHERE migration_id = %s", (migration.id,)).fetchone()
        changelog.append_rollback(migration, {"rolled_back_at": when, "rolled_back_by": by})
    log.info("%s rolled back; %s rows copied back or restored in batches", migration.id, f"{restored:,}")
    return {"status": "rolled_back", "restored_rows": restored, "structure_identical": not differences,
            "structure_differences": differences}


def verify_structure(conn, migration: Migration) -> list[str]:
    """The rollback's own check: the table's full definition now against the one the backup stage recorded
    before the migration, and the tables the operations created gone; each difference in words (empty when
    identical). Nothing recorded (a migration applied before airmigrate kept it): nothing to compare."""
    spec = migration.spec
    before = recorded_fact(conn, migration.id, "structure", active=True)
    if before is None:
        return []
    differences = structure.differences(structure.normalise(before),
                                        structure.definition(conn, spec.schema_name, spec.table_name), spec.table)
    for op in spec.operations:
        created = getattr(op, "new_table", None)
        if created and structure.definition(conn, spec.schema_name, created) is not None:
            differences.append(f"table {spec.schema_name}.{created}: created by the migration, still there")
    return differences


def restore(target: Target, migration: Migration, run_id: int, batch_size: int | None = None) -> dict:
    """Copy-back and finish in this process (one shard): what the rollback DAG's tasks do, for the CLI and tests."""
    start_restore(target, migration, run_id, batch_size)
    restore_shard(target, migration, run_id)
    return finish(target, migration, run_id)


__all__ = ["preflight_rollback", "down", "start_restore", "restore_shard", "finish", "restore", "rollback_sql",
           "down_batch_statements", "verify_structure"]
