"""A rehearsal's own report (issue 18 §4): var/reports/<migration>/<UTC start>-rehearsal.html and .md, beside the
runs' reports, so a rehearsal is listed, linked from its Airflow run and readable from disk like any run. The
data is the rehearsal's results (what var/rehearsals/<id>/<time>.json holds), rendered by the report's Jinja2
environment: self-contained, escaped, credentials masked."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from airmigrate.report import _private_dir, _write_private, reports_dir
from airmigrate.report.render import _environment, mask

__all__ = ["write_rehearsal_report", "rehearsal_report_data"]


def rehearsal_report_data(results: dict, json_path: Path | None = None) -> dict:
    """The results, plus what the templates compute once: each stage's figures, the application checks by
    phase, and the table sizes before, after the backfill and after the contract."""
    extrapolated = results.get("extrapolated_seconds") or {}
    stages = [{"rows": None, "rows_per_s": None, "wal_bytes": 0, "status": "", "seconds": 0, **s,
               "extrapolated_s": extrapolated.get(s["stage"])} for s in results.get("stages") or []]
    sizes = results.get("sizes") or {}
    size_rows = [{"table": name, "before": before.get("total_bytes"),
                  "after_backfill": (sizes.get("after_backfill", {}).get(name) or {}).get("total_bytes"),
                  "after_contract": (sizes.get("after_contract", {}).get(name) or {}).get("total_bytes")}
                 for name, before in (sizes.get("before") or {}).items()]
    checks = [{"phase": phase, "error": None, **c} for phase, items in (results.get("compat") or {}).items()
              for c in items]
    defaults = {"dag_run_id": None, "error": None, "seconds": None, "identical_after_rollback": None,
                "compat_failures": [], "tables": [], "copy": "", "target": "", "sample_percent": None, "started_at": ""}
    return {"r": {**defaults, **results}, "stages": stages, "sizes": size_rows, "checks": checks,
            "locks": sorted(results.get("locks") or [], key=lambda h: -(h.get("held_ms") or 0))[:20],
            "json_name": json_path.name if json_path else None,
            "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}


def report_stem(results: dict) -> str:
    """<UTC start>-rehearsal: sorted with the runs' reports by time, never the same as one of them."""
    try:
        started = datetime.strptime(results["started_at"], "%Y-%m-%dT%H:%M:%S%z").astimezone(timezone.utc)
    except (KeyError, ValueError):
        started = datetime.now(timezone.utc)
    return f"{started.strftime('%Y%m%dT%H%M%SZ')}-rehearsal"


def write_rehearsal_report(results: dict, json_path: Path | None = None) -> Path:
    """Write the rehearsal's HTML and Markdown report (0600 in 0700 folders); returns the HTML's path."""
    folder = reports_dir(results["migration"])
    _private_dir(folder)
    data = rehearsal_report_data(results, json_path)
    html_path = folder / f"{report_stem(results)}.html"
    _write_private(html_path, mask(_environment(True).get_template("rehearsal.html.j2").render(**data)))
    markdown = _environment(False).get_template("rehearsal.md.j2").render(**data)
    _write_private(html_path.with_suffix(".md"), mask(re.sub(r"\n{3,}", "\n\n", markdown)))
    return html_path
