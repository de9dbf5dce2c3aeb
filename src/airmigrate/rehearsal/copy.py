"""The copy a rehearsal runs on: the tables a migration touches (and the tables they reference), their
structure from pg_dump (pre-data before the rows, indexes/constraints/triggers after, as pg_restore does),
their rows (all, or a sample by key ranges) streamed with COPY, and the target's migration history so the
order checks see what the target has applied. The target is only read.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from airmigrate import db, engines, state, structure
from airmigrate.db import Target, connect
from airmigrate.engines import sql
from airmigrate.errors import AirmigrateError
from airmigrate.order import touched
from airmigrate.spec import Migration
from airmigrate.stages.backfill.keys import Key

log = logging.getLogger(__name__)

SAMPLE_RANGE_KEYS = 1000  # a sample keeps whole key ranges of this many keys (contiguous rows, real locality)


class RehearsalError(AirmigrateError):
    """A rehearsal that cannot start or did not pass; nothing is left behind."""


@dataclass
class Table:
    schema: str
    name: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def tables_to_copy(conn, migration: Migration) -> list[Table]:
    """The migration's table, the existing tables it touches, and every table those reference by foreign key
    (so the copy's constraints hold)."""
    spec = migration.spec
    if conn.execute("SELECT to_regclass(%s)", (f'"{spec.schema_name}"."{spec.table_name}"',)).fetchone()[0] is None:
        raise RehearsalError(f"the target has no table {spec.table} (migration.yaml `table`): there is nothing to "
                             "rehearse on; check the target (AIRMIGRATE_TARGET_URL / the Airflow connection) and "
                             "the spec. Nothing was created")
    names = {(spec.schema_name, spec.table_name)}
    for kind, name in touched(migration):
        parts = name.split(".")
        if kind == "table":
            names.add((parts[0], parts[1]))
        elif kind in ("column", "uses_column") and len(parts) == 3:
            names.add((parts[0], parts[1]))
    oids = [row[0] for row in (conn.execute("SELECT to_regclass(%s)::oid", (f'"{s}"."{t}"',)).fetchone()
                               for s, t in names) if row[0] is not None]
    rows = conn.execute("""
        WITH RECURSIVE deps(oid) AS (
            SELECT unnest(%s::oid[])
            UNION SELECT c.confrelid FROM pg_constraint c JOIN deps d ON c.conrelid = d.oid WHERE c.contype = 'f')
        SELECT n.nspname, r.relname FROM deps d JOIN pg_class r ON r.oid = d.oid
        JOIN pg_namespace n ON n.oid = r.relnamespace WHERE r.relkind IN ('r', 'p') ORDER BY 1, 2""",
                        (oids,)).fetchall()
    return [Table(schema, name) for schema, name in rows]


def copy_size(conn, tables: list[Table]) -> int:
    return sum(conn.execute("SELECT pg_total_relation_size(%s::regclass)", (f'"{t.schema}"."{t.name}"',))
               .fetchone()[0] for t in tables)


def check_free_space(server: Target, needed: int) -> str:
    """Refuse a copy that would not fit, when the server's disk can be seen from here (a local server whose
    data_directory we may read); else say it was not checked."""
    if server.host not in (None, "", "localhost", "127.0.0.1", "::1") and not str(server.host or "").startswith("/"):
        return "free space not checked (the server is not on this machine)"
    try:
        with connect(server, autocommit=True) as conn:
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        free = shutil.disk_usage(data_dir).free
    except Exception:
        return "free space not checked (data_directory not readable)"
    if needed > free:
        raise RehearsalError(f"the copy needs about {needed / 1e9:.1f} GB (the tables, their indexes and room for "
                             f"the migration) but {data_dir} has {free / 1e9:.1f} GB free: use --sample, or "
                             "AIRMIGRATE_REHEARSAL_URL for another server. Nothing was created")
    return f"{free / 1e9:.1f} GB free for a copy of about {needed / 1e9:.1f} GB"


def create_copy_database(server: Target, name: str) -> Target:
    with connect(server, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            raise RehearsalError(f"database {name} already exists on {server.describe()} (a rehearsal kept with "
                                 f"--keep, or a name in use): drop it (DROP DATABASE \"{name}\") or rename it, then "
                                 "rehearse again. Nothing was created")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.with_dbname(name)


def drop_copy_database(server: Target, name: str) -> None:
    with connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def copy_structure(source: Target, copy: Target, tables: list[Table], section: str) -> list[str]:
    """pg_dump --schema-only --section=<pre-data|post-data> of the tables, run statement by statement on the
    copy. A statement that cannot run there (a trigger calling a function that was not copied) is skipped and
    listed: the report names it."""
    args = [engines.named(source.engine).dump_binary(), "--schema-only", "--no-owner", "--no-privileges", "--no-password",
            f"--section={section}", *[f"--table={_quoted(t)}" for t in tables]]
    result = subprocess.run(args, env={**os.environ, **source.libpq_env()}, capture_output=True, text=True)
    if result.returncode != 0:
        raise RehearsalError(f"pg_dump of the structure failed (exit {result.returncode}): "
                             f"{result.stderr.strip()[:500]}")
    text = "\n".join(line for line in result.stdout.splitlines() if not line.startswith("\\"))  # \restrict etc.
    skipped = []
    with connect(copy, autocommit=True) as conn:
        if section == "pre-data":
            for schema in sorted({t.schema for t in tables}):
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for statement in db.split_statements(text):
            try:
                conn.execute(statement)
            except Exception as exc:
                if statement.lstrip().upper().startswith("SET "):  # a newer pg_dump's session settings
                    continue
                skipped.append(f"{statement.strip().splitlines()[0][:120]}: {str(exc).splitlines()[0]}")
    for line in skipped:
        log.warning("rehearsal copy: not copied: %s", line)
    return skipped


def copy_rows(source: Target, copy: Target, table: Table, key: tuple[str, ...] | None, sample: float | None) -> int:
    """COPY the table's rows (binary, streamed); with `sample`, whole key ranges of SAMPLE_RANGE_KEYS keys,
    one range in every 100/sample. Returns rows copied."""
    started = time.monotonic()
    with connect(source) as src, connect(copy) as dst:
        columns = [row[0] for row in src.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "AND attgenerated = '' ORDER BY attnum", (_quoted(table),)).fetchall()]
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        for where, params in _row_filters(src, table, key, sample):
            query = sql.SQL("COPY (SELECT {} FROM {} {}) TO STDOUT (FORMAT binary)").format(cols, table.ident, where)
            with src.cursor().copy(query, params) as out, dst.cursor().copy(
                    sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(table.ident, cols)) as into:
                for data in out:
                    into.write(data)
        dst.commit()
        src.commit()
        rows = dst.execute(sql.SQL("SELECT count(*) FROM {}").format(table.ident)).fetchone()[0]
        sync_sequences(dst, table)
        dst.execute(sql.SQL("ANALYZE {}").format(table.ident))
        dst.commit()
    log.info("rehearsal copy: %s: %s rows in %.1fs%s", table, f"{rows:,}", time.monotonic() - started,
             f" (a {sample:g}% sample by key ranges)" if sample and key else "")
    return rows


def sync_sequences(conn, table: Table) -> None:
    """Identity and serial sequences start after the copied rows (pg_dump's setval is in the data section,
    which the copy does not run), so the application's next INSERT gets a new key as on the target."""
    for column, sequence in conn.execute(
            "SELECT attname, pg_get_serial_sequence(%s, attname) FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attnum > 0 AND NOT attisdropped", (_quoted(table), _quoted(table))).fetchall():
        if sequence:
            conn.execute(sql.SQL("SELECT setval(%s, greatest((SELECT max({}) FROM {}), 1))").format(
                sql.Identifier(column), table.ident), (sequence,))


def _row_filters(conn, table: Table, key: tuple[str, ...] | None, sample: float | None):
    """(WHERE clause, params) per chunk to copy: the whole table, or the sampled key ranges."""
    if not sample or not key:
        yield sql.SQL(""), None
        return
    every = max(1, round(100 / sample))
    walker = Key(table.schema, table.name, tuple(key))
    where = sql.SQL("WHERE {}").format(walker.between())
    for number, (lo, hi) in enumerate(walker.ranges(conn, SAMPLE_RANGE_KEYS)):
        if number % every == 0:
            yield where, walker.bounds(lo, hi)
    conn.commit()


def copy_history(source: Target, copy: Target, migration: Migration) -> None:
    """The target's history (every other migration's state), so the copy's order checks see what it has."""
    with connect(source) as src:
        exists = src.execute("SELECT to_regclass('airmigrate.history')").fetchone()[0]
        rows = src.execute("SELECT migration_id, checksum, status FROM airmigrate.history WHERE migration_id <> %s",
                           (migration.id,)).fetchall() if exists else []
        src.commit()
    with connect(copy, autocommit=True) as conn:
        state.ensure_schema(conn)
        for migration_id, checksum, status in rows:
            conn.execute("INSERT INTO airmigrate.history (migration_id, checksum, status) VALUES (%s, %s, %s)",
                         (migration_id, checksum, status))


def checksums(target: Target, tables: list[Table], columns: dict[str, list[str]] | None = None) -> dict:
    """Per table: row count and md5 of every row (the given columns, in key order), for 'identical after the
    rollback'. Columns are fixed from the first call, so a column re-added at the end compares the same."""
    out = {}
    with connect(target) as conn:
        for table in tables:
            cols = (columns or {}).get(str(table)) or [row[0] for row in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", (_quoted(table),)).fetchall()]
            listed = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
            count, digest = conn.execute(sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(md5(row({})::text), '' ORDER BY row({})::text), '')) "
                "FROM {}").format(listed, listed, table.ident)).fetchone()
            out[str(table)] = {"rows": count, "md5": digest, "columns": cols}
        conn.commit()
    return out


def definitions(target: Target, tables: list[Table]) -> dict:
    """Per table: its full normalised definition (columns, constraints, indexes, triggers, comments, grants),
    for 'identical after the rollback': equal rows with a lost index or NOT NULL are not identical."""
    with connect(target, autocommit=True) as conn:
        return {str(t): structure.definition(conn, t.schema, t.name) for t in tables}


def structure_differences(before: dict, after: dict) -> list[str]:
    """Each difference between two :func:`definitions`, prefixed with its table; empty when identical."""
    return [f"{name}: {d}" for name in before for d in structure.differences(before[name], after.get(name), name)]


def _quoted(table: Table) -> str:
    return sql.Identifier(table.schema, table.name).as_string(None)
