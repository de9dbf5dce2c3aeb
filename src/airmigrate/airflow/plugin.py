"""The Airflow plugin: a status page of every migration (history, run, batches), behind Airflow's auth.

Mounted by the api-server at /airmigrate. FastAPI apps from plugins are mounted without
authentication, so every route depends on ``requires_authenticated()``.
"""

from __future__ import annotations

import html

from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

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


class AirmigratePlugin(AirflowPlugin):
    name = "airmigrate"
    fastapi_apps = [{"app": app, "url_prefix": "/airmigrate", "name": "airmigrate"}]
    external_views = [{"name": "Migrations", "href": "/airmigrate/", "destination": "nav", "category": "browse"}]
