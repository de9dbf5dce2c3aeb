"""validate: the migration's Great Expectations suite, run as SQL in the database, before anything destructive."""

from __future__ import annotations

import contextlib
import io
import logging

from airmigrate import settings, state
from airmigrate.db import Target, connect
from airmigrate.errors import ValidationFailed
from airmigrate.spec import Migration
from airmigrate.validation import run_suite

log = logging.getLogger(__name__)


class _Chatter:
    def __init__(self):
        self.buffer = io.StringIO()

    def show(self) -> None:
        """On failure Great Expectations' own output may help: into the log it goes, then."""
        text = self.buffer.getvalue().strip()
        if text:
            log.info("Great Expectations said:\n%s", text[-20_000:])


@contextlib.contextmanager
def quiet_gx():
    """Keep Great Expectations' chatter (info logs, progress bars) out of the task log unless it fails."""
    chatter = _Chatter()
    gx_log = logging.getLogger("great_expectations")
    handler = logging.StreamHandler(chatter.buffer)
    level, propagate = gx_log.level, gx_log.propagate
    gx_log.addHandler(handler)
    gx_log.setLevel(logging.INFO)
    gx_log.propagate = False
    try:
        with contextlib.redirect_stdout(chatter.buffer), contextlib.redirect_stderr(chatter.buffer):
            yield chatter
    finally:
        gx_log.removeHandler(handler)
        gx_log.setLevel(level)
        gx_log.propagate = propagate


def validate(target: Target, migration: Migration, run_id: int) -> dict:
    """Run the suite; a failure lists every failed expectation and stops the DAG before cleanup."""
    if migration.expectations_file is None:
        log.warning("%s has no expectation suite (expectations/%s.json): nothing validated", migration.id,
                    migration.id)
        result = {"validation": "no suite", "expectations": 0}
    else:
        docs_dir = settings.data_docs_dir() / migration.id
        with quiet_gx() as chatter:
            try:
                outcome = run_suite(target.url(), migration.spec.table_name, migration.expectations_file, docs_dir,
                                    schema=migration.spec.declared_schema)
            except Exception:
                chatter.show()
                raise
        if not outcome.success:
            chatter.show()
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
