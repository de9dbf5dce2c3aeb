"""Which of migration.yaml's operations run on MySQL / MariaDB, and the SQL building blocks they use here.

An operation whose MySQL steps are not written is refused when the spec loads (before anything runs), with the
reason and the way around it: the same change written as SQL files for this engine (``up.mysql.sql``,
``down.mysql.sql``), which run through the same online executor, lint and state tracking.
"""

from __future__ import annotations

SQL_FILES_FIX = ("write the change as up.mysql.sql / down.mysql.sql in the migration's folder (they run online "
                 "through the same executor, with `executor: pt-osc` where the server can only copy), or run this "
                 "migration on PostgreSQL")

# op -> why it does not run on MySQL / MariaDB (yet); an op leaves this table when its MySQL steps exist
NOT_YET = "has no MySQL / MariaDB steps yet (its steps are PostgreSQL SQL: triggers in PL/pgSQL, DO blocks)"
NOT_ON_MYSQL: dict[str, str] = {  # one line each: an op leaves by its own line
    "split_table": NOT_YET,
    "add_index": NOT_YET,
    "add_unique": NOT_YET,
    "add_foreign_key": NOT_YET,
    "add_check": NOT_YET,
    "drop_table": NOT_YET,
    "rename_table": NOT_YET,
    "rename_index": NOT_YET,
    "rename_constraint": NOT_YET,
    "create_table": NOT_YET,
    "delete_rows": NOT_YET,
    "move_rows": NOT_YET,
}


def refusal(op: str) -> tuple[str, str] | None:
    """(why, fix) for an operation MySQL / MariaDB does not run; None when it does."""
    why = NOT_ON_MYSQL.get(op)
    return None if why is None else (f"{op} {why}", SQL_FILES_FIX)
