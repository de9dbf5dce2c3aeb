"""The console's numbers, read from the target's state tables (airmigrate.*) and Airflow's runs:
every migration's state, progress (keys covered of the estimate), rows/s now, ETA, failed batches, the
throttle's state; for one migration the stages, the pacing history, the batches (failed first) and the plan.

Pure reads: nothing here writes (actions are in :mod:`airmigrate.console.actions`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

from airmigrate import engines, settings, state
from airmigrate.console import side, stage_rows
from airmigrate.console.chart import chart_svg  # noqa: F401 (the pages' chart, kept importable here)
from airmigrate.console.pool import pooled
from airmigrate.console.runs import runs_list
from airmigrate.control import cancel_message, cancellation, recent_actions
from airmigrate.errors import SpecError
from airmigrate.plan import render, static_plan
from airmigrate.spec import Migration, discover, load_migration
from airmigrate.stages.backfill import settings_of

RATE_WINDOW_S = 30  # "rows/s now": what the last 30 seconds did
APPROVALS = ("approve_contract", "approve_rollback")
IDLE_AFTER_S = 10  # no batch running or finished in this long: rows/s now is 0
ACTIVE_AIRFLOW = ("queued", "running")


def _dag_url(dag_id: str, *parts: str) -> str:
    return "/" + "/".join(["dags", quote(dag_id, safe="")] + [quote(p, safe="") for p in parts])


def links(migration_id: str, dag_run: dict | None) -> dict:
    """Airflow UI pages of this migration (DAG, run, the failed task's log, approval) and its run's report."""
    out = {"dag": _dag_url(migration_id), "rollback": _dag_url(f"{migration_id}__rollback"),
           "page": f"/airmigrate/migrations/{quote(migration_id, safe='')}"}
    if dag_run:
        run_id, dag_id = dag_run["run_id"], dag_run.get("dag_id") or migration_id  # the up or the rollback DAG
        out["run"] = _dag_url(dag_id, "runs", run_id)
        out["report"] = f"/airmigrate/reports/dag-run/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"
        tasks = dag_run.get("tasks") or []
        failed = [t for t in tasks if t["state"] == "failed"]
        running = [t for t in tasks if t["state"] in ("running", "up_for_reschedule", "up_for_retry", "deferred")]
        pick = (failed or running or sorted(tasks, key=lambda t: (t["start"] is None, t["start"] or 0))[-1:] or [None])[0]
        if pick:
            parts = ["runs", run_id, "tasks", pick["task_id"]]
            if pick["map_index"] is not None and pick["map_index"] >= 0:
                parts += ["mapped", str(pick["map_index"])]
            out["logs"] = _dag_url(dag_id, *parts)
            out["logs_task"] = pick["task_id"] + (f"[{pick['map_index']}]" if (pick["map_index"] or -1) >= 0 else "")
        waiting = [t["task_id"] for t in tasks if t["task_id"] in APPROVALS and t["state"] == "awaiting_input"]
        if waiting:
            out["approve"] = _dag_url(dag_id, "runs", run_id, "tasks", waiting[0], "required_actions")
            out["approve_what"] = "rollback" if waiting[0] == "approve_rollback" else "contract"
    return out


def combined_state(hist: dict | None, run: dict | None, dag_run: dict | None) -> tuple[str, str | None]:
    """(state, error) from the history, airmigrate's latest run and Airflow's latest run. Airflow knows that
    a run failed even when it died before it could record it; airmigrate knows paused, expanded, applied."""
    error = (run or {}).get("error") or (hist or {}).get("error")
    a_state = (dag_run or {}).get("state")
    if a_state in ACTIVE_AIRFLOW:
        rollback = (dag_run.get("dag_id") or "").endswith("__rollback")
        if any(t["task_id"] in APPROVALS and t["state"] == "awaiting_input" for t in dag_run["tasks"]):
            return ("rollback waiting for approval" if rollback else "waiting for approval"), None
        if run and run["status"] == "paused":
            return "paused", None
        return ("queued" if a_state == "queued" else "rolling back" if rollback else "running"), None
    if a_state == "failed":
        if not error:
            failed = [t["task_id"] for t in dag_run["tasks"] if t["state"] == "failed"]
            error = f"task {', '.join(sorted(set(failed)))} failed (see its log)" if failed else "the DAG run failed"
        return "failed", error
    if run and run["status"] == "failed":
        return "failed", error
    if run and run["status"] == "paused" and (hist or {}).get("status") not in ("applied", "rolled_back"):
        return "paused", None
    if hist:
        return hist["status"], error if hist["status"] == "failed" else None
    if run:
        return run["status"], error
    return "never run", None


def rows_per_s_now(conn, run_id: int) -> float:
    """Rows the backfill changed in the last RATE_WINDOW_S seconds, per second (the pacer's own figure when
    it logged one in that time)."""
    queries = engines.of(conn).console_sql()
    pacer = queries.pacer_rate(conn, run_id, RATE_WINDOW_S)
    # a shard at work: a batch finished lately, or its pacer (alive only while it works) logged
    if not queries.busy(conn, run_id, IDLE_AFTER_S):
        return 0.0  # nothing ran for a while (paused, stopped, waiting): "now" is zero, not the last figure
    if pacer is not None:
        return pacer
    return float(queries.rows_done_within(conn, run_id, RATE_WINDOW_S)) / RATE_WINDOW_S


def throttle(conn, migration: Migration | None, run: dict | None, now: datetime | None = None) -> dict:
    """running / paused (by whom, when) / cancelled / outside the window (until when) / pacing (its reason)."""
    now = now or datetime.now(timezone.utc)
    out: dict = {"state": "idle", "detail": ""}
    if not run:
        return out
    controls = conn.execute("SELECT paused, cancelled, batch_size FROM airmigrate.controls WHERE run_id = %s",
                            (run["run_id"],)).fetchone()
    paused, cancelled, batch_size = controls or (False, False, None)
    pacing = conn.execute("SELECT budget, target_ratio, reason, baseline_ms, updated_at FROM airmigrate.pacing "
                          "WHERE run_id = %s", (run["run_id"],)).fetchone()
    out.update(batch_size_card(conn, migration, run["run_id"], batch_size))
    if pacing:
        out["pacing"] = {"budget": pacing[0], "target_ratio": pacing[1], "reason": pacing[2],
                         "baseline_ms": pacing[3], "updated_at": state.utc(pacing[4])}
    window = migration.spec.window if migration else None
    if window:
        try:
            out["window"] = f"{window.start}-{window.end} {window.timezone} ({', '.join(window.days)})"
            out["window_open"] = window.contains(now)
            out["next_open"] = window.next_open(now)
        except ValueError:
            out["window_open"] = False
    if run["status"] not in ("running", "paused", "pending"):
        out["state"] = "stopped" if run["status"] == "failed" else "finished"  # nothing runs: no throttle at work
        return out
    out["owner"] = owner_of(conn, run["run_id"])
    last = conn.execute("SELECT actor, at FROM airmigrate.actions WHERE run_id = %s AND action = %s "
                        "ORDER BY at DESC LIMIT 1", (run["run_id"], "cancel" if cancelled else "pause")).fetchone()
    last = last and (last[0], state.utc(last[1]))
    if cancelled:
        out["state"], out["detail"] = "cancelled", (f"by {last[0]} at {_hm(last[1])}" if last else "")
    elif paused:
        out["state"], out["detail"] = "paused", (f"by {last[0]} at {_hm(last[1])}" if last else "from the console")
    elif window and not out.get("window_open"):
        out["state"] = "outside window"
        out["detail"] = f"until {_hm(out['next_open'])}" if out.get("next_open") else "the window never opens"
    else:
        out["state"] = "running"
        if pacing and pacing[2]:
            out["detail"] = pacing[2]
    return out


def owner_of(conn, run_id: int) -> str | None:
    """Who runs it (one runner per migration, airmigrate.lease) and how fresh its heartbeat is."""
    row = engines.of(conn).console_sql().holder_heartbeat(conn, run_id)
    if not row:
        return None
    return row[0] + (f", heartbeat {row[1]:.0f} s ago" if row[1] is not None else "")


def batch_size_card(conn, migration: Migration | None, run_id: int, ceiling: int | None) -> dict:
    """The batch size as it really is: a ceiling set from the console (the adaptive sizer stays under it), the
    fixed size, or "adaptive, started at N, now about M" (no number that is not true)."""
    now = conn.execute("SELECT batch_size FROM airmigrate.cursors WHERE run_id = %s", (run_id,)).fetchone()
    first = conn.execute("SELECT size FROM airmigrate.batches WHERE run_id = %s ORDER BY batch_no LIMIT 1",
                         (run_id,)).fetchone()
    now, first = now and now[0], first and first[0]
    adaptive = True
    if migration is not None and hasattr(migration, "folder"):
        adaptive = settings_of(migration).adaptive
    if ceiling:
        text = f"at most {ceiling:,} rows (set from the console" + ("; adaptive below it)" if adaptive else ")")
    elif adaptive and now:
        text = f"adaptive, started at {first or now:,}, now about {now:,} rows"
    else:
        text = f"{now:,} rows" if now else ""
    return {"batch_size": ceiling or now, "batch_size_text": text}


def _hm(at: datetime | None) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if at else ""


def _load(folder):
    try:
        return load_migration(folder, settings.expectations_dir()), None
    except SpecError as exc:
        return None, str(exc)


def _target(migration: Migration):
    return side.AIRFLOW.target_for(migration)


def state_tables(conn) -> set[str]:
    return engines.of(conn).console_sql().state_tables(conn)


def summary(migration: Migration, dag_run: dict | None, conn) -> dict:
    """One migration's line on the Migrations page, from an open connection to its target."""
    entry: dict = {"id": migration.id, "description": migration.spec.description.strip().splitlines()[0],
                   "table": migration.spec.table}
    tables = state_tables(conn)  # read only: an older version's schema may lack the newer tables
    has_state = "history" in tables and "runs" in tables
    hist = state.history(conn, migration.id) if has_state else None
    run = state.latest_run(conn, migration.id, None) if has_state else None  # up or rollback: the newest
    entry["state"], entry["error"] = combined_state(hist, run, dag_run)
    entry["history"] = hist and {"status": hist["status"], "applied_at": hist["applied_at"],
                                 "applied_by": hist["applied_by"]}
    entry["run"] = run and {"run_id": run["run_id"], "status": run["status"], "dag_run_id": run["dag_run_id"],
                            "direction": run["direction"],
                            "started_at": run["started_at"], "finished_at": run["finished_at"],
                            "stages": list(run["completed_stages"])}
    entry["dag_run"] = dag_run and {k: dag_run.get(k) for k in ("dag_id", "run_id", "state", "start", "end")}
    entry["progress"], entry["rows_per_s"], entry["failed_batches"] = None, 0.0, 0
    entry["throttle"] = {"state": "idle", "detail": ""}
    if run:
        progress = state.progress_now(conn, run["run_id"])
        if progress:
            entry["progress"] = {"covered": int(progress["covered"]), "estimated": int(progress["estimated"]),
                                 "percent": round(float(progress["percent"]), 1),
                                 "eta_s": None if run["status"] in ("paused", "failed") else
                                 round(float(progress["eta_s"]))}
        batches = state.batch_summary(conn, run["run_id"])
        entry["batches"] = {k: (float(v) if k == "seconds" and v is not None else v) for k, v in batches.items()}
        entry["failed_batches"] = int(batches["failed"] or 0)
        if run["status"] in ("running", "pending") and "pacing_log" in tables:
            entry["rows_per_s"] = round(rows_per_s_now(conn, run["run_id"]), 1)
        if {"controls", "pacing", "actions"} <= tables:
            entry["throttle"] = throttle(conn, migration, run)
            mark_cancelled(entry, migration, cancellation(conn, run["run_id"]))
        if entry["state"] in ("paused", "queued", "waiting for approval", "rollback waiting for approval") \
                and entry["throttle"]["state"] != entry["state"]:
            entry["throttle"]["state"] = entry["state"]  # what is happening now, not a stale "running"
    elif migration.spec.window and {"controls", "pacing", "actions"} <= tables:
        entry["throttle"] = throttle(conn, migration, {"run_id": -1, "status": "running"})
        entry["throttle"]["state"] = "idle"
    entry["links"] = links(migration.id, dag_run)
    entry["actions"] = available_actions(entry)
    return entry


def mark_cancelled(entry: dict, migration: Migration, cancel: dict | None) -> None:
    """A cancelled backfill reads as cancelled (by whom, when, what next), not as a failure: the run is
    recorded failed only so that it stays resumable and holds back the migrations after it."""
    entry["cancelled"] = bool(cancel)
    if not cancel or entry["state"] not in ("failed", "running", "paused", "queued"):
        return
    entry["state"], entry["error"] = "cancelled", None
    entry["cancel"] = {"by": cancel["by"], "at": cancel["at"],
                       "next": cancel_message(migration.id, migration.rollback_dag_id, cancel["by"], cancel["at"])}
    entry["throttle"] = {**entry["throttle"], "state": "cancelled",
                         "detail": f"by {cancel['by']}" if cancel["by"] else ""}
    if entry.get("progress"):
        entry["progress"]["eta_s"] = None


def available_actions(entry: dict) -> list[str]:
    """The buttons that apply to a migration in this state."""
    run, st = entry.get("run"), entry["state"]
    if not run or run["status"] not in ("running", "paused", "pending", "failed"):
        return []
    out = []
    if st == "cancelled":
        return ["retry_failed"] if entry.get("failed_batches") and run["status"] != "failed" else []
    if run["status"] in ("running", "pending") and st != "failed":
        out += ["pause", "cancel", "batch_size", "app_latency_ratio"]
    if run["status"] == "paused":
        out += ["resume", "cancel", "batch_size", "app_latency_ratio"]
    if entry.get("failed_batches"):
        out.append("retry_failed")
    if run.get("direction") == "down":  # a rollback's copy-back shards do not wait paused: no pause nor cancel
        out = [a for a in out if a not in ("pause", "resume", "cancel")]
    return out


def overview(dag_runs: dict[str, dict] | None = None, migrations_dir=None) -> list[dict]:
    """Every migration folder in order with its state; one unreachable target or broken folder never hides
    the others."""
    folders = discover(migrations_dir or settings.migrations_dir())
    entries = []
    for position, folder in enumerate(folders, 1):
        migration, problem = _load(folder)
        if migration is None:
            entries.append({"id": folder.name, "position": position, "state": "invalid", "error": problem,
                            "links": links(folder.name, None), "actions": [], "throttle": {"state": "", "detail": ""}})
            continue
        dag_run = (dag_runs or {}).get(migration.id)
        try:
            with pooled(_target(migration)) as conn:
                entry = summary(migration, dag_run, conn)
        except Exception as exc:  # one unreachable target must not hide the others
            entry = {"id": migration.id, "state": "unreachable", "error": f"{type(exc).__name__}: {exc}"[:300],
                     "links": links(migration.id, dag_run), "actions": [], "throttle": {"state": "", "detail": ""},
                     "description": migration.spec.description.strip().splitlines()[0]}
        entry["position"] = position
        entries.append(entry)
    return entries


def find_migration(migration_id: str, migrations_dir=None) -> Migration | None:
    for folder in discover(migrations_dir or settings.migrations_dir()):
        if folder.name == migration_id:
            return _load(folder)[0]
    return None


def pacing_series(conn, run_id: int, limit: int = 600) -> list[dict]:
    """The pacer's decisions over time (rows/s and the application's latency ratio), oldest first; without a
    pacer, rows/s per 10 s from the batches."""
    rows = conn.execute(
        "SELECT at, budget, latency_ratio, rows_per_s, blocked, decision, target_ratio FROM ("
        " SELECT * FROM airmigrate.pacing_log WHERE run_id = %s ORDER BY at DESC LIMIT %s) t ORDER BY at",
        (run_id, limit)).fetchall()
    if rows:
        return [{"at": state.utc(at), "budget": budget, "latency_ratio": lr, "rows_per_s": rps, "blocked": blocked,
                 "decision": decision, "target_ratio": target} for at, budget, lr, rps, blocked, decision, target
                in rows]
    rows = engines.of(conn).console_sql().rate_per_10s(conn, run_id, limit)
    return [{"at": at, "budget": None, "latency_ratio": None, "rows_per_s": float(rps), "blocked": 0,
             "decision": "", "target_ratio": None} for at, rps in reversed(rows)]


def batches_table(conn, run_id: int, limit: int = 500, offset: int = 0) -> list[dict]:
    """Range, rows, seconds, attempts, worker, error; failed first, then running, then by number. Attempts and
    the error count every try (airmigrate.batch_attempts): a retried batch keeps its earlier failures."""
    history = engines.of(conn).state_sql().state_table_exists(conn, "batch_attempts")
    tries = ("(SELECT count(*) FROM airmigrate.batch_attempts a WHERE a.run_id = b.run_id AND a.batch_no = "
             "b.batch_no)" if history else "0")
    last_failure = ("(SELECT a.error FROM airmigrate.batch_attempts a WHERE a.run_id = b.run_id AND a.batch_no = "
                    "b.batch_no AND a.outcome = 'failed' ORDER BY a.id DESC LIMIT 1)" if history else "NULL")
    rows = engines.of(conn).console_sql().batch_page(conn, run_id, tries, last_failure, limit, offset)
    return [{"batch_no": n, "lo": lo, "hi": hi, "status": st, "size": size, "rows": r, "attempts": attempts,
             "worker": worker, "error": error, "started_at": start, "finished_at": end,
             "seconds": round(float(secs), 2) if secs is not None else None}
            for n, lo, hi, st, size, r, attempts, worker, error, start, end, secs in rows]


def stages_of(run: dict | None, dag_run: dict | None, tries: list[dict] | None = None, conn=None) -> list[dict]:
    """The stages of the run with their times: Airflow's task instances (and their earlier ``tries``) when it
    ran there, else the stage times the run recorded. The shards' rows say how long the run was paused."""
    rows = stage_rows.stages(dag_run, tries)
    if rows:
        paused = paused_seconds(conn, run["run_id"]) if conn is not None and run else 0.0
        for row in rows:
            if row["task_id"].endswith(".shard") and paused:
                row["paused_s"] = paused
        return rows
    times = ((run or {}).get("facts") or {}).get("stage_times") or {}
    out = []
    for task_id, entry in sorted(times.items(), key=lambda kv: kv[1].get("start") or ""):
        start = datetime.fromisoformat(entry["start"]) if entry.get("start") else None
        end = datetime.fromisoformat(entry["end"]) if entry.get("end") else None
        out.append({"task_id": task_id, "state": entry.get("state") or "", "start": start, "end": end, "count": 1,
                    "seconds": (end - start).total_seconds() if start and end else None, "failed_map_indexes": []})
    if not out and run:
        out = [{"task_id": s, "state": "success", "start": None, "end": None, "count": 1, "seconds": None,
                "failed_map_indexes": []} for s in run.get("completed_stages") or []]
    return out


def paused_seconds(conn, run_id: int) -> float:
    """How long the run was paused from the console: each pause until the resume (or cancel) after it, or now."""
    rows = conn.execute("SELECT action, at FROM airmigrate.actions WHERE run_id = %s AND action IN ('pause', "
                        "'resume', 'cancel') ORDER BY at", (run_id,)).fetchall()
    total, since = 0.0, None
    for action, at in ((action, state.utc(at)) for action, at in rows):
        if action == "pause" and since is None:
            since = at
        elif action != "pause" and since is not None:
            total, since = total + (at - since).total_seconds(), None
    if since is not None:
        total += (datetime.now(timezone.utc) - since).total_seconds()
    return total


BATCH_PAGE = 50  # batches per page of the migration's page (failed first): the refresh stays light


def detail(migration_id: str, dag_run: dict | None = None, migrations_dir=None,
           airflow_runs: list[dict] | None = None, batch_page: int = 1, tries: list[dict] | None = None) \
        -> dict | None:
    """Everything the one-migration page shows; None for an unknown folder. ``airflow_runs``: every Airflow run of
    its DAGs (the plugin reads them), for the list of runs."""
    migration = find_migration(migration_id, migrations_dir)
    if migration is None:
        return None
    out: dict = {"id": migration.id, "rollback_dag_id": migration.rollback_dag_id}
    try:
        out["plan"] = render(migration, static_plan(migration))
    except Exception as exc:
        out["plan"] = f"(the plan could not be made: {type(exc).__name__}: {exc})"
    try:
        with pooled(_target(migration)) as conn:
            out.update(summary(migration, dag_run, conn))
            run = state.latest_run(conn, migration.id, None) if out.get("run") else None
            tables = state_tables(conn)
            out["stages"] = stages_of(run, dag_run, tries, conn if "actions" in tables else None)
            out["series"] = pacing_series(conn, run["run_id"]) if run and "pacing_log" in tables else []
            batch_page = max(1, batch_page)
            out["batch_rows"] = batches_table(conn, run["run_id"], BATCH_PAGE, (batch_page - 1) * BATCH_PAGE) \
                if run else []
            total = int((out.get("batches") or {}).get("total") or 0)
            out["batch_pages"] = {"page": batch_page, "pages": max(1, -(-total // BATCH_PAGE)), "total": total}
            out["recent_actions"] = recent_actions(conn, migration.id) if run and "actions" in tables else []
            ours = state.runs_of(conn, migration.id) if {"runs", "actions"} <= tables else []
            out["runs"] = runs_list(migration.id, ours, airflow_runs, dag_run, out.get("links"))
    except Exception as exc:
        out.update({"state": "unreachable", "error": f"{type(exc).__name__}: {exc}"[:300], "stages": [], "runs": [],
                    "series": [], "batch_rows": [], "recent_actions": [], "links": links(migration.id, dag_run),
                    "actions": [], "throttle": {"state": "", "detail": ""}})
    out["cancelled"] = bool(out.get("cancelled"))
    return out


def human_seconds(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def when(at) -> str:
    if not at:
        return ""
    if isinstance(at, str):
        return at
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


__all__ = ["overview", "detail", "summary", "combined_state", "throttle", "rows_per_s_now", "batches_table",
           "pacing_series", "chart_svg", "links", "available_actions"]
