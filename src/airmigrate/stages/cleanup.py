"""cleanup (contract): the migration's cleanup SQL, the column comments, then the history row marked applied
and the schema changelog's entry."""

from __future__ import annotations

import logging

from airmigrate import engines, state
from airmigrate.db import Target, connect
from airmigrate.schemadocs import changelog
from airmigrate.schemadocs.comments import apply_comments
from airmigrate.spec import Migration
from airmigrate.stages.backfill import sync_trigger_sql
from airmigrate.stages.generated import join_sql, runtime_steps
from airmigrate.stages.schema_change import apply_sql

log = logging.getLogger(__name__)


def cleanup(target: Target, migration: Migration, run_id: int) -> dict:
    """The operations' contract steps, then cleanup.sql; runs only after validation passed (and approval,
    when the DAG asks for it). The rollback snapshot is kept: rollback still needs it."""
    with connect(target, autocommit=True) as conn:
        contract = runtime_steps(conn, migration).contract
    # the sync trigger first (it writes columns the contract may drop), under lock_timeout like the rest
    apply_sql(target, migration, run_id, "cleanup",
              join_sql(None, sync_trigger_sql(migration)[1]) + join_sql(migration.cleanup_sql, contract))
    with connect(target, autocommit=True) as conn:
        before = (state.latest_run(conn, migration.id) or {}).get("facts", {}).get("column_types")
    apply_comments(target, migration, list(before) if before is not None else None)
    with connect(target, autocommit=True) as conn, conn.transaction():
        first_time = not conn.execute(engines.of(conn).state_sql().APPLIED_RECORDED,
                                      (run_id,)).fetchone()[0]  # a retried task records it (and its entry) once
        if first_time:
            state.mark_applied(conn, migration.id)
            state.add_facts(conn, run_id, applied_recorded=True)
        state.finish_run(conn, run_id, "succeeded")
        hist = state.history(conn, migration.id)
    if first_time:
        changelog.append(migration, hist)
    log.info("%s applied in %.1fs by %s", migration.id, hist["duration_s"] or 0, hist["applied_by"])
    return {"status": "applied", "duration_s": hist["duration_s"], "applied_by": hist["applied_by"]}
