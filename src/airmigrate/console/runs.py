"""Every run of a migration for its page (issue 18 §2): up, rollback and rehearsal runs, newest first, each with
its state, who started it, when, the approvals given or refused in it, and its report. Airflow's runs (passed in
by the plugin) are joined with airmigrate's (airmigrate.runs, by the Airflow run id); a run Airflow does not know
(its metadata is gone) still shows from the target's state tables. Pure: nothing here reads Airflow itself."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

KIND_OF_DIRECTION = {"up": "up", "down": "rollback"}
DAG_SUFFIX = {"up": "", "rollback": "__rollback", "rehearsal": "__rehearsal"}
FAR_PAST = datetime(1970, 1, 1, tzinfo=timezone.utc)


def runs_list(migration_id: str, ours: list[dict], airflow_runs: list[dict] | None, latest: dict | None = None,
              latest_links: dict | None = None) -> list[dict]:
    """The rows of the Runs table, newest first. ``ours``: state.runs_of; ``airflow_runs``: the plugin's
    dag_runs_of; ``latest``/``latest_links``: the newest up/rollback run's state and links as the page shows them
    (a rollback waiting for approval carries its approval link)."""
    by_dag_run = {(KIND_OF_DIRECTION[r["direction"]], r["dag_run_id"]): r for r in ours if r["dag_run_id"]}
    rows, seen = [], set()
    for a in airflow_runs or []:
        mine = by_dag_run.get((a["kind"], a["run_id"]))
        if mine:
            seen.add(mine["run_id"])
        rows.append(_row(migration_id, a["kind"], a["run_id"], mine, a))
    rows += [_row(migration_id, KIND_OF_DIRECTION[r["direction"]], r["dag_run_id"], r, None)
             for r in ours if r["run_id"] not in seen]
    rows.sort(key=lambda r: r["when"] or FAR_PAST, reverse=True)
    for row in rows:
        if latest and row["airflow_run_id"] and row["airflow_run_id"] == latest.get("run_id") and latest_links \
                and latest_links.get("approve"):
            row["state"], row["approve"] = "waiting for approval", latest_links["approve"]
    return rows


def _row(migration_id: str, kind: str, airflow_run_id: str | None, mine: dict | None, airflow: dict | None) -> dict:
    dag_id = migration_id + DAG_SUFFIX[kind]
    state = (mine or {}).get("status") or (airflow or {}).get("state") or "unknown"
    if airflow and airflow.get("state") in ("queued", "running") and state not in ("paused",):
        state = airflow["state"]
    elif airflow and airflow.get("state") == "failed" and state in ("running", "pending"):
        state = "failed"
    when = (airflow or {}).get("start") or (airflow or {}).get("queued_at") or (mine or {}).get("started_at")
    report = (f"/airmigrate/reports/dag-run/{quote(dag_id, safe='')}/{quote(airflow_run_id, safe='')}"
              if airflow_run_id else None)
    return {"kind": kind, "dag_id": dag_id, "airflow_run_id": airflow_run_id, "run_id": (mine or {}).get("run_id"),
            "state": state, "by": (airflow or {}).get("triggered_by") or "", "when": _utc(when),
            "finished": _utc((airflow or {}).get("end") or (mine or {}).get("finished_at")),
            "approvals": [{"action": a["action"], "actor": a["actor"], "at": a["at"]}
                          for a in (mine or {}).get("approvals") or []],
            "link": "/" + "/".join(["dags", quote(dag_id, safe=""), "runs", quote(airflow_run_id, safe="")])
            if airflow_run_id else None, "report": report, "approve": None}


def _utc(value):
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value.astimezone(timezone.utc) if isinstance(value, datetime) else None
