"""Rehearse a migration on a copy: copy the touched tables (or a sample) into a scratch database, run the
whole migration there (expand, backfill, validation, contract), then its rollback, check the copy is
identical to before and that the application's statements work at each phase, measure everything, drop
the copy. The target is only read. Results go to var/rehearsals/<migration>/<stamp>.json, which the run
report reads ("testing results and performance impact").
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from airmigrate import settings
from airmigrate.db import Target, connect, refuse_unsupported
from airmigrate.errors import PreflightError
from airmigrate.order import check_order
from airmigrate.rehearsal import copy as copying
from airmigrate.rehearsal.compat import check_statements, old_application
from airmigrate.rehearsal.copy import RehearsalError
from airmigrate.rehearsal.measure import LockSampler, Stopwatch, sizes
from airmigrate.report.rehearsal import write_rehearsal_report
from airmigrate.report.rehearsal_summary import last_rehearsal  # noqa: F401 (re-exported)
from airmigrate.spec import Migration
from airmigrate.stages import backfill, backup, cleanup, preflight, rollback, schema_change, validate
from airmigrate.stages.references import check_references

log = logging.getLogger(__name__)

__all__ = ["rehearse", "RehearsalError", "last_rehearsal", "copy_name"]  # last_rehearsal: airmigrate.report's


def copy_name(target: Target, migration: Migration) -> str:
    return f"{target.dbname}__rehearse_{migration.id}"[:63]


def rehearsal_server(target: Target) -> Target:
    """Where the copy goes: the target's server (connected through the target's own database, which may be
    the only one the role can reach), or AIRMIGRATE_REHEARSAL_URL."""
    url = os.environ.get("AIRMIGRATE_REHEARSAL_URL")
    return Target.from_url(url) if url else target


def rehearse(target: Target, migration: Migration, sample: float | None = None, keep: bool = False,
             dag_run_id: str | None = None) -> dict:
    """The whole rehearsal; returns (and saves, with its report) its results. Raises RehearsalError when it
    cannot start or when the migration or its rollback failed on the copy; the copy is dropped either way
    unless `keep`. ``dag_run_id``: the Airflow run it is part of (its "Run report" link finds the report)."""
    refuse_unsupported(target, "rehearse")
    if sample is not None and not 0 < sample <= 100:
        raise RehearsalError(f"--sample {sample:g}: give a percentage between 0 and 100 (e.g. --sample 10)")
    server = rehearsal_server(target)
    name = copy_name(target, migration)
    results = {"migration": migration.id, "target": target.describe(), "copy": f"{server.describe()} -> {name}",
               "sample_percent": sample, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "failed",
               "dag_run_id": dag_run_id}
    with connect(target) as conn:
        _refuse_applied(conn, migration)
        tables = copying.tables_to_copy(conn, migration)
        _refuse_missing(conn, migration)
        needed = copying.copy_size(conn, tables) * (sample or 100) / 100
        conn.commit()
    results["tables"] = [str(t) for t in tables]
    results["free_space"] = copying.check_free_space(server, int(needed * 3))  # copy, backup, growth
    copy_target = copying.create_copy_database(server, name)
    try:
        _rehearse_on_copy(target, copy_target, migration, tables, sample, results)
        results["status"] = "passed" if results["identical_after_rollback"] and not results["compat_failures"] \
            else "failed"
    except Exception as exc:
        results["error"] = _error_text(exc)
        raise RehearsalError(f"the rehearsal of {migration.id} failed: {results['error']}. "
                             f"Results: {save(results)}") from exc
    finally:
        if not keep:
            copying.drop_copy_database(server, name)
            log.info("rehearsal copy %s dropped", name)
        else:
            log.info("rehearsal copy kept: %s (drop it with DROP DATABASE \"%s\")", copy_target.describe(), name)
    path = save(results)
    if results["status"] != "passed":
        raise RehearsalError(f"the rehearsal of {migration.id} failed: " + "; ".join(_failures(results)) +
                             f". Results: {path}")
    return results


def _refuse_applied(conn, migration: Migration) -> None:
    """Before anything is created: an applied migration has nothing to rehearse, and one whose predecessors
    the target has not applied would be refused on the copy too."""
    exists = conn.execute("SELECT to_regclass('airmigrate.history')").fetchone()[0]
    row = conn.execute("SELECT status FROM airmigrate.history WHERE migration_id = %s", (migration.id,)).fetchone() \
        if exists else None
    if row and row[0] in ("applied", "expanded", "running"):
        raise RehearsalError(f"{migration.id} is already {row[0]} on the target: a rehearsal is for a migration "
                             "before it runs. Nothing was created")
    check_order(conn, migration)


def _refuse_missing(conn, migration: Migration) -> None:
    """A typo names its file, line and column here, on the target, before a copy is made (the copy's own
    preflight would refuse it too, after copying every row)."""
    try:
        check_references(conn, migration)
    except PreflightError as exc:
        raise RehearsalError(f"{exc}\nNothing was created") from None


def _rehearse_on_copy(target: Target, copy_target: Target, migration: Migration, tables, sample, results) -> None:
    watch = Stopwatch(copy_target)
    started = time.monotonic()
    with watch.stage("copy") as entry:
        results["skipped_structure"] = copying.copy_structure(target, copy_target, tables, "pre-data")
        entry["rows"] = {str(t): copying.copy_rows(target, copy_target, t, _key(migration, t), sample)
                         for t in tables}
        results["skipped_structure"] += copying.copy_structure(target, copy_target, tables, "post-data")
        copying.copy_history(target, copy_target, migration)
    results["rows_copied"] = entry["rows"]
    before = copying.checksums(copy_target, tables)
    structure_before = copying.definitions(copy_target, tables)
    columns = {name: figures["columns"] for name, figures in before.items()}
    app = old_application(copy_target, migration)
    compat = {"before": check_statements(copy_target, app, "before")}
    with connect(copy_target, autocommit=True) as conn:
        results["sizes"] = {"before": sizes(conn, tables)}
    relations = [t.name for t in tables]
    with LockSampler(copy_target, relations) as locks, _private_backups():
        with watch.stage("preflight", locks):
            run_id = preflight.preflight(copy_target, migration)["run_id"]
        with watch.stage("backup", locks):
            backup.backup(copy_target, migration, run_id)
        with watch.stage("schema_change", locks):
            schema_change.schema_change(copy_target, migration, run_id)
        with watch.stage("backfill", locks) as entry:
            backfill.start_backfill(copy_target, migration, run_id)
            done = backfill.run_shard(copy_target, migration, run_id, app_latency_ratio=None)  # nobody to protect
            entry["rows"] = done.get("rows", 0)
            entry["rows_per_s"] = round(done.get("rows", 0) / max(done.get("seconds", 0) or 0, 1e-9))
        compat["expanded"] = check_statements(copy_target, app, "expanded")
        with connect(copy_target, autocommit=True) as conn:
            results["sizes"]["after_backfill"] = sizes(conn, tables)
        with watch.stage("validate", locks):
            validate.validate(copy_target, migration, run_id)
        with watch.stage("cleanup", locks):
            cleanup.cleanup(copy_target, migration, run_id)
        compat["contracted"] = check_statements(copy_target, app, "contracted")
        with connect(copy_target, autocommit=True) as conn:
            results["sizes"]["after_contract"] = sizes(conn, tables)
        with watch.stage("rollback", locks):
            down_run = rollback.preflight_rollback(copy_target, migration)["run_id"]
            rollback.down(copy_target, migration, down_run)
            rollback.restore(copy_target, migration, down_run)
        compat["rolled_back"] = check_statements(copy_target, app, "rolled_back")
    after = copying.checksums(copy_target, tables, columns)
    structure_changes = copying.structure_differences(structure_before, copying.definitions(copy_target, tables))
    results.update(
        structure_differences=structure_changes,
        stages=watch.stages, locks=locks.summary(), compat=compat, seconds=round(time.monotonic() - started, 1),
        checksums={"before": _short(before), "after_rollback": _short(after)},
        identical_after_rollback=not structure_changes and all(
            before[t]["md5"] == after[t]["md5"] and before[t]["rows"] == after[t]["rows"] for t in before),
        compat_failures=[f"{phase}: {c['statement']}: {c['error']}" for phase, checks in compat.items()
                         for c in checks if c["status"] == "failed"],
        wal_bytes=sum(s.get("wal_bytes", 0) for s in watch.stages if s["stage"] != "copy"))
    if sample:
        factor = 100 / sample
        results["extrapolated_seconds"] = {s["stage"]: round(s["seconds"] * factor, 1) for s in watch.stages
                                           if s["stage"] in ("backup", "backfill", "validate", "rollback")}


def _error_text(exc: Exception) -> str:
    """The whole message on one line: a preflight refusal's first line ends "nothing was changed:" and the
    missing objects follow on the next lines, so the first line alone never named them."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text.replace(":  ", ": ") or type(exc).__name__


def _key(migration: Migration, table) -> tuple[str, ...] | None:
    spec = migration.spec
    return tuple(spec.key_columns) if (table.schema, table.name) == (spec.schema_name, spec.table_name) else None


@contextmanager
def _private_backups():
    """The copy's backups and its schema changelog go to a temporary folder: they are of a copy about to be
    dropped, and the project's docs/schema/CHANGELOG.md records what the target went through, not rehearsals."""
    names = ("AIRMIGRATE_BACKUP_DIR", "AIRMIGRATE_DOCS_DIR")
    previous = {name: os.environ.get(name) for name in names}
    with tempfile.TemporaryDirectory(prefix="airmigrate-rehearsal-") as folder:
        os.environ.update({name: str(Path(folder) / name.split("_")[1].lower()) for name in names})
        try:
            yield
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _short(checksums: dict) -> dict:
    return {name: {"rows": figures["rows"], "md5": figures["md5"]} for name, figures in checksums.items()}


def _failures(results: dict) -> list[str]:
    out = []
    if not results.get("identical_after_rollback", True):
        changed = [t for t in results["checksums"]["before"]
                   if results["checksums"]["before"][t] != results["checksums"]["after_rollback"][t]]
        if changed:
            out.append(f"after the rollback the rows of the copy differ from before in {', '.join(changed)}")
        if results.get("structure_differences"):
            out.append("after the rollback the structure of the copy differs from before: "
                       + "; ".join(results["structure_differences"]))
    out += results.get("compat_failures", [])
    return out or [results.get("error", "unknown")]


def save(results: dict) -> Path:
    """The results as JSON (what a later run's report reads) and the rehearsal's own HTML + Markdown report
    (issue 18 §4: every run writes one, a rehearsal too); returns the JSON's path."""
    folder = settings.var_dir() / "rehearsals" / results["migration"]
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{time.strftime('%Y%m%dT%H%M%S')}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(results, out, indent=2, default=str)
    try:

        report = write_rehearsal_report(json.loads(json.dumps(results, default=str)), path)
        log.info("report: %s (and %s)", report, report.with_suffix(".md"))
    except Exception:  # the results are saved; the report is their paperwork
        log.warning("could not write the rehearsal's report", exc_info=True)
    return path
