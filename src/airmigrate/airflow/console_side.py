"""What the console reads from and does in Airflow's metadata database (the api-server's own models, as its
UI does): the latest DAG runs, their task instances, the logged-in user, the permission to trigger a DAG, and
clearing the failed shard task instances of a run (the retry button). Each read degrades to "nothing known"
where the metadata cannot be read, so the console still shows the target's state. :func:`for_console` hands
them to the console (airmigrate.console.side.AirflowSide), which imports no Airflow itself.
"""

from __future__ import annotations

import logging

from airmigrate.airflow.runs import dag_runs_of, task_tries
from airmigrate.airflow.tasks import target_for
from airmigrate.console.side import AirflowSide

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


async def current_user(request):
    """The logged-in Airflow user of the request (its session cookie or bearer token)."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, oauth2_scheme

    return await get_user(request, await oauth2_scheme(request), await bearer_scheme(request))


def for_console():
    """Everything the console needs from this Airflow, for the plugin to hand over."""
    return AirflowSide(current_user=current_user, latest_dag_runs=latest_dag_runs, runs_of=dag_runs_of,
                       tries_of=task_tries, can_trigger=can_trigger, user_name=user_name,
                       clear_failed_shards=clear_failed_shards, target_for=target_for)
