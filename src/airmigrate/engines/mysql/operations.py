"""Which of migration.yaml's operations run on MySQL / MariaDB, and the SQL building blocks they use here.

An operation whose MySQL steps are not written is refused when the spec loads (before anything runs), with the
reason and the way around it: the same change written as SQL files for this engine (``up.mysql.sql``,
``down.mysql.sql``), which run through the same online executor, lint and state tracking.
"""

from __future__ import annotations

SQL_FILES_FIX = ("write the change as up.mysql.sql / down.mysql.sql in the migration's folder (they run online "
                 "through the same executor, with `executor: pt-osc` where the server can only copy), or run this "
                 "migration on PostgreSQL")

# op -> why it does not run on MySQL / MariaDB (yet); an op leaves this table when its MySQL steps exist (none is
# waiting for its steps today: NOT_YET is the reason an operation added later would give)
NOT_YET = "has no MySQL / MariaDB steps yet (its steps are PostgreSQL SQL: triggers in PL/pgSQL, DO blocks)"
RENAME_CONSTRAINT_WHY = (
    "cannot run on MySQL / MariaDB: they have no RENAME CONSTRAINT, and renaming by DROP + ADD is no online way "
    "(a CHECK is re-added only by copying the table with writes blocked; a foreign key leaves the table unguarded "
    "between the two)")
RENAME_CONSTRAINT_FIX = (
    "a UNIQUE constraint is an index on MySQL: rename it with `op: rename_index`; a CHECK or FOREIGN KEY keeps its "
    "name, or is dropped and added again under the new name in up.mysql.sql / down.mysql.sql (a CHECK with "
    "`executor: pt-osc`)")
NOT_ON_MYSQL: dict[str, str | tuple[str, str]] = {  # one line each: an op leaves by its own line
    "rename_constraint": (RENAME_CONSTRAINT_WHY, RENAME_CONSTRAINT_FIX),
}


def refusal(op: str) -> tuple[str, str] | None:
    """(why, fix) for an operation MySQL / MariaDB does not run; None when it does."""
    why = NOT_ON_MYSQL.get(op)
    if why is None:
        return None
    why, fix = why if isinstance(why, tuple) else (why, SQL_FILES_FIX)
    return f"{op} {why}", fix


def rename_constraint_refused() -> str:
    """The SQL of rename_constraint, which this engine refuses at load (a spec that got past it fails here)."""
    raise ValueError(f"rename_constraint {RENAME_CONSTRAINT_WHY}. Fix: {RENAME_CONSTRAINT_FIX}")
