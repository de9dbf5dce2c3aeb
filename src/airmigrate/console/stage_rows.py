"""A run's stages as the console and the report show them: Airflow's task instances of one DAG run (mapped
shards folded into one row) in pipeline order, each timed over all its tries. Plain data in, plain data out:
the task instances come from the Airflow glue (airmigrate.airflow.console_side)."""

from __future__ import annotations

from datetime import datetime

# the tasks of the up, rollback and rehearsal DAGs in pipeline order: stages not yet run are listed where they
# come, not after the ones that ran
PIPELINE = ("window", "preflight", "backup", "schema_change", "backfill.plan", "backfill.shard", "validate",
            "approve_contract", "cleanup", "approve_rollback", "down", "restore.plan", "restore.shard", "finish",
            "rehearse")
GOING = ("running", "up_for_reschedule", "up_for_retry", "deferred", "awaiting_input", "restarting")
RANK = {"failed": 0, "upstream_failed": 1, "running": 2, "up_for_retry": 3, "up_for_reschedule": 4,
        "deferred": 5, "awaiting_input": 5, "queued": 6, "scheduled": 7, "restarting": 7, None: 8,
        "skipped": 9, "removed": 9, "success": 10}


def stages(dag_run: dict | None, tries: list[dict] | None = None) -> list[dict]:
    """The run's tasks in pipeline order, mapped shards folded into one row (worst state). A stage's time runs
    from its first try's start (``tries``: the earlier ones, which Airflow keeps apart) to its last end, or to
    now while it is going (a paused shard waiting up_for_reschedule included); a task cleared and not started
    again shows what its tries took, not a time that grows."""
    if not dag_run:
        return []
    rows: dict[str, dict] = {}
    for t in dag_run["tasks"]:
        row = _stage_row(rows, t["task_id"])
        row["count"] += 1
        if RANK.get(t["state"], 8) < RANK.get(row["state"], 8) or row["count"] == 1:
            row["state"] = t["state"]
        if t["state"] == "failed":
            row["failed_map_indexes"].append(t["map_index"])
        _widen(row, t["start"], t["end"])
    for t in tries or []:
        if t["task_id"] in rows:
            rows[t["task_id"]]["tries"] += 1
            _widen(rows[t["task_id"]], t["start"], t["end"])
    for row in rows.values():
        going = row["state"] in GOING
        end = datetime.now(row["start"].tzinfo) if going and row["start"] else row["end"]
        row["end"] = None if going else row["end"]
        row["seconds"] = (end - row["start"]).total_seconds() if row["start"] and end else None
    order = {task_id: i for i, task_id in enumerate(PIPELINE)}
    return sorted(rows.values(), key=lambda r: (order.get(r["task_id"], len(PIPELINE)), r["task_id"]))


def _stage_row(rows: dict, task_id: str) -> dict:
    return rows.setdefault(task_id, {"task_id": task_id, "state": None, "start": None, "end": None, "count": 0,
                                     "tries": 0, "failed_map_indexes": []})


def _widen(row: dict, start, end) -> None:
    if start and (row["start"] is None or start < row["start"]):
        row["start"] = start
    if end and (row["end"] is None or end > row["end"]):
        row["end"] = end
