"""A report for every run: var/reports/<migration>/<run>.html (self-contained) and .md (its twin).

- :func:`capture_before` at preflight keeps the touched tables' shape in the run's facts (``schema_before``);
- :func:`write_report` gathers the run from the state tables (:mod:`.collect`), compares the schema with the
  one captured at preflight, renders both files (:mod:`.render`) and returns the HTML's path. The run's
  finishing task writes it (and a failed task, best effort); ``airmigrate run`` writes it again with Airflow's
  task timings and prints the path.

Files are private (0600 in 0700 folders): a report names tables, columns and backup paths.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from markupsafe import escape

from airmigrate import engines, settings
from airmigrate.db import Target, connect
from airmigrate.report.collect import collect, find_run, plan_rows
from airmigrate.report.render import render_html, render_markdown
from airmigrate.schemadocs.shape import snapshot
from airmigrate.spec import Migration

log = logging.getLogger(__name__)

__all__ = ["capture_before", "write_report", "reports_dir", "report_name", "record_stage_time",
           "find_report"]


def reports_dir(migration_id: str | None = None) -> Path:
    root = settings.var_dir() / "reports"
    return root / migration_id if migration_id else root


def report_name(run: dict) -> str:
    """<UTC start of the run>-<up|rollback>-run<id>: unique across databases and runs, the same for a resumed
    run (its report is brought up to date), sorted by time in a listing."""
    started = run["started_at"]
    stamp = started.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ") if isinstance(started, datetime) else "run"
    label = "up" if run.get("direction", "up") == "up" else "rollback"
    return f"{stamp}-{label}-run{run['run_id']}"


def capture_before(conn, migration: Migration, run_id: int) -> None:
    """The touched tables' shape and the plan before the run changes anything, once per run (a resumed run keeps
    the first). The report shows this plan: a record of what was about to run, never re-planned against the
    changed schema afterwards (where the server's answers, e.g. MySQL's probe on an empty copy, would differ)."""
    statements = engines.of(conn).state_sql()
    before = json.loads(json.dumps(snapshot(conn, migration), default=str))
    statements.add_fact_once(conn, run_id, "schema_before", before)
    statements.add_fact_once(conn, run_id, "plan_before", json.loads(json.dumps(plan_rows(conn, migration),
                                                                                default=str)))


def record_stage_time(conn, run_id: int, task_id: str, started: datetime, finished: datetime | None,
                      status: str) -> None:
    """A stage's start, end and status in the run's facts (``stage_times``), for reports written where Airflow's
    task instances cannot be read (a worker has no metadata database access)."""
    entry = {"start": started.astimezone(timezone.utc).isoformat(),
             "end": finished.astimezone(timezone.utc).isoformat() if finished else None, "state": status}
    engines.of(conn).state_sql().set_stage_time(conn, run_id, task_id, entry)




def _stage_times(facts: dict) -> list[dict] | None:
    times = facts.get("stage_times")
    if not isinstance(times, dict) or not times:
        return None
    out = []
    for task_id, entry in sorted(times.items(), key=lambda kv: kv[1].get("start") or ""):
        start = datetime.fromisoformat(entry["start"]) if entry.get("start") else None
        end = datetime.fromisoformat(entry["end"]) if entry.get("end") else None
        out.append({"task_id": task_id, "state": entry.get("state") or "", "count": 1,
                    "start": start.strftime("%Y-%m-%d %H:%M:%S UTC") if start else None,
                    "seconds": (end - start).total_seconds() if start and end else None})
    return out


def write_report(target: Target, migration: Migration, direction: str = "up", run_id: int | None = None,
                 dag_run_id: str | None = None, stages: list[dict] | None = None) -> Path | None:
    """Write the run's report (HTML and Markdown) and return the HTML's path; None when the target has no such
    run (a dry run, an already applied migration: nothing ran). The run: ``run_id``, else the one of
    ``dag_run_id``, else the latest of that direction."""
    with connect(target, autocommit=True) as conn:
        run = find_run(conn, migration.id, direction, run_id, dag_run_id)
        if run is None:
            return None
        stages = stages or _stage_times(run.get("facts") or {})
        data = collect(conn, migration, run, direction, target.describe(), stages)
    folder = reports_dir(migration.id)
    _private_dir(folder)
    name = report_name(run)
    data["foreign_keys"] = _foreign_key_lines(data)
    if data.get("validation"):
        data["validation"]["data_docs_link"] = _keep_data_docs(data["validation"].get("data_docs"), folder, name)
    secrets = (target.password,)
    html_path, md_path = folder / f"{name}.html", folder / f"{name}.md"
    _write_private(html_path, render_html(data, secrets))
    _write_private(md_path, render_markdown(data, secrets))
    return html_path


def find_report(migration_id: str, dag_run_id: str) -> Path | None:
    """The HTML report of an Airflow DAG run (reports carry the run id in a meta tag), for the plugin."""
    folder = reports_dir(migration_id)
    if not folder.is_dir():
        return None
    marker = f'<meta name="airmigrate-dag-run" content="{_attr(dag_run_id)}">'
    for path in sorted(folder.glob("*.html"), reverse=True):
        with open(path, encoding="utf-8") as file:
            if marker in file.read(4096):
                return path
    return None


def _attr(text: str) -> str:
    return str(escape(text))


def _foreign_key_lines(data: dict) -> list[str]:
    lines = []
    for table in data["schema"]["tables"]:
        for section in table["sections"]:
            if section["name"] != "constraints":
                continue
            for row in section["rows"]:
                text = row["after"] or row["before"] or ""
                if text.startswith("foreign key"):
                    state = f" ({row['mark']})" if row["mark"] else ""
                    lines.append(f"{table['name']}.{row['name']}: {text[len('foreign key: '):]}{state}")
    return lines


def _keep_data_docs(index: str | None, folder: Path, name: str) -> str | None:
    """A copy of the run's Data Docs next to the report, so a later run cannot overwrite the evidence of this
    one. Returns the link relative to the report (None when there are none)."""
    if not index:
        return None
    source = Path(index)
    source_dir = source.parent if source.suffix == ".html" else source
    if not source_dir.is_dir():
        return None
    dest = folder / f"{name}.data-docs"
    try:
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(source_dir, dest)
        for root, dirs, files in os.walk(dest):
            os.chmod(root, 0o700)
            for file in files:
                os.chmod(os.path.join(root, file), 0o600)
    except OSError as exc:
        log.warning("could not keep a copy of the Data Docs %s: %s", source_dir, exc)
        return None
    page = source.name if source.suffix == ".html" else "index.html"
    return f"{dest.name}/{page}"


def _private_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in (folder, folder.parent):
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(tmp, path)


def capture_before_safely(target: Target, migration: Migration, result) -> None:
    """For the preflight tasks: capture the schema of the run the preflight opened (a dict with run_id);
    best effort: a report with no "before" is better than a failed preflight."""
    run_id = result.get("run_id") if isinstance(result, dict) else None
    if not run_id:
        return
    try:
        with connect(target, autocommit=True) as conn:
            capture_before(conn, migration, run_id)
    except Exception:
        log.warning("could not capture the schema before the run for its report", exc_info=True)


def write_report_safely(target: Target, migration: Migration, direction: str = "up",
                        run_id: int | None = None) -> Path | None:
    """For the tasks that end a run (and a failing one): write the report and log its path as the task's last
    line; never fails the task."""
    return written_safely(lambda: write_report(target, migration, direction, run_id))


def written_safely(write) -> Path | None:
    """`write()`'s report path, logged as the task's last line; a failure logged, never raised (a report must
    not fail the run it reports on)."""
    try:
        path = write()
    except Exception:
        log.warning("could not write the run's report", exc_info=True)
        return None
    if path is not None:
        log.info("report: %s (and %s)", path, path.with_suffix(".md"))
    return path
