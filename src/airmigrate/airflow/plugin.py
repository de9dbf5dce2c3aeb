"""The Airflow plugin: a status page of every migration (history, run, batches), behind Airflow's auth.

Mounted by the api-server at /airmigrate. FastAPI apps from plugins are mounted without
authentication, so every route depends on ``requires_authenticated()``.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from airmigrate import settings, state
from airmigrate.db import connect
from airmigrate.errors import SpecError
from airmigrate.spec import discover, load_migration

app = FastAPI(title="airmigrate", dependencies=[Depends(requires_authenticated())])


def migration_status() -> list[dict]:
    """One entry per migration folder: where it stands in its target database."""
    from airmigrate.airflow.tasks import target_for

    entries = []
    for folder in discover(settings.migrations_dir()):
        entry = {"id": folder.name}
        try:
            migration = load_migration(folder, settings.expectations_dir())
            with connect(target_for(migration), autocommit=True) as conn:
                if conn.execute("SELECT to_regclass('airmigrate.history')").fetchone()[0] is None:
                    entry["status"] = "never run"
                else:
                    hist = state.history(conn, migration.id)
                    run = state.latest_run(conn, migration.id)
                    entry["status"] = hist["status"] if hist else "never run"
                    if run:
                        entry["run"] = {"status": run["status"], "stages": run["completed_stages"],
                                        "batches": state.batch_summary(conn, run["run_id"]), "error": run["error"]}
        except SpecError as exc:
            entry["status"], entry["error"] = "invalid", str(exc)
        except Exception as exc:  # one unreachable target must not hide the others
            entry["status"], entry["error"] = "unreachable", type(exc).__name__
        entries.append(entry)
    return entries


@app.get("/status")
def status_json() -> list[dict]:
    return migration_status()


@app.get("/", response_class=HTMLResponse)
def status_page() -> str:
    rows = []
    for e in migration_status():
        b = (e.get("run") or {}).get("batches") or {}
        progress = f"{b.get('succeeded', 0)}/{b.get('total', 0)} batches, {b.get('failed', 0)} failed" if b else ""
        rows.append(f"<tr><td>{html.escape(e['id'])}</td><td>{html.escape(e['status'])}</td>"
                    f"<td>{html.escape(progress)}</td><td>{html.escape(str(e.get('error') or ''))}</td></tr>")
    return ("<html><body><h1>airmigrate</h1><table border=1 cellpadding=4>"
            "<tr><th>migration</th><th>status</th><th>backfill</th><th>error</th></tr>"
            + "".join(rows) + "</table></body></html>")


# --- run reports (issue 11): var/reports/<migration>/<run>.html|md, behind the same login -----------------

REPORT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _report_file(migration_id: str, path: str) -> Path:
    """A file under var/reports/<migration>/, never outside it (no .., no absolute paths, no symlinks out)."""
    from airmigrate.report import reports_dir

    root = reports_dir().resolve()
    if not REPORT_NAME.match(migration_id) or any(not REPORT_NAME.match(p) or p in (".", "..")
                                                    for p in path.split("/")):
        raise HTTPException(status_code=404, detail="no such report")
    file = (root / migration_id / path).resolve()
    if root not in file.parents or not file.is_file():
        raise HTTPException(status_code=404, detail="no such report")
    return file


@app.get("/reports/", response_class=HTMLResponse)
def reports_index() -> str:
    """Every report, newest first per migration."""
    from airmigrate.report import reports_dir

    root, items = reports_dir(), []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        links = [f'<li><a href="{html.escape(folder.name)}/{html.escape(f.name)}">{html.escape(f.stem)}</a> '
                 f'(<a href="{html.escape(folder.name)}/{html.escape(f.with_suffix(".md").name)}">Markdown</a>)</li>'
                 for f in sorted(folder.glob("*.html"), reverse=True)]
        if links:
            items.append(f"<h2>{html.escape(folder.name)}</h2><ul>{''.join(links)}</ul>")
    return ("<html><head><meta charset=\"utf-8\"><title>airmigrate reports</title></head><body><h1>Run reports</h1>"
            + ("".join(items) or "<p>No report yet: every run of a migration writes one.</p>") + "</body></html>")


@app.get("/reports/dag-run/{dag_id}/{run_id}")
def report_of_dag_run(dag_id: str, run_id: str):
    """The report of an Airflow DAG run (the "Run report" tab of a DAG run), brought up to date first with the
    task instances' timings, which the api-server can read and a worker cannot."""
    from airmigrate.airflow.tasks import target_for
    from airmigrate.report import airflow_stages, find_report, write_report

    rollback = dag_id.endswith("__rollback")
    migration_id = dag_id.removesuffix("__rollback")
    if not REPORT_NAME.match(migration_id):
        raise HTTPException(status_code=404, detail="no such migration")
    path = None
    try:
        migration = load_migration(settings.migrations_dir() / migration_id, settings.expectations_dir())
        path = write_report(target_for(migration), migration, "down" if rollback else "up", dag_run_id=run_id,
                            stages=airflow_stages(dag_id, run_id))
    except Exception:  # the target or the folder is gone: the report written at the time still tells
        pass
    path = path or find_report(migration_id, run_id)
    if path is None:
        return HTMLResponse(f"<html><body><p>No report for {html.escape(dag_id)} run {html.escape(run_id)}: a run "
                            "that changed nothing (dry run, already applied) has none.</p>"
                            '<p><a href="/airmigrate/reports/">All reports</a></p></body></html>', status_code=404)
    return RedirectResponse(f"/airmigrate/reports/{migration_id}/{path.name}", status_code=303)


@app.get("/reports/{migration_id}/{path:path}")
def report_file(migration_id: str, path: str):
    file = _report_file(migration_id, path)
    media = {".html": "text/html", ".md": "text/plain", ".css": "text/css", ".js": "text/javascript",
             ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png"}.get(file.suffix)
    if media is None:
        raise HTTPException(status_code=404, detail="no such report")
    return FileResponse(file, media_type=media + ("; charset=utf-8" if media.startswith("text/") else ""))


class AirmigratePlugin(AirflowPlugin):
    name = "airmigrate"
    fastapi_apps = [{"app": app, "url_prefix": "/airmigrate", "name": "airmigrate"}]
    external_views = [{"name": "Migrations", "href": "/airmigrate/", "destination": "nav", "category": "browse"},
                      {"name": "Migration reports", "href": "/airmigrate/reports/", "destination": "nav",
                       "category": "browse"},
                      {"name": "Run report", "href": "/airmigrate/reports/dag-run/{DAG_ID}/{RUN_ID}",
                       "destination": "dag_run"}]
