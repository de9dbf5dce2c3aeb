"""Order and dependencies between migrations: folder order, `depends_on`, and what a rollback would break.

Decisions (see README "Order and dependencies"):

- The order is the folder order (`spec.discover`) of the folder the migration lives in (`migration.folder.parent`,
  which is `settings.migrations_dir()` for the DAGs and the CLI).
- An earlier migration blocks a start while it is *pending* (no history row, or rolled back: as after Flyway's
  `undo`, its change is not in the database, and the later migration was written against a schema that had it),
  *running* or *failed*. *expanded* does not block: its expand and backfill are in place and validated, only the
  contract waits, and both the old and the new shape are there. `out_of_order: true` lifts this rule.
- A migration resuming its own active run is not held back by folder order again (it passed when the run
  started); `depends_on` is checked on every start.
- `depends_on: [id]` needs each named migration applied or expanded, out_of_order or not.
- A rollback is refused while another migration that is applied, expanded, failed or running depends on this one:
  explicitly (`depends_on`), or, for a later folder, by touching the same table, column, index or constraint
  (:func:`touched`), unless both only *use* a column (two indexes on one column do not depend on each other).
"""

from __future__ import annotations

import logging

from airmigrate import engines, state
from airmigrate.engines.base import USES
from airmigrate.errors import PreflightError, SpecError
from airmigrate.gates import needs_rollback_approval
from airmigrate.spec import SPEC_FILE, Migration, bound_placeholders, discover, load_migration

log = logging.getLogger(__name__)

# history statuses: a dependency is met by these; a dependent blocks a rollback in these
MET = ("applied", "expanded")
IN_DATABASE = ("applied", "expanded", "failed", "running")
# touched() kinds: things a migration changes, and "uses_column": a column it only reads (index, constraint)
CHANGES = ("table", "column", "index", "constraint")


def check_order(conn, migration: Migration) -> None:
    """Refuse to start while an earlier migration is pending, running or failed (unless out_of_order), or while a
    `depends_on` migration is not applied (or expanded)."""
    folders = discover(migration.folder.parent)
    names = [f.name for f in folders]
    statuses = _statuses(conn)
    _check_depends_on(migration, names, statuses)
    if migration.spec.out_of_order:
        return
    has_runs = engines.of(conn).state_sql().state_table_exists(conn, "runs")
    if has_runs and state.active_run(conn, migration.id, "up") is not None:
        log.info("%s resumes its own run: folder order was checked when it started", migration.id)
        return
    spec_file = migration.folder / SPEC_FILE
    for name in names[:names.index(migration.id)] if migration.id in names else []:
        status = statuses.get(name)
        if status in MET:
            continue
        what = {None: "has not been applied", "rolled_back": "was rolled back (its change is not in the database)",
                "running": "is running", "failed": "failed and is not finished"}.get(status, f"is {status}")
        if status == "running":
            fix = f"wait for {name} to finish, then start {migration.id}"
        elif status == "failed":
            fix = (f"finish {name} first (clear its failed task, or `airmigrate run {name}` resumes it) or roll it "
                   f"back (`airmigrate run {name} --rollback`)")
        elif status == "rolled_back":  # every way out in one line: it back, this one without it, or both out
            raise PreflightError(
                f"{migration.id} must run after {name}, which was rolled back (its change is not in the database); "
                f"migrations apply in folder order. Fix, one of: apply it again first (`airmigrate run {name}`); "
                f"when {migration.id} does not need it, set `out_of_order: true` in {spec_file}; to keep {name} "
                f"out, leave {migration.id} out too (a rollback of {name} with what needs it: `airmigrate run {name} "
                "--rollback --cascade`, dependents first)")
        else:
            fix = f"run it first: `airmigrate run {name}` (or `airmigrate migrate` for every pending one in order)"
        raise PreflightError(
            f"{migration.id} must run after {name}, which {what}; migrations apply in folder order. Fix: {fix}; or, "
            f"when {migration.id} does not need it, set `out_of_order: true` in {spec_file}")


def _check_depends_on(migration: Migration, names: list[str], statuses: dict[str, str]) -> None:
    spec_file = migration.folder / SPEC_FILE
    for i, dependency in enumerate(migration.spec.depends_on):
        if dependency not in names:
            raise SpecError(spec_file, f"depends_on[{i}]", f"'{dependency}' is not a migration in "
                            f"{migration.folder.parent} (there are: {', '.join(names) or 'none'})",
                            "correct the folder name, or remove the entry")
        status = statuses.get(dependency)
        if status not in MET:
            what = "has not been applied" if status is None else f"is {status.replace('_', ' ')}"
            raise PreflightError(
                f"{migration.id} depends on {dependency} (depends_on in {spec_file}), which {what}. Fix: run it "
                f"first: `airmigrate run {dependency}`, then {migration.id}")


def _statuses(conn) -> dict[str, str]:
    return {row["migration_id"]: row["status"] for row in state.all_history(conn)}


# --- rollback: who depends on this migration -------------------------------------------------------------------

def dependents(conn, migration: Migration) -> list[tuple[Migration, str]]:
    """Migrations in the database (applied, expanded, failed, running) that depend on `migration`, in folder order,
    each with why: "depends_on", or what they share ("column public.users.x, index public.idx_x")."""
    statuses = _statuses(conn)
    folders = discover(migration.folder.parent)
    names = [f.name for f in folders]
    position = names.index(migration.id) if migration.id in names else len(names)
    mine = None
    found = []
    for index, folder in enumerate(folders):
        if folder.name == migration.id or statuses.get(folder.name) not in IN_DATABASE:
            continue
        try:
            other = load_migration(folder)  # what it touches; its expectations do not matter here
        except SpecError as exc:
            log.warning("cannot tell whether %s depends on %s: %s", folder.name, migration.id, exc)
            continue
        if migration.id in other.spec.depends_on:
            found.append((other, f"depends_on: [{migration.id}] in its {SPEC_FILE}"))
            continue
        if index < position:
            continue
        mine = touched(migration) if mine is None else mine
        common = shared(mine, touched(other))
        if common:
            found.append((other, "both touch " + ", ".join(f"{kind} {name}" for kind, name in common)))
    return found


def shared(first: set[tuple[str, str]], second: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """What two touched() sets have in common, when at least one of them changes it (a column only used by both,
    e.g. by two indexes, is not shared)."""
    common = set()
    for kind, name in first | second:
        if kind not in CHANGES:
            continue
        in_first = (kind, name) in first or (kind == "column" and (USES, name) in first)
        in_second = (kind, name) in second or (kind == "column" and (USES, name) in second)
        if in_first and in_second:
            common.add((kind, name))
    return sorted(common)


def check_dependents(conn, migration: Migration, dry_run: bool = False) -> None:
    """Refuse to roll back while a migration in the database depends on this one (a dry run only warns)."""
    found = dependents(conn, migration)
    if not found:
        return
    later = found[-1][0].id
    lines = "; ".join(f"{other.id} ({why})" for other, why in found)

    approve = " --approve" if any(needs_rollback_approval(m) for m in [migration, *(m for m, _ in found)]) else ""
    message = (f"{migration.id} cannot be rolled back while {lines} {'is' if len(found) == 1 else 'are'} in the "
               f"database: rolling it back would break {'it' if len(found) == 1 else 'them'}. Fix: roll back {later} "
               f"first (`airmigrate run {later} --rollback{approve}`), or use `airmigrate run {migration.id} "
               f"--rollback --cascade{approve}` to roll back the dependents first, latest first")
    if dry_run:
        log.warning("dry_run: the rollback would be refused: %s", message)
        return
    raise PreflightError(message)


def cascade(conn, migration: Migration) -> list[Migration]:
    """What `--rollback --cascade` rolls back before `migration`: its dependents and theirs, latest folder first."""
    seen: dict[str, Migration] = {}
    todo = [migration]
    while todo:
        for other, _why in dependents(conn, todo.pop()):
            if other.id not in seen and other.id != migration.id:
                seen[other.id] = other
                todo.append(other)
    return [seen[name] for name in sorted(seen, reverse=True)]


# --- what a migration touches ---------------------------------------------------------------------------------

def touched(migration: Migration) -> set[tuple[str, str]]:
    """What the migration changes, as (kind, name): ("table", "schema.table"), ("column", "schema.table.column"),
    ("index", "schema.index"), ("constraint", "schema.table.constraint"), and ("uses_column", ...) for a column
    an index or constraint of it only reads. From its operations and its up, backfill and cleanup SQL (parsed with
    the engine's parser: ALTER TABLE, RENAME, CREATE/DROP INDEX, CREATE/DROP TABLE, UPDATE ... SET)."""
    spec = migration.spec
    schema, table = spec.schema_name, spec.table_name
    out: set[tuple[str, str]] = set()

    def column(name: str, kind: str = "column", of: str | None = None) -> None:
        out.add((kind, f"{of or f'{schema}.{table}'}.{name}"))

    for op in spec.operations:
        kind = op.op
        if kind in ("add_column", "change_column_type", "drop_column"):
            column(op.column)
        elif kind == "rename_column":
            column(op.column)
            column(op.to)
        elif kind == "split_table":
            out.add(("table", f"{schema}.{op.new_table}"))
            for name in op.columns:
                column(name)
                column(name, of=f"{schema}.{op.new_table}")
        elif kind == "drop_table":
            out.add(("table", f"{schema}.{op.table}"))
        elif kind in ("delete_rows", "move_rows"):  # its rows: a later migration of the table depends on it
            out.add(("table", f"{schema}.{table}"))
            if kind == "move_rows":
                out.add(("table", f"{schema}.{op.to}"))
        elif kind == "rename_table":
            out.update({("table", f"{schema}.{table}"), ("table", f"{schema}.{op.to}")})
        elif kind == "rename_index":
            out.update({("index", f"{schema}.{op.name}"), ("index", f"{schema}.{op.to}")})
        elif kind == "rename_constraint":
            out.update({("constraint", f"{schema}.{table}.{op.name}"), ("constraint", f"{schema}.{table}.{op.to}")})
        elif kind in ("add_index", "add_unique", "add_foreign_key"):
            for name in op.columns:
                column(name, USES)
            if kind != "add_foreign_key":
                out.add(("index", f"{schema}.{op.name}"))
            if kind != "add_index":
                out.add(("constraint", f"{schema}.{table}.{op.name}"))
            if kind == "add_foreign_key":
                ref_schema, _, ref_table = op.references_table.rpartition(".")
                for name in op.references_columns:
                    column(name, USES, of=f"{ref_schema or schema}.{ref_table}")
        elif kind == "add_check":
            out.add(("constraint", f"{schema}.{table}.{op.name}"))
            for name in engines.current().columns_read(op.expression):
                column(name, USES)
    if spec.backfill:
        for name in spec.backfill.columns:
            column(name)
        for name in spec.backfill.sync:
            column(name)
    for text in (migration.up_sql, migration.backfill_sql, migration.cleanup_sql):
        if text:
            out |= sql_touched(text, schema, table)
    return out


def sql_touched(text: str, schema: str = "public", table: str | None = None) -> set[tuple[str, str]]:
    """touched() of SQL text, read by the engine's parser; an unqualified table is in `schema` when it is `table`
    (the migration's), else in public (the usual search_path)."""
    return engines.current().sql_touched(bound_placeholders(text), schema, table)
