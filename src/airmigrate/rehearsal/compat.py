"""Does the application still work on the copy at each phase? Its typical statements (the migration
folder's optional compat.sql; by default a SELECT * and an INSERT of a row like an existing one), each in a
transaction that is rolled back, so the copy is not changed by checking it."""

from __future__ import annotations

from airmigrate import db
from airmigrate.db import Target, connect
from airmigrate.engines import sql
from airmigrate.spec import Migration


def statements(migration: Migration, conn) -> list[str]:
    spec = migration.spec
    table = sql.Identifier(spec.schema_name, spec.table_name).as_string(conn)
    defaults = [f"SELECT * FROM {table} LIMIT 10", _insert_like_existing(conn, migration)]
    conn.rollback()
    path = migration.folder / "compat.sql"
    extra = [s.strip() for s in db.split_statements(path.read_text())] if path.exists() else []
    return [s for s in defaults if s] + extra


def _insert_like_existing(conn, migration: Migration) -> str | None:
    """INSERT a copy of one existing row the way the application would write a new one: identity and
    defaulted key columns left out, other unique text and number columns given a fresh value."""
    spec = migration.spec
    table = sql.Identifier(spec.schema_name, spec.table_name)
    rows = conn.execute("""
        SELECT a.attname, t.typcategory, a.atttypmod,
               EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique
                       AND a.attnum = ANY (i.indkey)) AS is_unique, a.atthasdef
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
          AND a.attidentity = '' ORDER BY a.attnum""", (table.as_string(conn),)).fetchall()
    names, values = [], []
    for name, category, typmod, is_unique, has_default in rows:
        column = sql.Identifier(name)
        if is_unique and has_default:
            continue  # a serial-like key: the default makes the new value
        value = column
        if is_unique and category == "S":
            fresh = sql.SQL("md5(random()::text) || {}").format(column)
            value = sql.SQL("left({}, {})").format(fresh, sql.Literal(typmod - 4)) if typmod > 4 else fresh
        elif is_unique and category == "N":
            value = sql.SQL("{c} + (SELECT max({c}) - min({c}) + 1 FROM {t})").format(c=column, t=table)
        names.append(column)
        values.append(value)
    if not names:
        return None
    return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} LIMIT 1").format(
        table, sql.SQL(", ").join(names), sql.SQL(", ").join(values), table).as_string(conn)


def old_application(target: Target, migration: Migration) -> list[str]:
    """The statements of the application as it is before the migration (built on the copy before it)."""
    with connect(target) as conn:
        return statements(migration, conn)


def check_statements(target: Target, texts: list[str], phase: str) -> list[dict]:
    """Each statement's outcome: passed, failed (with the error) or skipped for a unique value taken (a copy
    of an existing row cannot be unique; that is not the migration's doing). After the contract the old
    application version may rightly fail (a renamed or dropped column): that is 'old version only', which
    the plan's phases say, not a failure."""
    out = []
    with connect(target) as conn:
        for statement in texts:
            conn.rollback()
            try:
                conn.execute(statement)
                out.append({"statement": statement, "status": "passed"})
            except Exception as exc:
                status = "skipped" if getattr(exc, "sqlstate", None) == "23505" else \
                    "old version only" if phase == "contracted" else "failed"
                out.append({"statement": statement, "status": status, "error": str(exc).splitlines()[0]})
            finally:
                conn.rollback()
    return out
