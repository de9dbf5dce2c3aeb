"""What the backup takes, in proportion to the risk (`backup: auto | table | columns | none`).

`auto`: a snapshot of the key and the existing columns the backfill overwrites or the contract drops (what
the rollback restores from), a pg_dump of the whole table only before something that drops or rewrites data
the snapshot cannot bring back (DROP TABLE, TRUNCATE, DELETE, a raw DROP COLUMN, ALTER COLUMN TYPE or
UPDATE in the SQL files, the drop_table operation), and nothing at all for index and constraint changes,
whose rollback needs no data. `table` always dumps (and snapshots), `columns` only snapshots, `none` takes
nothing (lint asks for an acknowledgement when the migration drops data).
"""

from __future__ import annotations

from dataclasses import dataclass

from airmigrate import engines
from airmigrate.spec import Migration


@dataclass(frozen=True)
class Decision:
    dump: bool           # pg_dump of the whole table
    snapshot: bool       # (key, overwritten or dropped columns) copied into airmigrate.<snapshot>
    reason: str          # for the log and the report


def decide(migration: Migration) -> Decision:
    policy = migration.spec.backup
    destructive = destructive_statements(migration)
    if policy == "none":
        return Decision(False, False, "backup: none in migration.yaml" +
                        (f" (the migration {', '.join(destructive)}: acknowledged)" if destructive else ""))
    if policy == "table":
        return Decision(True, True, "backup: table in migration.yaml (pg_dump always, plus the column snapshot)")
    if policy == "columns":
        return Decision(False, True, "backup: columns in migration.yaml (the overwritten and dropped columns only)")
    if destructive:
        return Decision(True, True, f"auto: the migration {', '.join(destructive)}, which a column snapshot cannot "
                                    "bring back: pg_dump of the table, plus the column snapshot")
    return Decision(False, True, "auto: nothing is dropped or rewritten beyond what the column snapshot keeps "
                                 "(none at all for index and constraint changes): no pg_dump")


def destructive_statements(migration: Migration) -> list[str]:
    """What in the migration drops or rewrites data, described ("runs DROP TABLE in cleanup.sql")."""
    found = []
    if any(op.op == "drop_table" for op in migration.spec.operations):
        found.append("drops a table (drop_table operation)")
    if any(op.op == "delete_rows" and op.archive == "none" for op in migration.spec.operations):
        found.append("deletes rows without an archive (delete_rows with archive: none)")
    for name, text in (("up.sql", migration.up_sql), ("cleanup.sql", migration.cleanup_sql)):
        for what in engines.current().data_losing_statements(text or ""):
            found.append(f"runs {what} in {name}")
    return list(dict.fromkeys(found))
