"""schema_change (expand): the migration's up SQL through the safe DDL executor."""

from __future__ import annotations

import logging

from airmigrate import db, engines, state
from airmigrate.db import Target, connect
from airmigrate.spec import Migration
from airmigrate.stages.generated import join_sql, runtime_steps

log = logging.getLogger(__name__)

# the run's fact naming the DDL step under way: set before a step runs, cleared when it is recorded done (or
# failed). Found set by the next attempt, it means a crash between the server's commit and ours: MySQL commits
# every DDL statement by itself, so such a step is checked, never silently left half-applied or run twice.
IN_FLIGHT = "ddl_step_in_flight"


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
            interrupted = state.run_facts(conn, run_id).get(IN_FLIGHT) == step
            state.add_facts(conn, run_id, **{IN_FLIGHT: step})  # recorded before the step, cleared after it
            try:
                db.run_group(target, statements, autocommit, lock_timeout_ms=spec.lock_timeout_ms,
                             statement_timeout_ms=spec.statement_timeout_ms, attempts=spec.ddl_attempts,
                             table=(spec.schema_name, spec.table_name), executor=spec.executor_settings(),
                             still_needed=lambda step=step: not state.stage_done(conn, run_id, step))
            except Exception as exc:
                if not (interrupted and engines.of(conn).already_in_place(exc)):
                    state.add_facts(conn, run_id, **{IN_FLIGHT: None})  # it failed (said), it was not cut short
                    raise
                log.warning("%s group %d was started by an earlier attempt that stopped before recording its end "
                            "(a crash or a kill); the server says its change is in place (%s): recorded as done, "
                            "not run twice", stage, index, str(exc).strip().splitlines()[0][:200])
            state.mark_stage_done(conn, run_id, step, **{IN_FLIGHT: None})
            ran.extend(statements)
        state.mark_stage_done(conn, run_id, stage)
    return ran
