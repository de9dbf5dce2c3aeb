"""Bring a target up to date, adopt an existing schema, and say which application versions work when.

- ``airmigrate migrate [--to <id>]``: every pending migration in folder order, each through its own DAG
  (the same path as ``airmigrate run``), stopping at the first failure; one summary at the end.
- ``airmigrate baseline --to <id>``: record migrations as applied without running them.
- ``airmigrate complete <id>``: the contract of an expanded migration (``run --until expand`` earlier).
- :func:`app_versions`: per phase (expand, after contract), which application versions work.

Pending means: no history row, rolled back, or unfinished (running, failed: resumed where it stopped).
An applied migration with unchanged files is done; one whose files changed is refused up front. An
``expanded`` migration is left as it is: its contract waits for ``airmigrate complete`` after the new
application version is deployed (``migrate`` never contracts behind the team's back); the later ones run,
as the order rule allows (an expanded migration counts as done: both shapes are there).
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from pathlib import Path

from airmigrate import engines, lease, settings, state
from airmigrate.app_versions import NEW_ONLY, OLD_AND_NEW, app_versions, render_app_versions  # noqa: F401 (API)
from airmigrate.db import Target, connect
from airmigrate.errors import AirmigrateError
from airmigrate.gates import needs_approval
from airmigrate.lifecycle.history import changed_files
from airmigrate.lifecycle.names import resolve
from airmigrate.spec import Migration, discover, file_checksums, load_migration
from airmigrate.stages.preflight import check_history

RUN, RESUME, APPLIED, EXPANDED = "run", "resume", "applied", "expanded"


def load_all(migrations_dir: Path | None = None, expectations_dir: Path | None = None) -> list[Migration]:
    """Every migration in folder order; a folder that does not load stops everything (SpecError)."""
    exp_dir = expectations_dir or settings.expectations_dir()
    return [load_migration(folder, exp_dir) for folder in discover(migrations_dir or settings.migrations_dir())]


def up_to(migrations: list[Migration], to: str | None) -> list[Migration]:
    """The migrations up to and including `to` (all without it)."""
    if to is None:
        return migrations

    ids = [m.id for m in migrations]
    try:
        to = resolve(to, ids, settings.migrations_dir())  # a unique prefix, like `run`
    except AirmigrateError as exc:
        raise AirmigrateError(f"--to {exc}") from None
    return migrations[:ids.index(to) + 1]


def pending(conn, migrations: list[Migration], allow_drift: bool = False) -> list[tuple[Migration, str, dict | None]]:
    """(migration, action, history) per migration: run, resume, applied (unchanged) or expanded. A changed
    applied migration raises the preflight's PreflightError naming the files."""
    has_state = engines.of(conn).state_sql().state_table_exists(conn, "history")
    out = []
    for migration in migrations:
        hist = state.history(conn, migration.id) if has_state else None
        if hist is None or hist["status"] == "rolled_back":
            out.append((migration, RUN, hist))
        elif hist["status"] == "applied":
            if not allow_drift:
                check_history(conn, migration)  # unchanged, or PreflightError
            out.append((migration, APPLIED, hist))
        elif hist["status"] == "expanded":
            out.append((migration, EXPANDED, hist))
        else:  # running, failed: its open run resumes where it stopped
            out.append((migration, RESUME, hist))
    return out


def unaccounted(conn, migrations: list[Migration], imported: frozenset[str] | set[str] = frozenset()) \
        -> tuple[list[str], list[str]]:
    """What the target's history holds that the folders cannot account for: (missing, changed), each a line
    naming the migration. Missing: a migration in the history (not rolled back) whose folder is gone (deleted,
    renamed). Changed: an applied migration whose files differ from what was applied (Flyway's validate).
    ``imported``: the ids of imported migrations (their source accounts for them, and checks their drift)."""
    if not engines.of(conn).state_sql().state_table_exists(conn, "history"):
        return [], []
    here = {m.id: m for m in migrations}
    rows = conn.execute("SELECT migration_id, status, applied_at, applied_by FROM airmigrate.history "
                        "WHERE status <> 'rolled_back' ORDER BY migration_id").fetchall()
    missing = [f"{mid} ({status}{f' on {at:%Y-%m-%d %H:%M} by {by}' if at else ''}): its folder is missing from "
               f"{settings.migrations_dir()}" for mid, status, at, by in rows if mid not in here and mid not in imported]
    changed = []
    for mid, status, _, _ in rows:
        if mid in here and status == "applied":
            files = changed_files(conn, here[mid])
            if files:
                changed.append(f"{mid}: applied, and its files changed since ({', '.join(files)})")
    return missing, changed


def validate_history(target: Target, migrations: list[Migration], ignore_missing: bool = False,
                     allow_drift: bool = False, who: str | None = None,
                     imported: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Before anything is applied: refuse (AirmigrateError, exit 2, nothing changed) while the history holds a
    migration whose folder is missing or whose applied files changed, unless the flag for it says to go on;
    what was let through is recorded in airmigrate.actions (who, when, which). Returns the notes to print."""
    with connect(target, autocommit=True) as conn:
        missing, changed = unaccounted(conn, migrations, imported)
        refused = ([*missing] if not ignore_missing else []) + ([*changed] if not allow_drift else [])
        if refused:
            flags = ([" --ignore-missing (a folder deleted or renamed on purpose)"] if missing and not ignore_missing
                     else []) + ([" --allow-drift (the change is known and harmless)"] if changed and not allow_drift
                                 else [])
            raise AirmigrateError(
                f"migrate: the history of {target.describe()} has {len(refused)} migration(s) the folders cannot "
                "account for:\n  " + "\n  ".join(refused) + "\nRestore the folder (or the applied files), or go on "
                "with" + " /".join(flags) + ". Nothing was run")
        notes = []
        for flag, lines in (("ignore_missing", missing), ("allow_drift", changed)):
            for line in lines:
                conn.execute("INSERT INTO airmigrate.actions (migration_id, action, detail, actor) VALUES "
                             "(%s, %s, %s, %s)", (line.split(" ", 1)[0].rstrip(":"), f"migrate_{flag}", line,
                                                  who or state.who()))
                notes.append(f"{flag.replace('_', '-')}: {line} (recorded in airmigrate.actions)")
    return notes


def migrate(target: Target, run: Callable[[str, dict], int], to: str | None = None, approve: bool = False,
            out: Callable[[str], None] = print, errors: dict[str, str] | None = None,
            ignore_missing: bool = False, allow_drift: bool = False, wait_s: float = 0.0,
            imported: frozenset[str] | set[str] = frozenset()) -> int:
    """Run every pending migration (up to `to`) in order with `run(migration_id, conf) -> exit code`, stop at
    the first failure, print one summary. 0 when everything up to `to` is applied (or expanded, its contract
    deliberately waiting), else 1. `errors` (filled by `run`: migration id -> its failing task's error) names
    why a run failed when the history cannot (a preflight refusal records nothing). A failed migration is
    resumed with retry_failed, so its failed batches run again after the fix. Refusals before
    anything ran (a folder that does not load, a changed applied migration, an approval not given) raise."""
    everything = load_all()
    for note in validate_history(target, everything, ignore_missing, allow_drift, imported=imported):
        out(note)
    migrations = up_to(everything, to)
    with connect(target, autocommit=True) as conn:
        todo = pending(conn, migrations, allow_drift)
    gated = [m.id for m, action, _ in todo if action in (RUN, RESUME) and needs_approval(m)]
    if gated and not approve:
        raise AirmigrateError(f"{', '.join(gated)}: the contract step waits for a human approval (it drops "
                              "something), and a local run has no UI to answer it: re-run with --approve to approve "
                              "it up front, or trigger airmigrate__migrate from the Airflow UI. Nothing was run")
    conf = {"approve_contract": True} if approve else {}
    results: list[tuple[str, str, float | None, str]] = []
    stopped = False
    for migration, action, hist in todo:
        if stopped:
            results.append((migration.id, "not run", None, ""))
            continue
        if action == APPLIED:
            results.append((migration.id, "already applied", None, f"on {_when(hist)} by {hist['applied_by']}"))
            continue
        if action == EXPANDED:
            results.append((migration.id, "expanded", None,
                            f"its contract waits: deploy the new application version, then `airmigrate complete "
                            f"{migration.id}`"))
            continue
        out(f"\n== {migration.id} ({'resumed' if action == RESUME else 'pending'})")
        with lease.hold_for_cli(target, migration.id, "migrate", wait_s, say=out):
            with connect(target, autocommit=True) as conn:
                has_state = engines.of(conn).state_sql().state_table_exists(conn, "history")
                now = state.history(conn, migration.id) if has_state else None
            if now and now["status"] == "applied" and (hist is None or now["applied_at"] != hist["applied_at"]):
                # another runner applied it while this one waited for the lease: nothing to do here
                results.append((migration.id, "already applied", None, f"by {now['applied_by']} meanwhile"))
                continue
            t0 = time.monotonic()
            retry = {"retry_failed": True} if action == RESUME and hist and hist["status"] == "failed" else {}
            code = run(migration.id, {**conf, **retry})
            seconds = time.monotonic() - t0
        with connect(target, autocommit=True) as conn:  # a refusal before Airflow started made no state tables
            made = engines.of(conn).state_sql().state_table_exists(conn, "history")
            hist = state.history(conn, migration.id) if made else None
        status = hist["status"] if hist else "not started"
        if code == 0 and status == "applied":
            results.append((migration.id, "applied", seconds, ""))
        else:
            error = ((errors or {}).get(migration.id) or (hist or {}).get("error") or "see its report above")
            error = error.strip().splitlines()[0][:200]
            results.append((migration.id, "failed" if code else status, seconds, error))
            stopped = True
    _summary(target, results, out)
    return 0 if all(r[1] in ("applied", "already applied", "expanded") for r in results) else 1


def _summary(target: Target, results, out) -> None:
    width = max([len(r[0]) for r in results] + [9])
    out(f"\nmigrate on {target.describe()}:")
    out(f"  {'migration':<{width}}  {'result':<15} {'duration':>9}")
    for migration_id, result, seconds, note in results:
        duration = f"{seconds:8.1f}s" if seconds is not None else f"{'-':>9}"
        out(f"  {migration_id:<{width}}  {result:<15} {duration}" + (f"  {note}" if note else ""))
    counts: dict[str, int] = {}
    for r in results:
        counts[r[1]] = counts.get(r[1], 0) + 1
    if not results:
        out("  no migrations")
    elif all(r[1] == "already applied" for r in results):
        out("all already applied: nothing to do")
    else:
        out(("nothing to run: " if all(r[1] in ("already applied", "expanded") for r in results) else "")
            + "; ".join(f"{n} {what}" for what, n in counts.items()))


def _when(hist: dict) -> str:
    return f"{hist['applied_at']:%Y-%m-%d %H:%M}" if hist.get("applied_at") else "an unknown date"


def baseline(target: Target, to: str) -> list[str]:
    """Record every migration up to and including `to` as applied without running it (adopting airmigrate on a
    schema that already has these changes). Refused when any of them has history other than rolled_back or
    an open run. Returns the ids recorded."""
    migrations = up_to(load_all(), to)
    by = f"baseline by {getpass.getuser()}"
    with connect(target, autocommit=True) as conn:
        state.ensure_schema(conn)
        queries = engines.of(conn).console_sql()
        with conn.transaction():
            queries.baseline_lock(conn)
            ids = [m.id for m in migrations]
            taken, busy = queries.baseline_conflicts(conn, ids, list(state.ACTIVE))
            if taken or busy:
                what = [f"{mid} ({status})" for mid, status in taken]
                what += [f"{mid} (open run)" for (mid,) in busy if mid not in {t[0] for t in taken}]
                raise AirmigrateError(f"baseline --to {to}: {', '.join(what)} already in the history of "
                                      f"{target.describe()}; baseline only records migrations that never ran there "
                                      "(or were rolled back). Nothing was recorded")
            for migration in migrations:
                if queries.record_baseline(conn, migration.id, migration.checksum, file_checksums(migration), by) != 1:
                    raise AirmigrateError(f"baseline: {migration.id} got a history row meanwhile; nothing recorded")
    return ids


def check_expanded(target: Target, migration: Migration) -> None:
    """`complete` runs the contract of an expanded migration only."""
    with connect(target, autocommit=True) as conn:
        has_state = engines.of(conn).state_sql().state_table_exists(conn, "history")
        hist = state.history(conn, migration.id) if has_state else None
    if hist is None or hist["status"] != "expanded":
        now = hist["status"] if hist else "never run"
        raise AirmigrateError(f"{migration.id} is {now} on {target.describe()}, not expanded: `complete` runs the "
                              f"contract of a migration run with `--until expand`. Use `airmigrate run {migration.id}`"
                              " (or `migrate`) for the whole way. Nothing was run")
