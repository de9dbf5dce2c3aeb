"""schema_change (expand): the migration's up SQL through the safe DDL executor."""

from __future__ import annotations

import logging

from airmigrate import db, state
from airmigrate.db import Target, connect
from airmigrate.spec import Migration
from airmigrate.stages.generated import join_sql, runtime_steps

log = logging.getLogger(__name__)


def schema_change(target: Target, migration: Migration, run_id: int) -> list[str]:
    """up.sql, then the expand steps of the declared operations."""
    with connect(target, autocommit=True) as conn:
        expand = runtime_steps(conn, migration).expand
    return apply_sql(target, migration, run_id, "schema_change", join_sql(migration.up_sql, expand))


def apply_sql(target: Target, migration: Migration, run_id: int, stage: str, sql_text: str | None) -> list[str]:
    """Run a SQL file group by group (one transaction, or one CONCURRENTLY statement each); every finished
    group is recorded, so a retry after a failure in group 3 does not run groups 1 and 2 again. The caller's
    task holds the migration's lease (airmigrate.lease): no other runner can act between the check and the
    act, and a lock-timeout retry checks the state again first."""
    spec = migration.spec
    ran: list[str] = []
    with connect(target, autocommit=True) as conn:
        if state.stage_done(conn, run_id, stage):
            log.info("%s already done in an earlier attempt; skipping", stage)
            return ran
        groups = db.group_statements(db.split_statements(sql_text or ""))
        for index, (autocommit, statements) in enumerate(groups):
            step = f"{stage}:{index}"
            if state.stage_done(conn, run_id, step):
                log.info("%s group %d already done; skipping", stage, index)
                continue
            db.run_group(target, statements, autocommit, lock_timeout_ms=spec.lock_timeout_ms,
                         statement_timeout_ms=spec.statement_timeout_ms, attempts=spec.ddl_attempts,
                         table=(spec.schema_name, spec.table_name), executor=spec.executor_settings(),
                         still_needed=lambda step=step: not state.stage_done(conn, run_id, step))
            state.mark_stage_done(conn, run_id, step)
            ran.extend(statements)
        state.mark_stage_done(conn, run_id, stage)
    return ran
