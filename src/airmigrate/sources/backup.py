"""The backup of an imported migration, in proportion to the risk as for native folders (`backup: auto`): a
pg_dump of each existing table a statement drops or rewrites data of (DROP TABLE, TRUNCATE, DELETE, UPDATE,
DROP COLUMN, ALTER COLUMN TYPE), taken before the first step; nothing for a script that only adds things.
The decision is the native one (stages.backup_policy), the dump the native one (stages.backup.dump_table)."""

from __future__ import annotations

import logging

from airmigrate import db, state
from airmigrate.backup_policy import destructive_statements
from airmigrate.db import Target, connect
from airmigrate.plan import analyze
from airmigrate.sources.batching import strip_comments_head
from airmigrate.sources.model import Imported
from airmigrate.spec import Migration, MigrationSpec
from airmigrate.stages.backup import dump_table

log = logging.getLogger(__name__)


def at_risk(conn, sql_text: str) -> dict[str, list[str]]:
    """schema.table -> what the script does to its data, for the tables that exist now."""
    found: dict[str, list[str]] = {}
    for statement in db.split_statements(sql_text or ""):
        body = strip_comments_head(statement)
        what = destructive_statements(_as_migration("probe", "public.probe", body))
        if not what:
            continue
        relation = analyze(body, conn).locks[0].relation
        name = relation if "." in relation else f"public.{relation}"
        if relation and conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None:
            found.setdefault(name, []).extend(w.removesuffix(" in up.sql").removeprefix("runs ") for w in what)
    return found


def backup(target: Target, migration: Imported, run_id: int, sql_text: str | None, direction: str) -> list[str]:
    """Dump the tables at risk once per run (a resumed run keeps the dump it took); returns the files."""
    stage = f"{direction}:backup"
    with connect(target, autocommit=True) as conn:
        if state.stage_done(conn, run_id, stage):
            return []
        tables = at_risk(conn, sql_text) if sql_text else {}
        paths = []
        for table, what in tables.items():
            path = dump_table(target, _as_migration(migration.id, table, ""))
            log.info("backup: %s %s: pg_dump of %s in %s", migration.id, ", ".join(dict.fromkeys(what)), table, path)
            paths.append(str(path))
        if not tables:
            log.info("backup: %s drops or rewrites no existing table's data: no pg_dump", migration.id)
        state.mark_stage_done(conn, run_id, stage, **{f"{direction}_backup_paths": paths})
    return paths


def _as_migration(migration_id: str, table: str, up_sql: str):
    """A Migration the native backup functions accept: the one table, the statement as its up.sql."""
    spec = MigrationSpec(description=f"imported {migration_id}", table=table.replace('"', ""))
    return Migration(id=migration_id, folder=None, spec=spec, up_sql=up_sql, down_sql="", cleanup_sql=None,
                     backfill_sql=None, transform_file=None, expectations_file=None, checksum="")
