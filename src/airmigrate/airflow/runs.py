"""Every Airflow run of a migration's DAGs (up, rollback, rehearsal), newest first, for the console's list of runs
(issue 18 §2). The plugin hands :func:`dag_runs_of` to the console, which imports no Airflow itself for it."""

from __future__ import annotations

import logging
from datetime import timezone

log = logging.getLogger(__name__)


def dag_runs_of(migration_id: str, limit: int = 50) -> list[dict]:
    """dag_id, kind (up / rollback / rehearsal), run_id, state, who triggered it, queued / start / end; [] where
    the metadata database cannot be read."""
    dag_ids = {migration_id: "up", f"{migration_id}__rollback": "rollback", f"{migration_id}__rehearsal": "rehearsal"}
    try:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            runs = session.scalars(select(DagRun).where(DagRun.dag_id.in_(list(dag_ids)))
                                   .order_by(DagRun.id.desc()).limit(limit)).all()
            return [{"dag_id": r.dag_id, "kind": dag_ids[r.dag_id], "run_id": r.run_id, "id": r.id,
                     "state": str(getattr(r.state, "value", r.state)) if r.state is not None else None,
                     "triggered_by": getattr(r, "triggering_user_name", None), "queued_at": r.queued_at,
                     "start": r.start_date, "end": r.end_date} for r in runs]
    except Exception as exc:  # no metadata database here
        log.debug("Airflow runs of %s not readable: %s", migration_id, exc)
        return []


def task_tries(dag_id: str, run_id: str) -> list[dict]:
    """The earlier tries of the run's tasks (Airflow keeps each finished try in task_instance_history when a
    task is retried or cleared): task_id, map_index, try, state, start, end. A stage's time is all of them, not
    the last try's. [] where the metadata database cannot be read."""
    try:
        from airflow.models.taskinstancehistory import TaskInstanceHistory as TIH
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(select(TIH.task_id, TIH.map_index, TIH.try_number, TIH.state, TIH.start_date,
                                          TIH.end_date).where(TIH.dag_id == dag_id, TIH.run_id == run_id)).all()
            return [{"task_id": t, "map_index": m, "try": n, "state": str(getattr(s, "value", s)) if s else None,
                     "start": start, "end": end} for t, m, n, s, start, end in rows]
    except Exception as exc:  # no metadata database here
        log.debug("earlier tries of %s/%s not readable: %s", dag_id, run_id, exc)
        return []


def dag_run_stages(dag_id: str, dag_run_id: str) -> list[dict] | None:
    """Each task of that DAG run (mapped shards folded into one row, earlier tries included): status, first
    start, duration to the last end. Needs the metadata database (the CLI, the api-server); None where it cannot
    be read."""
    try:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id,
                                                     TaskInstance.run_id == dag_run_id).all()
            rows: dict[str, dict] = {}
            for ti in sorted(tis, key=lambda t: (t.start_date is None, t.start_date or 0)):
                row = rows.setdefault(ti.task_id, {"task_id": ti.task_id, "state": str(ti.state), "count": 0,
                                                   "_start": None, "_end": None})
                row["count"] += 1
                if str(ti.state) != "success":
                    row["state"] = str(ti.state)
                if ti.start_date and (row["_start"] is None or ti.start_date < row["_start"]):
                    row["_start"] = ti.start_date
                if ti.end_date and (row["_end"] is None or ti.end_date > row["_end"]):
                    row["_end"] = ti.end_date
    except Exception as exc:  # no metadata database here (a task worker): the state tables tell the stages
        log.debug("Airflow task instances not readable: %s", exc)
        return None
    for earlier in task_tries(dag_id, dag_run_id):  # a stage's time spans all its tries (retried, cleared)
        row = rows.get(earlier["task_id"])
        if row is None:
            continue
        row["count"] += 1
        if earlier["start"] and (row["_start"] is None or earlier["start"] < row["_start"]):
            row["_start"] = earlier["start"]
        if earlier["end"] and (row["_end"] is None or earlier["end"] > row["_end"]):
            row["_end"] = earlier["end"]
    out = []
    for row in rows.values():
        start, end = row.pop("_start"), row.pop("_end")
        row["start"] = start.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if start else None
        row["seconds"] = (end - start).total_seconds() if start and end else None
        out.append(row)
    return out or None
