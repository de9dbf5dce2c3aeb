"""The preflight's look at the migration's table on PostgreSQL: does it exist, its row estimate, its columns,
whether the batching key is a unique NOT NULL key, and which keys it has (pg_class, pg_attribute, pg_index)."""

from __future__ import annotations

from typing import Any


def key_check(conn: Any, schema: str, table: str, key: tuple[str, ...]) -> dict | None:
    """None when there is no such table; else {estimate (the planner's, 0 when never analyzed), columns,
    unique (`key` is a valid non-partial unique index's columns, all NOT NULL), candidates (:func:`candidate_keys`,
    read only when `key` is not usable)}."""
    row = conn.execute(
        "SELECT c.oid, greatest(c.reltuples, 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", (schema, table)).fetchone()
    if row is None:
        return None
    oid, estimate = row
    columns = [r[0] for r in conn.execute(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum", (oid,))]
    unique = all(k in columns for k in key) and conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = %(oid)s AND i.indisunique AND i.indisvalid "
        "AND i.indpred IS NULL AND i.indnatts = cardinality(%(key)s::text[]) AND (SELECT array_agg(a.attname::text "
        "ORDER BY a.attname) FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "AND a.attnotnull) = (SELECT array_agg(k ORDER BY k) FROM unnest(%(key)s::text[]) k))",
        {"oid": oid, "key": list(key)}).fetchone()[0]
    return {"estimate": int(estimate), "columns": columns, "unique": bool(unique),
            "candidates": [] if unique else candidate_keys(conn, oid)}


def candidate_keys(conn: Any, oid: int) -> list[list[str]]:
    """The table's usable batching keys: columns of each valid, non-partial unique index whose columns are all
    NOT NULL (primary key first)."""
    rows = conn.execute(
        "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i "
        "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE k.ord <= i.indnkeyatts AND i.indrelid = %s AND i.indisunique AND i.indisvalid "
        "AND i.indpred IS NULL AND i.indexprs IS NULL "
        "GROUP BY i.indexrelid, i.indisprimary HAVING bool_and(a.attnotnull) "
        "ORDER BY i.indisprimary DESC, count(*), i.indexrelid", (oid,)).fetchall()
    return [r[0] for r in rows]
