"""validate: the migration's Great Expectations suite, run as SQL in the database, before anything destructive."""

from __future__ import annotations

import logging

from airmigrate import settings, state
from airmigrate.db import Target, connect
from airmigrate.errors import ValidationFailed
from airmigrate.spec import Migration

log = logging.getLogger(__name__)


def validate(target: Target, migration: Migration, run_id: int) -> dict:
    """Run the suite; a failure lists every failed expectation and stops the DAG before cleanup."""
    if migration.expectations_file is None:
        log.warning("%s has no expectation suite (expectations/%s.json): nothing validated", migration.id,
                    migration.id)
        result = {"validation": "no suite", "expectations": 0}
    else:
        from airmigrate.validation import run_suite  # imports great_expectations: only when a suite runs

        docs_dir = settings.data_docs_dir() / migration.id
        outcome = run_suite(target.url(), migration.spec.table_name, migration.expectations_file, docs_dir,
                            schema=migration.spec.schema_name)
        result = {"validation": "passed" if outcome.success else "failed", "expectations": outcome.evaluated,
                  "failed_expectations": outcome.failed, "data_docs": str(outcome.data_docs_index or docs_dir)}
        if not outcome.success:
            with connect(target, autocommit=True) as conn:
                state.add_facts(conn, run_id, **result)
            raise ValidationFailed(
                f"{len(outcome.failed)} of {outcome.evaluated} expectations failed for {migration.id}:\n  "
                + "\n  ".join(outcome.failed)
                + f"\nData Docs: {result['data_docs']}. Nothing destructive ran; fix the data or the backfill, "
                "then clear the task, or run the rollback DAG")
        log.info("validation passed: %d expectations; Data Docs at %s", outcome.evaluated, result["data_docs"])
    with connect(target, autocommit=True) as conn:
        state.mark_stage_done(conn, run_id, "validate", **result)
    return result
