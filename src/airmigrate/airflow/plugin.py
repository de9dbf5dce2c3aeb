"""The Airflow plugin: the operations console (issue 12) and the run reports, behind Airflow's login.

Mounted by the api-server at /airmigrate; the console shows inside the Airflow UI as the "Migrations" page
(an external view with a url_route: Airflow frames it under its own navigation). FastAPI apps from plugins
are mounted without authentication, so every route depends on ``requires_authenticated()``, and a browser
that is not logged in is sent to Airflow's login page (the API docs and the OpenAPI document too). The
console's logic lives in :mod:`airmigrate.console`; this module only routes.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from airmigrate.airflow import console_side
from airmigrate.console import side, web
from airmigrate.report import find_report, reports_dir

# the console's user, runs, tries, permission and clearing come from this Airflow (the console imports none)
side.install(console_side.for_console())

app = FastAPI(title="airmigrate", description="The airmigrate console's API (issue 12) and run reports",
              dependencies=[Depends(requires_authenticated())], docs_url=None, redoc_url=None, openapi_url=None)
app.include_router(web.router)


@app.middleware("http")
async def not_framed_by_other_sites(request: Request, call_next):
    """Every page and report may be framed by this server only (Airflow's UI frames the console): a page of
    another site, or another port of this host, cannot frame it logged in and steer a click onto a button."""
    response = await call_next(request)
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'self'")
    return response


@app.exception_handler(StarletteHTTPException)
async def login_for_browsers(request: Request, exc: StarletteHTTPException):
    """Not logged in (or the session expired): a browser asking for a page goes to Airflow's login page and
    back; API clients get the 401 as JSON."""
    if exc.status_code in (401, 403) and request.method == "GET" and str(exc.detail) in (
            "Not authenticated", "Token Expired", "Invalid JWT token") \
            and "text/html" in request.headers.get("accept", ""):
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
    return await http_exception_handler(request, exc)


@app.get("/openapi.json", include_in_schema=False)
def openapi_document():
    return JSONResponse(app.openapi())


@app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
@app.get("/redoc", response_class=HTMLResponse, include_in_schema=False)
def api_docs() -> str:
    """The API's routes as a page of their own (no CDN: Swagger UI and ReDoc would load from one)."""
    rows = []
    for path, methods in app.openapi().get("paths", {}).items():
        for method, op in methods.items():
            rows.append(f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>/airmigrate"
                        f"{html.escape(path)}</code></td><td>{html.escape(op.get('summary') or '')}</td></tr>")
    return ('<!doctype html><html><head><meta charset="utf-8"><title>airmigrate API</title>'
            '<link rel="stylesheet" href="/airmigrate/static/console.css"></head><body><main><h1>airmigrate API</h1>'
            '<p>The OpenAPI document: <a href="/airmigrate/openapi.json">/airmigrate/openapi.json</a>. Actions are '
            'POSTs that need the permission to trigger the DAG and, with the session cookie, the same origin and the '
            'X-Airmigrate-CSRF header (a bearer token needs neither).</p><table class="grid"><tr><th>Method</th>'
            '<th>Path</th><th>What</th></tr>' + "".join(rows) + "</table></main></body></html>")


@app.get("/status")
def status_json() -> list[dict]:
    """Every migration's state as JSON (the console's list, kept at its old address)."""
    return web.overview_json()


# --- run reports (issue 11): var/reports/<migration>/<run>.html|md, behind the same login -----------------

REPORT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _report_file(migration_id: str, path: str) -> Path:
    """A file under var/reports/<migration>/, never outside it (no .., no absolute paths, no symlinks out)."""
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
    """The report of an Airflow DAG run (the "Run report" tab of a DAG run): the file written when that run
    ended, served as it is. A report is the record of a run: it is never written on a read (opened after a
    rollback, it must still show what the run did, not the schema of today)."""
    migration_id = dag_id.removesuffix("__rollback").removesuffix("__rehearsal")
    if not REPORT_NAME.match(migration_id):
        raise HTTPException(status_code=404, detail="no such migration")
    path = find_report(migration_id, run_id)
    if path is None:
        return HTMLResponse(f"<html><body><p>No report for {html.escape(dag_id)} run {html.escape(run_id)} yet: a "
                            "run writes its report when it ends (a run still going, or one that changed nothing, "
                            "such as a dry run, has none).</p>"
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
    external_views = [{"name": "Migrations", "href": "/airmigrate/", "url_route": "migrations", "destination": "nav",
                       "icon": "/airmigrate/static/icon.svg"},
                      {"name": "Migration reports", "href": "/airmigrate/reports/", "destination": "nav",
                       "category": "browse"},
                      {"name": "Run report", "href": "/airmigrate/reports/dag-run/{DAG_ID}/{RUN_ID}",
                       "destination": "dag_run"}]
