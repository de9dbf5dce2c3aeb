"""A table's full definition read from PostgreSQL's catalog (airmigrate.structure's reader on PostgreSQL, moved here
unchanged): every column, constraint, index, trigger, grant and dependent object with the columns it uses."""

from __future__ import annotations

_COLUMNS = """
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), nullif(a.attidentity, ''), nullif(a.attgenerated, ''),
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
            THEN (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.collname) FROM pg_collation c
                  JOIN pg_namespace n ON n.oid = c.collnamespace WHERE c.oid = a.attcollation) END,
       col_description(a.attrelid, a.attnum), nullif(a.attstattarget, -1)::int,
       CASE WHEN a.attidentity = '' THEN pg_get_serial_sequence(quote_ident(n.nspname) || '.' ||
            quote_ident(cl.relname), a.attname) END,
       (SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM (
          SELECT (CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END) || ' ' || e.privilege_type
                 || CASE WHEN e.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END AS x
          FROM aclexplode(a.attacl) e LEFT JOIN pg_roles r ON r.oid = e.grantee) g)
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_class cl ON cl.oid = a.attrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""

_CONSTRAINTS = """
SELECT con.conname::text, con.contype::text, pg_get_constraintdef(con.oid),
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(n, ord)
                 JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n), '{}'),
       CASE WHEN con.conindid <> 0 AND con.contype IN ('u', 'p', 'x') THEN pg_get_indexdef(con.conindid) END
FROM pg_constraint con WHERE con.conrelid = %(oid)s ORDER BY con.conname
"""

_INDEXES = """
SELECT c.relname::text, pg_get_indexdef(i.indexrelid), i.indisvalid,
       coalesce((SELECT array_agg(DISTINCT a.attname::text) FROM pg_attribute a WHERE a.attrelid = i.indrelid
                 AND a.attnum > 0 AND (a.attnum = ANY (i.indkey) OR a.attnum IN (
                   SELECT d.refobjsubid FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = i.indexrelid AND d.refobjid = i.indrelid))), '{}'),
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %(oid)s ORDER BY c.relname
"""

_REFERENCED_BY = """
SELECT con.conname::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_get_constraintdef(con.oid),
       (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(n, ord)
        JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n), n.nspname::text, c.relname::text
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype = 'f' AND con.confrelid = %(oid)s AND con.conrelid <> %(oid)s ORDER BY 2, 1
"""

# What else depends on a column and would be dropped with it (or keep it from being dropped): views, triggers
# limited to it (UPDATE OF), row security policies, extended statistics, generated columns computed from it.
_DEPENDENTS = """
SELECT a.attname::text, CASE WHEN d.classid = 'pg_class'::regclass
         THEN 'generated column ' || (SELECT attname FROM pg_attribute WHERE attrelid = d.objid
                                      AND attnum = d.objsubid)
         WHEN d.classid = 'pg_rewrite'::regclass
         THEN 'view ' || (SELECT ev_class::regclass::text FROM pg_rewrite WHERE oid = d.objid)
         ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END
FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s AND d.refobjsubid > 0
  AND (d.classid = 'pg_rewrite'::regclass AND (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid) <> %(oid)s
       OR d.classid IN ('pg_trigger'::regclass, 'pg_policy'::regclass, 'pg_statistic_ext'::regclass)
       OR d.classid = 'pg_class'::regclass AND d.objid = %(oid)s AND d.objsubid > 0 AND d.objsubid <> d.refobjsubid)
ORDER BY 1, 2
"""


def read_table(conn, schema: str, table: str) -> dict | None:
    """Everything about `schema.table` an operation must carry over or a check must compare; None when
    the table does not exist. Each constraint and index lists the columns it uses."""
    row = conn.execute("SELECT c.oid, obj_description(c.oid, 'pg_class'), c.relacl::text[] FROM pg_class c "
                       "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
                       "AND c.relkind IN ('r', 'p')", (schema, table)).fetchone()
    if row is None:
        return None
    oid, comment, acl = row
    params = {"oid": oid}
    columns = {r[0]: {"type": r[1], "not_null": r[2], "default": r[3], "identity": r[4], "generated": r[5],
                      "collation": r[6], "comment": r[7], "statistics": r[8], "owns_sequence": r[9],
                      "privileges": list(r[10])}
               for r in conn.execute(_COLUMNS, params)}
    constraints = {r[0]: {"kind": r[1], "definition": r[2], "columns": list(r[3]),  # NOT VALID is in r[2]
                          "index": r[4]} for r in conn.execute(_CONSTRAINTS, params)}
    indexes = {r[0]: {"definition": r[1] + ("" if r[2] else " -- INVALID"), "columns": sorted(r[3]),
                      "constraint": r[4]} for r in conn.execute(_INDEXES, params)}
    triggers = {r[0]: r[1] for r in conn.execute(
        "SELECT tgname::text, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal "
        "ORDER BY tgname", params)}
    referenced_by = {f"{r[1]}.{r[0]}": {"definition": r[2], "columns": list(r[3]), "name": r[0],
                                        "table": [r[4], r[5]]} for r in conn.execute(_REFERENCED_BY, params)}
    dependents: dict[str, list[str]] = {}
    for column, what in conn.execute(_DEPENDENTS, params):
        dependents.setdefault(column, []).append(what)
    return {"schema": schema, "table": table, "comment": comment, "privileges": sorted(acl or []),
            "columns": columns, "constraints": constraints, "indexes": indexes, "triggers": triggers,
            "referenced_by": referenced_by, "dependents": dependents}


def foreign_keys(conn, schema: str, table: str) -> list[dict]:
    """The foreign keys from and to the table: name, from_table, from_columns, to_table, to_columns."""
    row = conn.execute("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = %s AND c.relname = %s", (schema, table)).fetchone()
    if row is None:
        return []
    oid = row[0]
    return [{"name": r[0], "from_table": r[1], "from_columns": list(r[2]), "to_table": r[3],
            "to_columns": list(r[4])} for r in conn.execute(
        "SELECT con.conname::text, fn.nspname || '.' || fc.relname, "
        "(SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(n, ord) "
        " JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n), "
        "tn.nspname || '.' || tc.relname, "
        "(SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(n, ord) "
        " JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) "
        "FROM pg_constraint con JOIN pg_class fc ON fc.oid = con.conrelid JOIN pg_namespace fn ON "
        "fn.oid = fc.relnamespace JOIN pg_class tc ON tc.oid = con.confrelid JOIN pg_namespace tn ON "
        "tn.oid = tc.relnamespace WHERE con.contype = 'f' AND (con.conrelid = %s OR con.confrelid = %s) "
        "ORDER BY con.conname", (oid, oid))]
