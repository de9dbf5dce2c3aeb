"""The console's pages and JSON API (a FastAPI router the plugin mounts at /airmigrate, behind Airflow's login).

Actions are POSTs guarded three ways: Airflow's permission to trigger the migration's DAG (the auth manager),
a same-origin check on Origin/Referer, and a double-submit token (cookie ``airmigrate_csrf`` echoed in the
``X-Airmigrate-CSRF`` header; a form on another site can set neither). A request that authenticates with a
bearer token instead of the session cookie carries no ambient credential, so it needs no CSRF token.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from airmigrate import settings
from airmigrate.console import actions, data, imported
from airmigrate.console.side import AIRFLOW, AirflowSide  # noqa: F401 (filled in by the plugin)
from airmigrate.spec import discover

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
CSRF_COOKIE, CSRF_HEADER = "airmigrate_csrf", "x-airmigrate-csrf"
REFRESH_S = 5
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}

router = APIRouter()


@lru_cache(maxsize=1)
def templates():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]))
    env.filters.update(seconds=data.human_seconds, when=data.when,
                       num=lambda v: "" if v is None else f"{v:,.0f}" if isinstance(v, (int, float)) else str(v))
    env.globals["chart_svg"] = data.chart_svg
    return env


# --- who is asking, and may they ----------------------------------------------------------------------------



async def current_user(request: Request):
    return await AIRFLOW.current_user(request)


def check_same_origin(request: Request) -> None:
    """The request comes from a page of this server: Origin (or, without one, Referer) names this host."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        raise HTTPException(403, "refused: a console action needs an Origin or Referer header of this server")
    hosts = {request.headers.get("host", "")}
    if settings.trust_forwarded_host():  # only a proxy that sets it (and drops a client's) makes it trustworthy
        hosts |= {h.strip() for h in request.headers.get("x-forwarded-host", "").split(",") if h.strip()}
    if urlsplit(source).netloc not in hosts:
        raise HTTPException(403, f"refused: cross-site request from {urlsplit(source).netloc or source}")


def check_csrf(request: Request) -> None:
    """Same origin and the double-submit token, unless the request carries a bearer token (it authenticated
    with that, not with the browser's cookie). An empty ``Authorization: Bearer`` is no token: Airflow then
    falls back to the session cookie, so it gets the full check."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return  # no ambient credential: a bearer token is never sent by the browser on its own
    check_same_origin(request)
    cookie, header = request.cookies.get(CSRF_COOKIE, ""), request.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie, header):
        raise HTTPException(403, "refused: missing or wrong CSRF token (reload the page)")


def csrf_token(request: Request) -> str:
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)


def _with_csrf_cookie(response, request: Request, token: str):
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, path="/airmigrate", samesite="strict", httponly=False,
                            secure=request.url.scheme == "https")
    return response


# --- pages ---------------------------------------------------------------------------------------------------

def newest_dag_runs(ids: list[str]) -> dict[str, dict]:
    """migration id -> the newest Airflow run of its up or rollback DAG: the migration's state is its latest
    run's, whichever way it went (a rollback waiting for approval says so, with the link)."""
    found = AIRFLOW.latest_dag_runs(ids + [f"{i}__rollback" for i in ids])
    out = {}
    for i in ids:
        candidates = [r for r in (found.get(i), found.get(f"{i}__rollback")) if r]
        if candidates:
            out[i] = max(candidates, key=lambda r: r.get("id") or 0)
    return out


def _overview() -> list[dict]:
    """Native folders in order, then imported projects' migrations in their tool's order."""
    ids = [f.name for f in discover(settings.migrations_dir())]
    dag_runs = newest_dag_runs(ids + imported.ids(settings.migrations_dir()))
    native = data.overview(dag_runs)
    return native + imported.overview(dag_runs, settings.migrations_dir(), len(native) + 1)


def _detail(migration_id: str, batch_page: int = 1) -> dict | None:
    dag_run = newest_dag_runs([migration_id]).get(migration_id)
    tries = AIRFLOW.tries_of(dag_run.get("dag_id") or migration_id, dag_run["run_id"]) if dag_run else []
    return data.detail(migration_id, dag_run, airflow_runs=AIRFLOW.runs_of(migration_id), batch_page=batch_page,
                       tries=tries)


def _batch_page(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        return 1


def _only_what_they_may_do(user, entries: list[dict]) -> list[dict]:
    """A user who may not trigger a migration's DAG (a Viewer) sees no button and no approval link for it:
    nothing is shown that would only answer 403."""
    for entry in entries:
        if entry.get("actions") or (entry.get("links") or {}).get("approve"):
            if not AIRFLOW.can_trigger(user, entry["id"]):
                entry["actions"] = []
                entry.get("links", {}).pop("approve", None)
                entry["read_only"] = True
    return entries


def _page(request: Request, template: str, **context) -> HTMLResponse:
    token = csrf_token(request)
    fragment = request.query_params.get("fragment") == "1"
    html = templates().get_template(template).render(fragment=fragment, csrf=token, refresh_s=REFRESH_S,
                                                     labels=actions.LABELS, **context)
    return _with_csrf_cookie(HTMLResponse(html, headers={"Cache-Control": "no-store"}), request, token)


@router.get("/", response_class=HTMLResponse)
async def migrations_page(request: Request, user=Depends(current_user)):
    entries = await asyncio.to_thread(lambda: _only_what_they_may_do(user, _overview()))
    return _page(request, "migrations.html", entries=entries)


@router.get("/migrations/{migration_id}", response_class=HTMLResponse)
async def migration_page(request: Request, migration_id: str, user=Depends(current_user)):
    entry = await asyncio.to_thread(_detail, migration_id, _batch_page(request))
    if entry is None:
        if migration_id in await asyncio.to_thread(imported.ids, settings.migrations_dir()):
            # an imported migration has no page of its own yet: its DAG's (runs, logs, the report tab)
            return RedirectResponse(data.links(migration_id, None)["dag"], status_code=303)
        raise HTTPException(404, f"no migration folder {migration_id}")
    await asyncio.to_thread(_only_what_they_may_do, user, [entry])
    return _page(request, "migration.html", m=entry)


@router.get("/static/{name}")
def static_file(name: str):
    file = STATIC / name
    if "/" in name or name.startswith(".") or file.suffix not in STATIC_TYPES or not file.is_file():
        raise HTTPException(404, "no such file")
    return FileResponse(file, media_type=STATIC_TYPES[file.suffix], headers={"Cache-Control": "no-cache"})


# --- JSON API ------------------------------------------------------------------------------------------------

@router.get("/api/migrations")
async def migrations_json():
    return JSONResponse(jsonable_encoder(await asyncio.to_thread(_overview)))


@router.get("/api/migrations/{migration_id}")
async def migration_json(migration_id: str):
    entry = await asyncio.to_thread(_detail, migration_id)
    if entry is None:
        entry = next((e for e in await asyncio.to_thread(_overview) if e["id"] == migration_id and
                      e.get("imported")), None)  # an imported migration: its line of the list
    if entry is None:
        raise HTTPException(404, f"no migration folder {migration_id}")
    return JSONResponse(jsonable_encoder(entry))


@router.post("/api/migrations/{migration_id}/actions/{action}")
async def act(request: Request, migration_id: str, action: str, user=Depends(current_user)):
    check_csrf(request)
    migration = data.find_migration(migration_id)
    if migration is None:
        raise HTTPException(404, f"no migration folder {migration_id}")
    if not await asyncio.to_thread(AIRFLOW.can_trigger, user, migration.id):
        raise HTTPException(403, f"forbidden: acting on {migration.id} needs the permission to trigger its DAG")
    try:
        body = await request.json()
    except Exception:
        body = {}
    value = body.get("value") if isinstance(body, dict) else None
    actor = AIRFLOW.user_name(user)

    def run():
        return actions.perform(data._target(migration), migration.id, action, actor, value,
                               clear=AIRFLOW.clear_failed_shards)

    try:
        result = await asyncio.to_thread(run)
    except actions.ActionRefused as exc:
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
    return JSONResponse({"ok": True, "actor": actor, **result})


def overview_json() -> list:
    return jsonable_encoder(_overview())
