"""Imported migrations (Flyway scripts, Alembic revisions) on the console's Migrations page, after the native
folders, each from its own target: the state airmigrate recorded (airmigrate.history, the latest run, Airflow's
latest DAG run, combined as for a native migration), the tool's own word where airmigrate has none (a script the
team ran with Flyway itself) or where it disagrees (drift: a file changed since it was applied), the rows its
batched statements wrote, and the links to its DAGs and its run's report.

Pure reads, like :mod:`airmigrate.console.data`; one project that does not load, or one unreachable target,
never hides the others.
"""

from __future__ import annotations

from types import SimpleNamespace

from airmigrate import engines, state
from airmigrate.console import side
from airmigrate.console.data import combined_state, links
from airmigrate.console.pool import pooled
from airmigrate.sources import load_sources_safely


def sources(migrations_dir):
    """(source, None) for each project that loads, (None, (file name, error)) for one that does not."""
    loaded, broken = load_sources_safely(migrations_dir)
    return [(source, None) for source in loaded] + [(None, (path.name, error)) for path, error in broken]


def ids(migrations_dir) -> list[str]:
    """Every imported migration's id (its DAG's), for the newest DAG runs."""
    return [m.id for source, _ in sources(migrations_dir) if source for m in source.migrations()]


def _target(source):
    """The project's Airflow connection, asked as for a native migration (the side reads spec.connection_id)."""
    return side.AIRFLOW.target_for(SimpleNamespace(id=source.name, spec=SimpleNamespace(
        connection_id=source.file.settings.connection_id)))


def entry(conn, source, migration, status, dag_run: dict | None, tables: set[str]) -> dict:
    """One imported migration's line, with the keys a native line has."""
    has_state = {"history", "runs"} <= tables
    hist = state.history(conn, migration.id) if has_state else None
    run = state.latest_run(conn, migration.id, None) if has_state else None
    st, error = combined_state(hist, run, dag_run)
    if status.problem and st not in ("running", "queued", "rolling back"):
        st, error = status.state, status.detail  # drift, a failed row, a missing file: the tool's history says
    elif hist is None and run is None:
        st = status.state  # applied by the tool itself, or pending
    backfilled = conn.execute(
        "SELECT coalesce(sum(b.rows), 0) FROM airmigrate.batches b WHERE b.status = 'succeeded' AND b.run_id IN "
        "(SELECT max(run_id) FROM airmigrate.runs WHERE migration_id LIKE %s GROUP BY migration_id)",
        (f"{migration.id}#%",)).fetchone()[0] if has_state and "batches" in tables else 0
    return {"id": migration.id, "description": f"{migration.title} ({source.kind}: {migration.file.name})",
            "table": None, "imported": source.name, "state": st, "error": error,
            "tool_state": status.state, "checksum": migration.checksum,
            "history": hist and {"status": hist["status"], "applied_at": hist["applied_at"],
                                 "applied_by": hist["applied_by"], "checksum": hist["checksum"]},
            "run": run and {"run_id": run["run_id"], "status": run["status"], "dag_run_id": run["dag_run_id"],
                            "direction": run["direction"], "started_at": run["started_at"],
                            "finished_at": run["finished_at"], "stages": list(run["completed_stages"])},
            "dag_run": dag_run and {k: dag_run.get(k) for k in ("dag_id", "run_id", "state", "start", "end")},
            "progress": None, "rows_per_s": 0.0, "failed_batches": 0, "rows_backfilled": int(backfilled),
            "throttle": {"state": "idle", "detail": ""}, "links": links(migration.id, dag_run), "actions": []}


def overview(dag_runs: dict[str, dict] | None, migrations_dir, first_position: int = 1) -> list[dict]:
    """Every imported migration in its tool's order, project by project, numbered after the native folders."""
    out: list[dict] = []
    for source, broken in sources(migrations_dir):
        if source is None:
            out.append({"id": broken[0], "state": "invalid", "error": broken[1], "links": links(broken[0], None),
                        "actions": [], "throttle": {"state": "", "detail": ""}})
            continue
        try:
            with pooled(_target(source)) as conn:
                tables = engines.of(conn).console_sql().state_tables(conn)
                statuses = source.statuses(conn)
                out += [entry(conn, source, m, statuses[m.id], (dag_runs or {}).get(m.id), tables)
                        for m in source.migrations()]
        except Exception as exc:  # one unreachable target must not hide the others
            out += [{"id": m.id, "state": "unreachable", "error": f"{type(exc).__name__}: {exc}"[:300],
                     "description": m.title, "links": links(m.id, (dag_runs or {}).get(m.id)), "actions": [],
                     "throttle": {"state": "", "detail": ""}} for m in source.migrations()]
    for position, item in enumerate(out, first_position):
        item["position"] = position
    return out
