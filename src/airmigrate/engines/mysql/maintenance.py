"""What a batched delete asks of MySQL / MariaDB: dead rows (InnoDB's purge reclaims them by itself), the rows a
condition matches (EXPLAIN, never run) and other tables' foreign keys to this one (information_schema)."""

from __future__ import annotations

from airmigrate.engines import sql


def dead_tuples(conn, schema: str, table: str) -> int:
    """InnoDB keeps no dead row versions in the table for a vacuum to reclaim: its purge thread removes deleted
    rows once no transaction can see them. Nothing to count, nothing to act on."""
    return 0


def vacuum(conn, schema: str, table: str, lock_timeout_ms: int) -> bool:
    """Nothing to do (see :func:`dead_tuples`); OPTIMIZE TABLE would rebuild the table, which a migration never
    does behind the application's back."""
    return True


def estimate_matching(conn, schema: str, table: str, where: str) -> tuple[int, int]:
    """(rows the optimizer expects `where` to match, the table's mean row length in bytes)."""
    cur = conn.execute(sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE " + where).format(sql.Identifier(schema, table)))
    column = [d[0].lower() for d in cur.description].index("rows")  # MariaDB and MySQL 8 place it differently
    estimate = max((int(r[column] or 0) for r in cur.fetchall()), default=0)
    width = conn.execute("SELECT avg_row_length FROM information_schema.tables WHERE table_schema = %s "
                         "AND table_name = %s", (schema, table)).fetchone()
    return estimate, int(width[0] or 100) if width else 100


def referencing_keys(conn, schema: str, table: str) -> list[dict]:
    """Other tables' foreign keys to this one: name, schema, table, columns, referenced columns, ON DELETE."""
    rows = conn.execute(
        "SELECT k.constraint_name, k.table_schema, k.table_name, k.column_name, k.referenced_column_name, "
        "r.delete_rule FROM information_schema.key_column_usage k JOIN information_schema.referential_constraints r "
        "ON r.constraint_schema = k.constraint_schema AND r.constraint_name = k.constraint_name "
        "WHERE k.referenced_table_schema = %s AND k.referenced_table_name = %s "
        "ORDER BY k.table_schema, k.table_name, k.constraint_name, k.ordinal_position", (schema, table)).fetchall()
    keys: dict[tuple, dict] = {}
    for name, owner, other, column, referenced, on_delete in rows:
        key = keys.setdefault((owner, other, name), {"name": name, "schema": owner, "table": other, "columns": [],
                                                     "referenced": [], "on_delete": on_delete})
        key["columns"].append(column)
        key["referenced"].append(referenced)
    return list(keys.values())
