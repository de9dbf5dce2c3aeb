"""Which application versions work in which phase of a migration: the old release and the new one both work
once the expand ran (the sync triggers keep both shapes); after the contract, only the new one when it drops or
renames what the old one uses. The plan, the report and the schema changelog say it; `run --until expand` then
`complete` is the way to deploy between the two."""

from __future__ import annotations

from airmigrate.lint import drops_anything
from airmigrate.spec import Migration

OLD_AND_NEW, NEW_ONLY = "old and new", "new only"


def app_versions(migration: Migration) -> tuple[str, str, list[str]]:
    """(expand, after contract, reasons): which application versions work once the expand ran (the sync
    triggers keep both shapes) and once the contract ran. `old` is the release before this migration, `new`
    the one that uses it."""
    expand, contract, why = OLD_AND_NEW, OLD_AND_NEW, []
    for op in migration.spec.operations:
        kind = op.op
        reason = None
        if kind == "add_column":
            if op.backfill:
                reason = (f"add_column {op.column}: the trigger computing it is dropped, the application writes it "
                          + ("(NOT NULL)" if op.not_null else "itself"))
            elif op.not_null and not op.default:
                reason = f"add_column {op.column}: NOT NULL without a default, inserts must set it"
        elif kind == "rename_column":
            reason = f"rename_column {op.column} -> {op.to}: {op.column} and the sync trigger are dropped"
        elif kind == "change_column_type":
            reason = f"change_column_type {op.column}: becomes {op.type}, the converting trigger is dropped"
        elif kind == "split_table":
            reason = (f"split_table: {', '.join(op.columns)} leave {migration.spec.table} for {op.new_table}, "
                      "the mirroring trigger is dropped")
        elif kind == "drop_column":
            reason = f"drop_column {op.column}: no release may read or write it any more"
        elif kind == "drop_table":
            reason = f"drop_table {op.table}: no release may use it any more"
        elif kind == "rename_table":
            reason = f"rename_table to {op.to}: the view under the old name {migration.spec.table} is dropped"
        elif kind in ("add_check", "add_unique", "add_foreign_key"):
            why.append(f"{kind} {getattr(op, 'name', '')}: validated at expand: both versions must write rows "
                       "that satisfy it")
        if reason:
            contract = NEW_ONLY
            why.append(reason)
    sync = migration.spec.backfill.sync if migration.spec.backfill else {}
    if sync:  # the old release never writes them: after the trigger is gone its rows would be left NULL
        contract = NEW_ONLY
        why.append(f"backfill.sync {', '.join(sync)}: the trigger deriving {'it' if len(sync) == 1 else 'them'} for "
                   "rows written meanwhile is dropped at cleanup; from then on the application writes "
                   f"{'it' if len(sync) == 1 else 'them'} itself")
    if migration.cleanup_sql and migration.cleanup_sql.strip():
        if drops_anything(migration.cleanup_sql):
            contract = NEW_ONLY
            why.append("cleanup.sql drops something")
        else:
            why.append("cleanup.sql: check by hand what it changes for the old version")
    return expand, contract, why


def render_app_versions(migration: Migration) -> list[str]:
    """The short section `airmigrate plan` prints."""
    expand, contract, why = app_versions(migration)
    lines = ["application versions that work, per phase (old = the release before this migration):",
             f"  {'expand (schema_change, backfill, validate):':<46}{expand}",
             f"  {'after contract (cleanup):':<46}{contract}"]
    lines += [f"    {w}" for w in why]
    if contract == NEW_ONLY:
        lines.append(f"  deploy the new release between the two: `airmigrate run {migration.id} --until expand`, "
                     f"deploy, then `airmigrate complete {migration.id}`")
    return lines
