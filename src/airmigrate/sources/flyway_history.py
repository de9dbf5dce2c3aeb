"""Flyway's ``flyway_schema_history`` kept exactly as Flyway keeps it, under the lock Flyway takes.

Read from Flyway's source (flyway-core ``JdbcTableSchemaHistory``, ``postgresql/createMetaDataTable.sql``,
flyway-database-postgresql ``PostgreSQLAdvisoryLockTemplate``):

- the table: Flyway's own CREATE TABLE, primary key ``<table>_pk``, index ``<table>_s_idx`` on success;
- a row: ``installed_rank`` = max + 1, ``version`` (NULL for repeatables), ``description``, ``type`` (``SQL``,
  ``BASELINE``, ``UNDO_SQL``), ``script``, ``checksum``, ``installed_by`` (the ``installedBy`` setting, else
  the database user), ``installed_on`` (the column's default now()), ``execution_time`` in ms, ``success``;
- before the table, the managed schemas that do not exist (``createSchemas``), and after it Flyway's SCHEMA row
  (``DbSchemas`` / ``SchemaHistory.addSchemasMarker``: installed_rank 0, the created schemas' quoted names);
- the lock: a PostgreSQL advisory lock keyed ``0x466C79776179`` ("Flyway") + Java's ``String.hashCode()`` of
  the quoted table name ``"schema"."table"``; a Flyway started meanwhile waits for us, and we for it.

Rows are written as one literal statement so it can join the transaction of the script's last statements
(Flyway's own rule: the change and its row commit together).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass

from airmigrate.db import Target, connect
from airmigrate.errors import PreflightError, TransientError
from airmigrate.sources.flyway import BASELINE_DESCRIPTION, SCHEMA_DESCRIPTION, Project, Script, Version

log = logging.getLogger(__name__)

LOCK_MAGIC = (0x46 << 40) + (0x6C << 32) + (0x79 << 24) + (0x77 << 16) + (0x61 << 8) + 0x79


def java_hash(text: str) -> int:
    """Java's String.hashCode(): s[0]*31^(n-1) + ... over UTF-16 code units, as a signed 32-bit int."""
    h = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def qualified(project: Project) -> str:
    """The table as Flyway names it (and hashes it for the lock): "schema"."table"."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (project.schema, project.table))


def lock_key(project: Project) -> int:
    return LOCK_MAGIC + java_hash(qualified(project))


@contextmanager
def flyway_lock(target: Target, project: Project, wait_s: float = 300.0):
    """Flyway's advisory lock, held on a connection of its own for as long as the block runs (as Flyway holds
    it for a whole migrate). Retried like Flyway's RetryStrategy; a lock still taken after `wait_s` is a
    transient error (another Flyway or airmigrate is migrating: the task is retried later)."""
    key = lock_key(project)
    conn = connect(target, autocommit=True, application_name="airmigrate flyway lock")
    try:
        deadline = time.monotonic() + wait_s
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TransientError(f"Flyway's lock on {qualified(project)} (advisory lock {key}) is held by another "
                                     f"session for {wait_s:.0f}s: a Flyway or airmigrate migrate is running")
            time.sleep(1.0)
        yield key
    finally:
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        finally:
            conn.close()


def create_sql(project: Project) -> str:
    """Flyway's CREATE TABLE for PostgreSQL (createMetaDataTable.sql), IF NOT EXISTS added."""
    table, name = qualified(project), project.table.replace('"', '""')
    return (f'CREATE TABLE IF NOT EXISTS {table} (\n    "installed_rank" INT NOT NULL,\n    "version" VARCHAR(50),\n'
            '    "description" VARCHAR(200) NOT NULL,\n    "type" VARCHAR(20) NOT NULL,\n'
            '    "script" VARCHAR(1000) NOT NULL,\n    "checksum" INTEGER,\n    "installed_by" VARCHAR(100) NOT NULL,\n'
            '    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),\n    "execution_time" INTEGER NOT NULL,\n'
            '    "success" BOOLEAN NOT NULL,\n'
            f'    CONSTRAINT "{name}_pk" PRIMARY KEY ("installed_rank")\n);\n'
            f'CREATE INDEX IF NOT EXISTS "{name}_s_idx" ON {table} ("success")')


def quote(name: str) -> str:
    """PostgreSQL's quoting of an identifier, as Flyway's database.quote() writes it (and its SCHEMA row lists)."""
    return '"' + name.replace('"', '""') + '"'


def missing_schemas(conn, project: Project) -> list[str]:
    """The schemas Flyway manages (defaultSchema, then flyway.schemas) that do not exist, in that order."""
    return [name for name in project.schemas
            if not conn.execute("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %s)", (name,)).fetchone()[0]]


def schema_marker_sql(project: Project, created: list[str]) -> str:
    """Flyway's SCHEMA row (SchemaHistory.addSchemasMarker): installed_rank 0, no version, the schemas it created
    as their quoted names joined by commas, no checksum, execution_time 0, success."""
    by = literal(project.installed_by) if project.installed_by else "current_user"
    return (f'INSERT INTO {qualified(project)} ("installed_rank", "version", "description", "type", "script", '
            f'"checksum", "installed_by", "execution_time", "success") VALUES (0, NULL, {literal(SCHEMA_DESCRIPTION)}, '
            f"'SCHEMA', {literal(','.join(quote(n) for n in created)[:1000])}, NULL, {by}, 0, true)")


def ensure_table(conn, project: Project) -> None:
    """Before the first migrate, as Flyway's DbSchemas + create: the managed schemas that do not exist are created
    (flyway.createSchemas, default true), then the history table, then Flyway's SCHEMA row naming them, all in one
    transaction; without createSchemas a missing history schema is refused, as Flyway refuses it."""
    if conn.execute("SELECT to_regclass(%s)", (qualified(project),)).fetchone()[0] is not None:
        return
    missing = missing_schemas(conn, project)
    if missing and not project.create_schemas:
        if project.schema in missing:
            raise PreflightError(f"schema {quote(project.schema)} does not exist and flyway.createSchemas is false: "
                                 f"create it first (Flyway cannot create {qualified(project)} either), or set "
                                 "flyway.createSchemas=true")
        missing = []
    log.info("Creating Schema History table %s (as Flyway does)%s", qualified(project),
             f", after the schemas {', '.join(missing)}" if missing else "")
    with conn.transaction():
        for name in missing:
            conn.execute(f"CREATE SCHEMA {quote(name)}")
        for statement in create_sql(project).split(";\n"):
            conn.execute(statement)
        if missing:
            conn.execute(schema_marker_sql(project, missing))


@dataclass(frozen=True)
class Row:
    installed_rank: int
    version: str | None
    description: str
    type: str
    script: str
    checksum: int | None
    installed_by: str
    installed_on: object
    execution_time: int
    success: bool


def rows(conn, project: Project) -> list[Row]:
    """Every row in installed_rank order ([] when the table does not exist yet)."""
    if conn.execute("SELECT to_regclass(%s)", (qualified(project),)).fetchone()[0] is None:
        return []
    cur = conn.execute('SELECT "installed_rank", "version", "description", "type", "script", "checksum", '
                       f'"installed_by", "installed_on", "execution_time", "success" FROM {qualified(project)} '
                       'ORDER BY "installed_rank"')
    return [Row(*row) for row in cur.fetchall()]


def literal(value) -> str:
    """A SQL literal (standard_conforming_strings, PostgreSQL's default since 9.1): the row is one statement."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if "\x00" in text:
        raise ValueError("a NUL character cannot be stored")
    return "'" + text.replace("'", "''") + "'"


def insert_sql(project: Project, *, version: str | None, description: str, type_: str, script: str,
               checksum: int | None, success: bool, started_at: str | None = None, execution_ms: int = 0) -> str:
    """Flyway's INSERT of one row; execution_time measured by the server from `started_at` (an ISO timestamp
    taken when the script started) when given, so the row can ride in the script's own transaction."""
    table = qualified(project)
    took = (f"(EXTRACT(EPOCH FROM clock_timestamp() - {literal(started_at)}::timestamptz) * 1000)::int"
            if started_at else str(int(execution_ms)))
    by = literal(project.installed_by) if project.installed_by else "current_user"
    return (f'INSERT INTO {table} ("installed_rank", "version", "description", "type", "script", "checksum", '
            f'"installed_by", "execution_time", "success") SELECT coalesce(max("installed_rank"), 0) + 1, '
            f"{literal(version)}, {literal(description[:200])}, {literal(type_)}, {literal(script[:1000])}, "
            f"{literal(checksum)}, {by}, {took}, {literal(success)} FROM {table}")


def script_row_sql(project: Project, script: Script, success: bool = True, started_at: str | None = None,
                   undo: bool = False) -> str:
    """The row Flyway writes for a script it ran (an undo: type UNDO_SQL, as Flyway Teams writes it)."""
    return insert_sql(project, version=str(script.version) if script.version else None,
                      description=script.description, type_="UNDO_SQL" if undo else "SQL", script=script.name,
                      checksum=script.checksum, success=success, started_at=started_at)


def baseline_sql(project: Project, version: Version, description: str = BASELINE_DESCRIPTION) -> str:
    """`flyway baseline -baselineVersion=<version>`: one BASELINE row, script = description, no checksum."""
    return insert_sql(project, version=str(version), description=description, type_="BASELINE", script=description,
                      checksum=None, success=True)


def remove_failed_sql(project: Project, version: str | None, script: str) -> str:
    """What `flyway repair` does for a failed row, before a resumed run writes its successful one."""
    return (f'DELETE FROM {qualified(project)} WHERE NOT "success" AND "script" = {literal(script)} AND '
            + ('"version" IS NULL' if version is None else f'"version" = {literal(version)}'))
