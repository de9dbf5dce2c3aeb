"""A rehearsal's results as a few lines for the terminal and the task log, and the newest saved one (its report
quotes it)."""

from __future__ import annotations

import json

from airmigrate import settings


def render(results: dict) -> str:
    lines = [f"rehearsal of {results['migration']}: {results['status'].upper()} in {results.get('seconds', 0):.1f}s "
             f"on a copy of {', '.join(results['tables'])}"
             + (f" ({results['sample_percent']:g}% sample)" if results.get("sample_percent") else "")]
    extrapolated = results.get("extrapolated_seconds", {})
    for stage in results.get("stages", []):
        extra = f", ~{extrapolated[stage['stage']]:.0f}s on the full table" if stage["stage"] in extrapolated else ""
        rows = f", {stage['rows']:,} rows at {stage['rows_per_s']:,} rows/s" if "rows_per_s" in stage else ""
        lines.append(f"  {stage['stage']:<14} {stage['status']:<9} {stage['seconds']:>8.2f}s  WAL "
                     f"{stage.get('wal_bytes', 0) / 1e6:,.1f} MB{rows}{extra}")
    for hold in results.get("locks", [])[:5]:
        lines.append(f"  lock {hold['mode']} on {hold['relation']} held {hold['held_ms']:.0f} ms ({hold['stage']}): "
                     f"{hold['statement'][:80]}")
    size = results.get("sizes", {})
    for name, before in size.get("before", {}).items():
        steps = [before] + [size[k][name] for k in ("after_backfill", "after_contract") if name in size.get(k, {})]
        lines.append(f"  size of {name}: " + " -> ".join(f"{s['total_bytes'] / 1e6:,.1f} MB" for s in steps)
                     + " (before, after the backfill, after the contract)")
    lines.append(f"  identical after the rollback: {'yes' if results.get('identical_after_rollback') else 'NO'}; "
                 f"application statements: {_compat(results)}")
    for difference in results.get("structure_differences", []):
        lines.append(f"    not identical: {difference}")
    return "\n".join(lines)


def _compat(results: dict) -> str:
    checks = [c for phase in results.get("compat", {}).values() for c in phase]
    counts = {status: sum(c["status"] == status for c in checks)
              for status in ("passed", "old version only", "skipped", "failed")}
    said = [f"{n} {status}" for status, n in counts.items() if n]
    failed = results.get("compat_failures", [])
    return f"{len(checks)} checks, " + ", ".join(said) + (f" ({'; '.join(failed)})" if failed else "")


def last_rehearsal(migration_id: str) -> dict | None:
    """The newest saved rehearsal of a migration (for its report), or None."""
    folder = settings.var_dir() / "rehearsals" / migration_id
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return json.loads(files[-1].read_text()) if files else None
