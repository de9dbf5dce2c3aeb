"""One data object per run, gathered from the state tables (airmigrate.runs, batches, history), the run's facts,
the plan and the catalog. Rendered twice (HTML and Markdown) by :mod:`.render`."""

from __future__ import annotations

import json
import logging
import os
import statistics
from datetime import datetime, timezone
from pathlib import Path

from airmigrate import engines, plan, state
from airmigrate.app_versions import NEW_ONLY, app_versions
from airmigrate.control import cancellation
from airmigrate.gates import needs_approval, needs_rollback_approval
from airmigrate.report import svg
from airmigrate.report.rehearsal_summary import last_rehearsal as newest, render
from airmigrate.report.workers import by_worker
from airmigrate.schemadocs import shape as schema_mod
from airmigrate.spec import Migration
from airmigrate.stages.backfill import settings_of

log = logging.getLogger(__name__)

# the stages of each DAG in run order (Airflow task ids), for the state-only view of a run
UP_STAGES = ("preflight", "backup", "schema_change", "backfill", "validate", "cleanup")
DOWN_STAGES = ("preflight", "down", "restore", "finish")


def collect(conn, migration: Migration, run: dict, direction: str, target_name: str,
            stages: list[dict] | None = None) -> dict:
    """Everything the report shows, as plain data. ``run``: a row of airmigrate.runs (see :func:`run_row`);
    ``stages``: the Airflow task instances (task_id, state, start, seconds) when the caller can read them,
    else the stages are told from the state tables."""
    facts = run.get("facts") or {}
    hist = state.history(conn, migration.id)
    batches = batch_rows(conn, run["run_id"])
    after = schema_mod.snapshot(conn, migration)
    before = facts.get("schema_before")
    data = {
        "generated_at": _now(),
        "migration": migration.id,
        "direction": direction,
        "direction_label": "up" if direction == "up" else "rollback",
        "dag_id": migration.id if direction == "up" else migration.rollback_dag_id,
        "target": target_name,
        "run": {"id": run["run_id"], "dag_run_id": run.get("dag_run_id"), "status": run["status"],
                "started_at": _fmt(run["started_at"]), "finished_at": _fmt(run.get("finished_at")),
                "duration_s": _seconds(run["started_at"], run.get("finished_at")),
                "completed_stages": list(run.get("completed_stages") or []), "error": run.get("error")},
        "purpose": purpose(migration, hist),
        "breaking": breaking_changes(migration),
        "plan": facts.get("plan_before") or plan_rows(conn, migration, after_run=True),
        "stages": stages if stages is not None else stages_from_state(run, batches, direction),
        "stages_source": "Airflow task instances" if stages is not None else "the state tables",
        "backfill": backfill_facts(migration, run, batches, state.batch_attempts(conn, run["run_id"])),
        "validation": validation_facts(migration, facts) if direction == "up" else None,
        "backup": backup_facts(conn, migration, hist, facts),
        "rollback": rollback_facts(conn, migration),
        "actions": run_actions(conn, run["run_id"]),
        "performance": performance_facts(migration.id, facts, before, after),
        "schema": {"before_taken_at": (before or {}).get("taken_at"), "after_taken_at": after["taken_at"],
                   "before_missing": before is None, "tables": schema_mod.diff(before, after),
                   # a rollback's own check: the table against its definition before the migration
                   "verification": ({"identical": facts["structure_identical"],
                                     "differences": facts.get("structure_differences") or []}
                                    if "structure_identical" in facts else None)},
    }
    if run["status"] in ("failed", "running", "paused") and _cancelled(conn, run["run_id"]):
        data["run"]["status"] = "cancelled"  # by whom and what next: the run's error says (control.cancel_message)
    marks_before, marks_after = _diagram_marks(data["schema"]["tables"])
    data["diagram_before"] = svg.table_diagram(before, marks_before, "before") if before else ""
    data["diagram_after"] = svg.table_diagram(after, marks_after, "after")
    data["rate_chart"] = svg.rate_chart(data["backfill"]["series"]) if data["backfill"] else ""
    return data


def _cancelled(conn, run_id: int) -> bool:
    if not engines.of(conn).state_sql().state_table_exists(conn, "controls"):
        return False
    return cancellation(conn, run_id) is not None


def run_actions(conn, run_id: int) -> list[dict]:
    """What people did to this run from the console or the approval step (who, when, what), oldest first."""
    if not engines.of(conn).state_sql().state_table_exists(conn, "actions"):
        return []
    rows = conn.execute("SELECT at, action, detail, actor FROM airmigrate.actions WHERE run_id = %s ORDER BY at",
                        (run_id,)).fetchall()
    return [{"at": _fmt(state.utc(at)), "action": action, "detail": detail, "actor": actor} for at, action, detail, actor in rows]


def find_run(conn, migration_id: str, direction: str, run_id: int | None = None,
             dag_run_id: str | None = None) -> dict | None:
    """The run a report is about: ``run_id``, else the one of ``dag_run_id``, else the latest of that direction;
    None when the target has no state tables yet or no such run (a dry run, an already applied migration)."""
    if not engines.of(conn).state_sql().state_table_exists(conn, "runs"):
        return None
    if run_id is None:
        query = "SELECT run_id FROM airmigrate.runs WHERE migration_id = %s AND direction = %s"
        params: tuple = (migration_id, direction)
        if dag_run_id is not None:
            query += " AND dag_run_id = %s"
            params += (dag_run_id,)
        row = conn.execute(query + " ORDER BY run_id DESC LIMIT 1", params).fetchone()
        if row is None:
            return None
        run_id = row[0]
    return run_row(conn, run_id)


def run_row(conn, run_id: int) -> dict | None:
    cur = conn.execute("SELECT run_id, migration_id, direction, dag_run_id, status, completed_stages, facts, "
                       "started_at, finished_at, error FROM airmigrate.runs WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    return state.row_dict(cur, row, "completed_stages", "facts")


def batch_rows(conn, run_id: int) -> list[dict]:
    cur = conn.execute("SELECT batch_no, lo, hi, status, size, b.rows, attempts, last_error, worker, started_at, "
                       "finished_at FROM airmigrate.batches b WHERE run_id = %s ORDER BY batch_no", (run_id,))
    return [{c[0]: state.utc(v) for c, v in zip(cur.description, row)} for row in cur.fetchall()]


def purpose(migration: Migration, hist: dict | None) -> dict:
    """The description, and who/when as far as they are known: the spec has no author or date fields, so
    the folder, its checksum and the history's started/applied by and at stand in."""
    spec = migration.spec
    return {"description": spec.description.strip(), "table": spec.table, "key": ", ".join(spec.key_columns),
            "folder": migration.folder.name, "checksum": migration.checksum[:16],
            "author": getattr(spec, "author", None), "date": getattr(spec, "date", None),
            "history_status": (hist or {}).get("status"),
            "applied_by": (hist or {}).get("applied_by"), "applied_at": _fmt((hist or {}).get("applied_at")),
            "depends_on": list(getattr(spec, "depends_on", []) or []),
            "acknowledged": [{"rule": a.rule, "reason": a.reason} for a in spec.acknowledge]}


def breaking_changes(migration: Migration) -> dict:
    expand, contract, why = app_versions(migration)
    return {"expand": expand, "contract": contract, "reasons": why, "breaking": contract == NEW_ONLY,
            "contract_needs_approval": needs_approval(migration),
            "rollback_needs_approval": needs_rollback_approval(migration),
            "deploy_hint": (f"airmigrate run {migration.id} --until expand; deploy the new release; "
                            f"airmigrate complete {migration.id}") if contract == NEW_ONLY else None}


def plan_rows(conn, migration: Migration, after_run: bool = False) -> dict:
    """The statements in run order with their lock, scan/rewrite and transaction boundary (airmigrate.plan).
    The preflight records it (report.capture_before); `after_run`: a run that did not (an older version's)
    is planned now, and says so."""
    try:
        planned, note = plan.static_plan(migration, conn), ("planned after the run (none was recorded before it)"
                                                            if after_run else "")
    except Exception as exc:  # e.g. the table is gone after a contract: plan without the catalog
        log.info("plan against the target failed (%s): static plan", exc)
        planned, note = plan.static_plan(migration), "planned without the target's catalog"
    effects = {"scan": "scans the table", "rewrite": "REWRITES the table", "": "no scan"}
    return {"note": note, "lock_timeout_ms": migration.spec.lock_timeout_ms,
            "statement_timeout_ms": migration.spec.statement_timeout_ms,
            "statements": [{"n": i, "stage": p.stage, "sql": p.sql.strip(), "lock": p.lock,
                            "effect": effects.get(p.effect, p.effect),
                            "transaction": "transaction" if p.transactional else "own transaction (autocommit)",
                            "blocks_writes": p.blocks_writes, "also": list(p.also)}
                           for i, p in enumerate(planned, 1)]}


def stages_from_state(run: dict, batches: list[dict], direction: str) -> list[dict]:
    """Without Airflow's task instances: each stage done or not, the batches' span for the backfill, the run's
    start for the preflight and its end for the last stage."""
    done = set(run.get("completed_stages") or [])
    names = UP_STAGES if direction == "up" else DOWN_STAGES
    finished = run["status"] in ("succeeded", "rolled_back")
    timed = [b for b in batches if b["started_at"]]
    out = []
    for name in names:
        row = {"task_id": name, "state": "", "start": None, "seconds": None, "count": 1}
        if name == "preflight":
            row.update(state="success", start=_fmt(run["started_at"]))
        elif name in ("backfill", "restore"):
            if timed:
                start, end = min(b["started_at"] for b in timed), max(b["finished_at"] or b["started_at"]
                                                                      for b in timed)
                row.update(start=_fmt(start), seconds=(end - start).total_seconds())
            pending = any(b["status"] in ("pending", "running") for b in batches)
            failed = any(b["status"] == "failed" for b in batches)
            row["state"] = "failed" if failed else "running" if pending else "success" if (
                batches or name in done or finished) else ""
        elif name in done or any(s.startswith(name) for s in done) or (finished and name in ("cleanup", "finish")):
            row["state"] = "success"
        elif run["status"] == "failed" and not row["state"]:
            row["state"] = "not done"
        if name in ("cleanup", "finish") and finished:
            row["end"] = _fmt(run.get("finished_at"))
        out.append(row)
    return out


def retried_batches(batches: list[dict], attempts: list[dict]) -> list[dict]:
    """Batches with a failed attempt that were tried again (now succeeded, or waiting), each with every attempt:
    what a retry resets in airmigrate.batches stays on the record (airmigrate.batch_attempts)."""
    final = {b["batch_no"]: b["status"] for b in batches}
    by_batch: dict[int, list[dict]] = {}
    for a in attempts:
        by_batch.setdefault(a["batch_no"], []).append(a)
    out = []
    for batch_no, tries in sorted(by_batch.items()):
        if final.get(batch_no) == "failed" or not any(t["outcome"] == "failed" for t in tries) or len(tries) < 2:
            continue
        out.append({"batch_no": batch_no, "lo": tries[0]["lo"], "hi": tries[0]["hi"], "status": final.get(batch_no),
                    "attempts": [{"n": i, "outcome": t["outcome"], "error": t["error"] or "", "worker": t["worker"],
                                  "at": _fmt(t["finished_at"])} for i, t in enumerate(tries, 1)]})
    return out


def backfill_facts(migration: Migration, run: dict, batches: list[dict], attempts: list[dict] | None = None) \
        -> dict | None:
    """Rows, batches, rate over time, batch durations, throttle settings and pauses, failed batches and the
    batches that failed and were retried (from every attempt, ``attempts``)."""
    real = [b for b in batches if b["status"] != "split"]
    if not batches:
        return None
    done = [b for b in real if b["status"] == "succeeded"]
    timed = [b for b in done if b["started_at"] and b["finished_at"]]
    durations = sorted((b["finished_at"] - b["started_at"]).total_seconds() for b in timed)
    span = None
    if timed:
        span = (max(b["finished_at"] for b in timed) - min(b["started_at"] for b in timed)).total_seconds()
    rows = sum(b["rows"] or 0 for b in done)
    series = svg.rate_series(batches)

    settings = settings_of(migration)
    throttle = {k: v for k, v in settings.throttle.model_dump().items() if v is not None} \
        if getattr(settings, "throttle", None) is not None else None
    facts = run.get("facts") or {}
    return {
        "rows": rows, "batches": len(real), "succeeded": len(done),
        "failed": sum(1 for b in real if b["status"] == "failed"),
        "pending": sum(1 for b in real if b["status"] in ("pending", "running")),
        "split": sum(1 for b in batches if b["status"] == "split"),
        "retried": len({a["batch_no"] for a in attempts or [] if a["outcome"] == "failed"}
                       - {b["batch_no"] for b in real if b["status"] == "failed"})
        if attempts else sum(1 for b in real if (b["attempts"] or 0) > 1),
        "retried_batches": retried_batches(batches, attempts or []),
        "seconds": span, "rows_per_s": rows / span if span else None,
        "batch_p50_s": statistics.median(durations) if durations else None,
        "batch_p90_s": durations[int(0.9 * (len(durations) - 1))] if durations else None,
        "batch_max_s": durations[-1] if durations else None,
        "workers": sorted({b["worker"] for b in batches if b["worker"]}),
        "by_worker": by_worker(batches),  # which worker ran which batch
        "series": series,
        "series_rows": [{"t": f"{t:.1f}", "rate": f"{r:,.0f}"} for t, r in series],
        "throttle": throttle, "sleep_between_batches_ms": getattr(settings, "sleep_between_batches_ms", 0),
        "target_batch_seconds": getattr(settings, "target_batch_seconds", None),
        "pauses": _pauses(facts),
        "failed_batches": [{"batch_no": b["batch_no"], "lo": b["lo"], "hi": b["hi"],
                            "attempts": sum(1 for a in attempts or [] if a["batch_no"] == b["batch_no"])
                            or b["attempts"],
                            "error": b["last_error"], "worker": b["worker"]}
                           for b in real if b["status"] == "failed"],
        "split_batches": [{"batch_no": b["batch_no"], "lo": b["lo"], "hi": b["hi"], "error": b["last_error"]}
                          for b in batches if b["status"] == "split"],
    }


def _pauses(facts: dict) -> list[dict] | None:
    """Throttle pauses when the backfill recorded them in the run's facts (``throttle_pauses``: a list of
    {shard, seconds, reason, at}); None when nothing records them."""
    pauses = facts.get("throttle_pauses")
    if pauses is None:
        return None
    return [p if isinstance(p, dict) else {"reason": str(p)} for p in pauses]


def validation_facts(migration: Migration, facts: dict) -> dict:
    """Each expectation of the suite with its result (the validate stage records the failed ones), the Data
    Docs page."""
    status = facts.get("validation")
    failed = list(facts.get("failed_expectations") or [])
    items = []
    if migration.expectations_file and Path(migration.expectations_file).is_file():
        try:
            suite = json.loads(Path(migration.expectations_file).read_text())
        except ValueError:
            suite = {"expectations": []}
        unmatched = list(failed)
        for expectation in suite.get("expectations") or []:
            kind = expectation.get("type", "?")
            kwargs = expectation.get("kwargs") or {}
            what = kwargs.get("description") or kwargs.get("column") or kwargs.get("unexpected_rows_query") or ""
            hits = [f for f in unmatched if f.startswith(f"{kind} [") and (not kwargs.get("column") or
                                                                             f"[{kwargs['column']}]" in f
                                                                             or str(what) in f)]
            if hits:
                unmatched.remove(hits[0])
            result = ("failed" if hits else "passed") if status in ("passed", "failed") else "not run"
            items.append({"type": kind, "what": str(what), "kwargs": json.dumps(kwargs, sort_keys=True),
                          "result": result, "detail": hits[0] if hits else ""})
        items += [{"type": "", "what": "", "kwargs": "", "result": "failed", "detail": f} for f in unmatched]
    else:
        items = [{"type": "", "what": "", "kwargs": "", "result": "failed", "detail": f} for f in failed]
    return {"status": status or "not run", "evaluated": facts.get("expectations"), "expectation_results": items,
            "suite": str(migration.expectations_file) if migration.expectations_file else None,
            "data_docs": facts.get("data_docs")}


def backup_facts(conn, migration: Migration, hist: dict | None, facts: dict) -> dict:
    """What was saved (the engine's dump of the table, the snapshot of overwritten values), where, size, how long."""
    path = facts.get("backup_path") or (hist or {}).get("backup_path")
    snapshot = facts.get("snapshot_table") or (hist or {}).get("snapshot_table")
    out = {"path": path, "exists": False, "size_bytes": facts.get("backup_bytes") or None,
           "seconds": facts.get("backup_seconds"), "snapshot_table": snapshot, "snapshot_size_bytes": None,
           "snapshot_rows": None, "reason": facts.get("backup_reason"), "policy": None,
           "dump_label": engines.of(conn).console_sql().DUMP_LABEL}
    if path and os.path.isfile(path):
        info = os.stat(path)
        out.update(exists=True, size_bytes=info.st_size)
        if out["seconds"] is None:
            out["seconds"] = _dump_seconds(path, info.st_mtime)
    policy = getattr(migration.spec, "backup", None)
    out["policy"] = str(getattr(policy, "value", policy)) if policy is not None else None
    if snapshot:
        engine = engines.of(conn)
        if engine.state_sql().relation_exists(conn, "airmigrate", snapshot):
            out["snapshot_size_bytes"] = engine.relation_bytes(conn, "airmigrate", snapshot)
            out["snapshot_rows"] = engine.estimate_rows(conn, "airmigrate", snapshot)
    return out


def _dump_seconds(path: str, mtime: float) -> float | None:
    """The dump's name carries its start (…-YYYYmmddTHHMMSS.dump, local time); its mtime is its end."""
    stamp = Path(path).stem.rsplit("-", 1)[-1]
    try:
        started = datetime.strptime(stamp, "%Y%m%dT%H%M%S").timestamp()
    except ValueError:
        return None
    return max(0.0, mtime - started)


def rollback_facts(conn, migration: Migration) -> dict:
    command = f"airmigrate run {migration.id} --rollback"
    try:
        text = plan.render_rollback(migration, conn, sql=True)
    except Exception as exc:
        log.info("rollback plan against the target failed (%s): static plan", exc)
        text = plan.render_rollback(migration, None, sql=True)
    return {"command": command + (" --approve" if needs_rollback_approval(migration) else ""),
            "dry_run": f"{command} --param dry_run=true", "plan": f"airmigrate plan {migration.id} --rollback",
            "dag_id": migration.rollback_dag_id, "needs_approval": needs_rollback_approval(migration), "sql": text}


def performance_facts(migration_id: str, facts: dict, before: dict | None, after: dict) -> dict:
    """Size growth of the touched tables, the backfill's throughput, and the last rehearsal's figures when
    one was recorded (facts ``rehearsal``)."""
    sizes = []
    for name, shape in (after.get("tables") or {}).items():
        if shape.get("neighbour"):
            continue
        old = ((before or {}).get("tables") or {}).get(name, {}).get("size_bytes")
        sizes.append({"table": name, "before": old, "after": shape["size_bytes"],
                      "growth": (shape["size_bytes"] - old) if old is not None else None})
    for name, shape in ((before or {}).get("tables") or {}).items():
        if name not in after.get("tables", {}) and not shape.get("neighbour"):
            sizes.append({"table": name, "before": shape["size_bytes"], "after": None, "growth": None})
    return {"sizes": sizes, **last_rehearsal(migration_id, facts)}


def last_rehearsal(migration_id: str, facts: dict) -> dict:
    """The last rehearsal's figures (var/rehearsals/<id>/*.json, see airmigrate.rehearsal): its summary lines
    (durations, WAL, lock hold times, size growth) and the longest lock holds; empty when none was saved."""
    try:
        results = facts.get("rehearsal") or newest(migration_id)
        if not results:
            return {"rehearsal": None}
        locks = sorted(results.get("locks") or [], key=lambda h: -(h.get("held_ms") or 0))[:10]
        return {"rehearsal": {"summary": render(results), "status": results.get("status"),
                              "locks": [{"stage": h.get("stage"), "mode": h.get("mode"), "relation": h.get("relation"),
                                         "held_ms": h.get("held_ms"), "statement": h.get("statement")}
                                        for h in locks]}}
    except Exception as exc:  # a rehearsal file from another version: the report goes on without it
        log.info("last rehearsal of %s not readable: %s", migration_id, exc)
        return {"rehearsal": None}


def _diagram_marks(tables: list[dict]) -> tuple[dict, dict]:
    before, after = {}, {}
    for table in tables:
        for section in table["sections"]:
            if section["name"] != "columns":
                continue
            for row in section["rows"]:
                if row["mark"] == "added":
                    after.setdefault(table["name"], {})[row["name"]] = "added"
                elif row["mark"] == "removed":
                    before.setdefault(table["name"], {})[row["name"]] = "removed"
                    after.setdefault(table["name"], {})[row["name"]] = "removed"
                elif row["mark"] == "changed":
                    before.setdefault(table["name"], {})[row["name"]] = "changed"
                    after.setdefault(table["name"], {})[row["name"]] = "changed"
    return before, after


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _seconds(start, end) -> float | None:
    return (end - start).total_seconds() if start and end else None
