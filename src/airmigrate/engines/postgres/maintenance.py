"""Table upkeep between batches of a bulk delete: dead-tuple counts and a plain VACUUM (never FULL)."""

from __future__ import annotations

from airmigrate.engines import sql


def dead_tuples(conn, schema: str, table: str) -> int:
    """The statistics system's dead-tuple count of the table (0 when it has none yet)."""
    row = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s",
                       (schema, table)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def vacuum(conn, schema: str, table: str, lock_timeout_ms: int) -> bool:
    """VACUUM (plain: no ACCESS EXCLUSIVE lock, the application reads and writes on) on an autocommit
    connection; False when another vacuum holds the table (autovacuum, another shard): it does the job."""
    conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout_ms)}ms")))
    try:
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, table)))
    except Exception as exc:  # lock_not_available: someone else is vacuuming it
        if getattr(exc, "sqlstate", None) == "55P03":
            return False
        raise
    finally:
        conn.execute("RESET lock_timeout")
    return True


def referencing_keys(conn, schema: str, table: str) -> list[dict]:
    """Foreign keys of other tables to this one: name, the referencing table and columns, the referenced
    columns and the ON DELETE action ('a' no action, 'r' restrict, 'c' cascade, 'n' set null, 'd' set default)."""
    rows = conn.execute(
        "SELECT con.conname::text, n.nspname::text, c.relname::text, "
        "(SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(n, ord) "
        " JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n), "
        "(SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(n, ord) "
        " JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n), con.confdeltype::text "
        "FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE con.contype = 'f' AND con.confrelid = to_regclass(%s) ORDER BY 2, 3, 1",
        (sql.Identifier(schema, table).as_string(conn),)).fetchall()
    return [{"name": r[0], "schema": r[1], "table": r[2], "columns": list(r[3]), "referenced": list(r[4]),
             "on_delete": {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
                           "d": "SET DEFAULT"}[r[5]]} for r in rows]


def estimate_matching(conn, schema: str, table: str, where: str) -> tuple[int, int]:
    """(rows the planner expects `where` to match, the table's mean row size in bytes): EXPLAIN, never run."""
    qualified = sql.Identifier(schema, table)
    plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} WHERE " + where).format(
        qualified)).fetchone()[0]
    width = conn.execute("SELECT CASE WHEN reltuples > 0 THEN relpages * 8192 / reltuples END FROM pg_class "
                         "WHERE oid = to_regclass(%s)", (qualified.as_string(conn),)).fetchone()
    return int(plan[0]["Plan"]["Plan Rows"]), int(width[0] or 100) if width else 100


def table_columns(conn, schema: str, table: str) -> list[str] | None:
    """The columns in order (exact names), None when the table (or view) does not exist."""
    columns = [row[0] for row in conn.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, table)).fetchall()]
    if columns:
        return columns
    exists = conn.execute("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                          "WHERE n.nspname = %s AND c.relname = %s", (schema, table)).fetchone()
    return [] if exists else None


def column_types(conn, schema: str, table: str) -> dict[str, str]:
    """name -> formatted type (format_type) of a table's live columns."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (f'"{schema}"."{table}"',)).fetchall()
    return dict(rows)


def column_comments(conn, schema: str, table: str) -> dict[str, str | None]:
    """name -> comment (None: none) of the table's live columns."""
    return dict(conn.execute(
        "SELECT attname, col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attnum > 0 AND NOT attisdropped",
        (sql.Identifier(schema, table).as_string(conn),)).fetchall())


def comment_column_sql(conn, schema: str, table: str, column: str, text: str) -> str:
    return sql.SQL("COMMENT ON COLUMN {} IS {}").format(sql.Identifier(schema, table, column),
                                                        sql.Literal(text)).as_string(conn)
