"""What the console reads from and does in Airflow's metadata database (the api-server's own models, as its
UI does): the latest DAG runs, their task instances, the permission to trigger a DAG, and clearing the failed
shard task instances of a run (the retry button). Each function degrades to "nothing known" where the
metadata cannot be read (a test without Airflow), so the console still shows the target's state.
"""

from __future__ import annotations

import logging
from datetime import datetime

log = logging.getLogger(__name__)

SHARD_TASKS = ("backfill.shard", "restore.shard")


def latest_dag_runs(dag_ids: list[str]) -> dict[str, dict]:
    """dag_id -> its newest run (by run_after/start): run_id, state, start, end, and its failed tasks."""
    if not dag_ids:
        return {}
    try:
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import func, select

        with create_session() as session:
            newest = (select(DagRun.dag_id, func.max(DagRun.id).label("id"))
                      .where(DagRun.dag_id.in_(dag_ids)).group_by(DagRun.dag_id).subquery())
            runs = session.scalars(select(DagRun).join(newest, DagRun.id == newest.c.id)).all()
            out = {}
            for run in runs:
                tis = session.execute(
                    select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state, TaskInstance.start_date,
                           TaskInstance.end_date, TaskInstance.try_number)
                    .where(TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id)).all()
                out[run.dag_id] = {
                    "dag_id": run.dag_id, "id": run.id, "run_id": run.run_id, "state": _s(run.state), "start": run.start_date, "end": run.end_date,
                    "queued_at": run.queued_at, "note": getattr(run, "note", None),
                    "tasks": [{"task_id": t, "map_index": m, "state": _s(st), "start": s, "end": e, "try": tr}
                              for t, m, st, s, e, tr in tis]}
            return out
    except Exception as exc:  # no metadata database here
        log.debug("Airflow runs not readable: %s", exc)
        return {}


def _s(value) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


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


def can_trigger(user, dag_id: str) -> bool:
    """The permission the UI's Trigger button needs: POST on the DAG's runs (Airflow's auth manager)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    try:
        from airflow.models.dag import DagModel

        team = DagModel.get_team_name(dag_id)
    except Exception:
        team = None
    return bool(get_auth_manager().is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN,
                                                     details=DagDetails(id=dag_id, team_name=team), user=user))


def user_name(user) -> str:
    for attr in ("get_name", "get_id"):
        try:
            value = getattr(user, attr)()
            if value:
                return str(value)
        except Exception:
            continue
    return "unknown"


def clear_failed_shards(dag_id: str, dag_run_id: str) -> list[str]:
    """What the UI's Clear does for the failed shard task instances of that run and what depends on them
    (only failed / upstream failed; the run goes back to queued): Airflow runs them again. Returns the cleared
    task instances as "task_id[map_index]"."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances, find_relevant_relatives
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    with create_session() as session:
        dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == dag_run_id))
        if dag_run is None:
            return []
        dag = DBDagBag().get_dag_for_run(dag_run, session=session)
        if dag is None:
            return []
        task_ids = {t for t in SHARD_TASKS if t in dag.task_dict}
        mapped: set = set()
        relatives = find_relevant_relatives(task_ids, mapped, dag=dag, run_id=dag_run_id, direction="downstream",
                                            session=session)
        task_ids.update(t for t in relatives if not isinstance(t, tuple))
        mapped.update(t for t in relatives if isinstance(t, tuple))
        markers = [*task_ids, *((t, m) for t, m in mapped if t not in task_ids)]
        try:
            from airflow.api_fastapi.common.dagbag import resolve_run_on_latest_version

            latest = resolve_run_on_latest_version(None, dag_id, session)
        except Exception:
            latest = False
        tis = dag.clear(dry_run=True, task_ids=markers, run_id=dag_run_id, session=session,
                        run_on_latest_version=latest, only_failed=True)
        if tis:
            clear_task_instances(tis, session, DagRunState.QUEUED, run_on_latest_version=latest)
        return [f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id for ti in tis]
