"""The spec's column comments, and the migration's description for the columns it adds, as COMMENT ON in
the database: the schema documents itself (psql's \\d+, every database tool, `airmigrate docs`)."""

from __future__ import annotations

import logging

from airmigrate import engines
from airmigrate.db import Target, connect, run_ddl
from airmigrate.spec import Migration

log = logging.getLogger(__name__)


def comment_statements(conn, migration: Migration, columns_before: list[str] | None) -> list[str]:
    """COMMENT ON COLUMN for each `comments:` entry, and for each column the migration added without one
    (compared with the columns the backup recorded): "<id>: <first line of the description>"."""
    spec = migration.spec
    engine = engines.of(conn)
    live = engine.column_comments(conn, spec.schema_name, spec.table_name)
    comments = {c: text for c, text in spec.comments.items() if c in live}
    if columns_before is not None:  # a renamed column is the old one under a new name: it keeps what it had
        renamed = {op.to for op in spec.operations if op.op == "rename_column"}
        origin = f"{migration.id}: {spec.description.strip().splitlines()[0]}"
        comments.update({c: origin for c, now in live.items() if c not in columns_before and c not in comments
                         and c not in renamed and now is None})
    return [engine.comment_column_sql(conn, spec.schema_name, spec.table_name, column, text)
            for column, text in sorted(comments.items())]


def apply_comments(target: Target, migration: Migration, columns_before: list[str] | None) -> list[str]:
    """Short statements (COMMENT takes SHARE UPDATE EXCLUSIVE), under the migration's lock_timeout."""
    with connect(target, autocommit=True) as conn:
        statements = comment_statements(conn, migration, columns_before)
    if statements:
        run_ddl(target, ";\n".join(statements) + ";", lock_timeout_ms=migration.spec.lock_timeout_ms)
        log.info("comments: %d column comment(s) set on %s", len(statements), migration.spec.table)
    return statements
