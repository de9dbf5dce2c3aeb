"""The per-run report of an imported migration (a Flyway script, an Alembic revision): the same files as a native
run's (var/reports/<id>/<start>-<up|rollback>-run<n>.html and .md, 0600, found by the plugin through the DAG run's
meta tag), with what an imported run has: the script and its tool checksum, the steps the executor committed, the
batched statements' batches, the backups, airmigrate's history row and the tool's own history rows after the run.

The native report's schema diff, plan and validation sections are built around a spec's one table; an imported
script names none, so they are not here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from airmigrate import state
from airmigrate.db import Target, connect
from airmigrate.report import _private_dir, _write_private, report_name, reports_dir, written_safely
from airmigrate.report.collect import _fmt, _now, _seconds, find_run
from airmigrate.report.render import render_named

log = logging.getLogger(__name__)


def collect(conn, source, migration, run: dict, target_name: str) -> dict:
    """The report's data, from airmigrate.runs (this run and its batched statements' runs), airmigrate.history
    and the tool's table."""
    facts = run.get("facts") or {}
    direction = run["direction"]
    batched = conn.execute(
        "SELECT r.migration_id, r.status, count(b.*) FILTER (WHERE b.status = 'succeeded'), "
        "coalesce(sum(b.rows) FILTER (WHERE b.status = 'succeeded'), 0), count(b.*) FILTER (WHERE b.status = "
        "'failed'), extract(epoch FROM max(b.finished_at) - min(b.started_at)) FROM airmigrate.runs r LEFT JOIN "
        "airmigrate.batches b ON b.run_id = r.run_id AND b.status <> 'split' WHERE r.migration_id LIKE %s AND "
        "r.direction = 'up' AND r.started_at >= %s GROUP BY r.run_id, r.migration_id, r.status ORDER BY r.run_id",
        (f"{migration.id}#%", run["started_at"])).fetchall() if direction == "up" else []
    hist = state.history(conn, migration.id)
    return {
        "generated_at": _now(), "migration": migration.id, "title": migration.title, "tool": source.kind,
        "source": source.name, "file": str(migration.file), "checksum": migration.checksum,
        "direction": direction, "direction_label": "up" if direction == "up" else "rollback",
        "dag_id": migration.id if direction == "up" else f"{migration.id}__rollback", "target": target_name,
        "run": {"id": run["run_id"], "dag_run_id": run.get("dag_run_id"), "status": run["status"],
                "started_at": _fmt(run["started_at"]), "finished_at": _fmt(run.get("finished_at")),
                "duration_s": _seconds(run["started_at"], run.get("finished_at")),
                "steps": list(run.get("completed_stages") or []), "error": run.get("error")},
        "sql": (migration.up_sql if direction == "up" else migration.down_sql)
        or "(Python revision: run through the tool inside the task)",
        "batched": [{"run": b[0], "status": b[1], "batches": b[2], "rows": int(b[3]), "failed": b[4],
                     "seconds": float(b[5]) if b[5] is not None else None} for b in batched],
        "backups": facts.get(f"{direction}_backup_paths") or [],
        "history": hist and {"status": hist["status"], "checksum": hist["checksum"],
                             "applied_at": _fmt(hist["applied_at"]), "applied_by": hist["applied_by"]},
        "tool_rows": source.tool_rows(conn, migration),
    }


def write_report(target: Target, source, migration, direction: str = "up", run_id: int | None = None,
                 dag_run_id: str | None = None) -> Path | None:
    """Write the run's report (HTML + Markdown); the HTML's path, None when there is no such run."""
    with connect(target, autocommit=True) as conn:
        run = find_run(conn, migration.id, direction, run_id, dag_run_id)
        if run is None:
            return None
        data = collect(conn, source, migration, run, target.describe())
    folder = reports_dir(migration.id)
    _private_dir(folder)
    name = report_name(run)
    html_path = folder / f"{name}.html"
    _write_private(html_path, render_named("imported.html.j2", data, True, (target.password,)))
    _write_private(folder / f"{name}.md", render_named("imported.md.j2", data, False, (target.password,)))
    return html_path


def write_report_safely(target: Target, source, migration, direction: str = "up",
                        dag_run_id: str | None = None) -> Path | None:
    """For the tasks that end a run (and a failing one): never fails the task; logs the path last."""
    return written_safely(lambda: write_report(target, source, migration, direction, dag_run_id=dag_run_id))
