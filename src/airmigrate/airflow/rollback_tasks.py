"""The rollback DAG's tasks (<id>__rollback): preflight, down, the copy-back's plan and shards, finish. Each
wraps its stage in :func:`airmigrate.airflow.tasks.stage_task` like the way up: the lease, Ctrl-C, and
errors mapped to retry or fail."""

from __future__ import annotations

from airflow.sdk import get_current_context

from airmigrate import interrupt, report
from airmigrate.airflow.tasks import (
    _pacing_override,
    _params,
    _record_who_triggered,
    _skip_if_dry_run,
    _stop_when,
    check_run_params,
    current_run,
    stage_task,
)
from airmigrate.stages import rollback


@stage_task("down")
def rollback_preflight_task(target, migration):
    check_run_params(_params())
    if _params().get("dry_run"):
        return rollback.preflight_rollback(target, migration, dry_run=True)
    result = rollback.preflight_rollback(target, migration, get_current_context()["dag_run"].run_id)
    report.capture_before_safely(target, migration, result)  # the report's "schema before" (issue 11)
    return result


@stage_task("down")
def down_task(target, migration):
    _skip_if_dry_run(migration, "the rollback")
    return rollback.down(target, migration, current_run(target, migration, "down"))


@stage_task("down")
def restore_plan_task(target, migration):
    """The copy-back's cursor, and one mapped shard per `shards` param (like the backfill's plan task)."""
    params = _params()
    _skip_if_dry_run(migration, "the copy-back")
    shards = int(params.get("shards") or migration.spec.shards)
    rollback.start_restore(target, migration, current_run(target, migration, "down"), params.get("batch_size"),
                           shards=shards, **_pacing_override(params))
    return list(range(shards))


@stage_task("down")
def restore_shard_task(target, migration, shard: int):
    """A cleared (re-run) shard also retries the failed batches, as on the way up. No off-peak window: a
    rollback runs when it is needed."""
    context = get_current_context()
    result = rollback.restore_shard(target, migration, current_run(target, migration, "down"), shard,
                                    retry_failed=bool(context["params"].get("retry_failed"))
                                    or context["ti"].try_number > 1, should_stop=_stop_when(None),
                                    shards=int(context["params"].get("shards") or migration.spec.shards),
                                    **_pacing_override(context["params"]))
    if interrupt.requested():
        raise interrupt.Interrupted(f"{interrupt.requested()}: copy-back shard {shard} stopped after "
                                    f"{result['batches']} batch(es)")
    return result


@stage_task("down")
def finish_rollback_task(target, migration):
    _skip_if_dry_run(migration, "the rollback")
    _record_who_triggered()
    run_id = current_run(target, migration, "down")
    result = rollback.finish(target, migration, run_id)
    report.write_report_safely(target, migration, "down", run_id)  # logs the report's path last (issue 11)
    return result
