"""The vocabulary of PostgreSQL's lock rules (lock_rules.py): its table lock modes, and the catalog look-ups and
parse-tree helpers the rules share. What a statement takes (RelationLock, Analysis) is neutral: airmigrate.locks."""

from __future__ import annotations

import pglast
from pglast.stream import RawStream

from airmigrate.locks import NO_LOCK, Analysis, RelationLock  # noqa: F401 (the rules' vocabulary)

# Table-level lock modes, weakest first (PostgreSQL docs, "Explicit Locking"): each conflicts with at least
# the modes the one before it conflicts with, so "not weaker" is an index comparison.
LOCK_MODES = ["ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
              "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"]
UNKNOWN = "unknown statement: assumed ACCESS EXCLUSIVE"
WRITE_BLOCKING = {"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}
AE, SRE, SHARE, SUE = "ACCESS EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE", "SHARE UPDATE EXCLUSIVE"

# ALTER TABLE subcommands by lock (PostgreSQL 15, AlterTableGetLockLevel); anything not listed: ACCESS EXCLUSIVE.
ALTER_LOCKS = {
    **dict.fromkeys(["AT_SetStatistics", "AT_ClusterOn", "AT_DropCluster", "AT_SetOptions", "AT_ResetOptions",
                     "AT_ValidateConstraint", "AT_AttachPartition", "AT_DetachPartitionFinalize"], SUE),
    **dict.fromkeys(["AT_EnableTrig", "AT_EnableAlwaysTrig", "AT_EnableReplicaTrig", "AT_EnableTrigAll",
                     "AT_EnableTrigUser", "AT_DisableTrig", "AT_DisableTrigAll", "AT_DisableTrigUser"], SRE),
}
# ALTER TABLE subcommands that rewrite the table (new relfilenode) or read all of it, whatever their arguments
ALTER_EFFECTS = {"AT_SetLogged": "rewrite", "AT_SetUnLogged": "rewrite", "AT_SetTableSpace": "rewrite",
                 "AT_SetAccessMethod": "rewrite", "AT_SetNotNull": "scan", "AT_ValidateConstraint": "scan",
                 "AT_AttachPartition": "scan", "AT_AddIndex": "scan", "AT_AddIdentity": ""}
# storage parameters SET/RESET under SHARE UPDATE EXCLUSIVE (reloptions.c); any other: ACCESS EXCLUSIVE
SUE_RELOPTIONS = {"fillfactor", "toast_tuple_target", "parallel_workers", "vacuum_index_cleanup", "vacuum_truncate",
                  "log_autovacuum_min_duration", "deduplicate_items", "fastupdate", "gin_pending_list_limit",
                  "pages_per_range", "autosummarize", "n_distinct", "n_distinct_inherited"}

# Functions the static path knows are not volatile (a volatile one in a new column's default rewrites the
# table; PostgreSQL checks provolatile = 'v'). Any other function is assumed volatile without the target.
NON_VOLATILE = set("""
now transaction_timestamp statement_timestamp current_date current_time current_timestamp localtime localtimestamp
lower upper length char_length octet_length btrim ltrim rtrim trim substr substring replace concat concat_ws left
right lpad rpad md5 sha256 encode decode to_char to_date to_timestamp to_number date_trunc date_part extract
make_date make_timestamp make_timestamptz make_interval abs ceil ceiling floor round trunc greatest least coalesce
nullif int2 int4 int8 float4 float8 numeric text varchar bool jsonb_build_object json_build_object
jsonb_build_array json_build_array to_jsonb to_json array_length cardinality split_part regexp_replace
format current_setting current_schema current_user session_user current_database version
""".split())
# pg_catalog functions that are volatile (provolatile = 'v' in PostgreSQL 15), the usual ones in defaults
VOLATILE = {"random", "clock_timestamp", "timeofday", "gen_random_uuid", "nextval", "setval", "currval",
            "lastval", "txid_status", "set_config", "uuid_generate_v1", "uuid_generate_v4", "random_normal"}
BUILTIN_TYPES = set("""
bool boolean int2 int4 int8 smallint integer int bigint float4 float8 real numeric decimal money text varchar
bpchar char character name bytea date time timetz timestamp timestamptz interval uuid json jsonb xml inet
cidr macaddr macaddr8 bit varbit oid regclass tsvector tsquery point line lseg box path polygon circle
int4range int8range numrange tsrange tstzrange daterange pg_lsn
""".split())
SERIAL_TYPES = {"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"}


# ---------------------------------------------------------------------------------------------------------------
# catalog look-ups (only with a target); every one answers None when it cannot tell

class _Catalog:
    def __init__(self, conn):
        self.conn = conn

    def _one(self, query: str, params=()):
        if self.conn is None:
            return None
        try:
            with self.conn.transaction():
                row = self.conn.execute(query, params).fetchone()
            return row
        except Exception:  # noqa: BLE001  (a look-up that fails is an answer we do not have)
            return None

    def function_volatile(self, name: list[str]) -> bool | None:
        schema = name[-2] if len(name) > 1 else None
        row = self._one("SELECT bool_or(provolatile = 'v'), count(*) FROM pg_proc WHERE proname = %s "
                        "AND (%s::text IS NULL OR pronamespace = to_regnamespace(%s)::oid)",
                        (name[-1], schema, schema))
        return None if row is None or not row[1] else bool(row[0])

    def type_of(self, typename: str) -> tuple[int, int] | None:
        """(type oid, typmod) of a type as written, e.g. varchar(20), asked of the server itself (a domain's
        own oid: a result column would report its base type)."""
        if self.conn is None:
            return None
        try:
            with self.conn.transaction():
                cur = self.conn.execute(f"SELECT to_regtype(%s)::oid, NULL::{typename} LIMIT 1", (typename,))
                row = cur.fetchone()
                return (row[0], cur.pgresult.fmod(1)) if row and row[0] else None
        except Exception:  # noqa: BLE001
            return None

    def access_method(self, relation: str) -> str | None:
        row = self._one("SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
                        "WHERE c.oid = to_regclass(%s)", (relation,))
        return row[0] if row else None

    def domain_checks(self, type_oid: int) -> bool | None:
        """True when the type is a domain with constraints (CHECK or NOT NULL, its own or its base domain's)."""
        row = self._one("""
            WITH RECURSIVE d AS (SELECT oid, typtype, typbasetype, typnotnull FROM pg_type WHERE oid = %s
                UNION ALL SELECT t.oid, t.typtype, t.typbasetype, t.typnotnull FROM pg_type t JOIN d
                ON t.oid = d.typbasetype WHERE d.typtype = 'd')
            SELECT bool_or(typtype = 'd' AND (typnotnull OR EXISTS (
                SELECT 1 FROM pg_constraint c WHERE c.contypid = d.oid))), count(*) FROM d""", (type_oid,))
        return None if row is None or not row[1] else bool(row[0])

    def base_type(self, type_oid: int) -> tuple[int, int]:
        row = self._one("SELECT getbase.oid, getbase.typmod FROM (SELECT t.typbasetype AS oid, t.typtypmod AS "
                        "typmod FROM pg_type t WHERE t.oid = %s AND t.typtype = 'd') getbase", (type_oid,))
        return (row[0], row[1]) if row else (type_oid, -1)

    def column(self, relation: str, column: str) -> tuple[int, int] | None:
        return self._one("SELECT atttypid, atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                         "AND attname = %s AND NOT attisdropped", (relation, column))

    def binary_cast(self, source: int, target: int) -> bool:
        row = self._one("SELECT castmethod = 'b' FROM pg_cast WHERE castsource = %s AND casttarget = %s",
                        (source, target))
        return bool(row and row[0])

    def utc(self) -> bool:
        row = self._one("SELECT now()::timestamp = now() AT TIME ZONE 'UTC'")
        return bool(row and row[0])

    def constraint(self, relation: str, name: str) -> tuple[str, str | None] | None:
        """(contype, referenced table) of a table's constraint."""
        return self._one("SELECT contype::text, CASE WHEN confrelid <> 0 THEN confrelid::regclass::text END "
                         "FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s", (relation, name))

    def index_table(self, index: str) -> str | None:
        row = self._one("SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass(%s)",
                        (index,))
        return row[0] if row else None

    def exists(self, relation: str) -> bool | None:
        row = self._one("SELECT to_regclass(%s) IS NOT NULL", (relation,))
        return None if row is None else bool(row[0])

    def foreign_keys_on(self, relation: str, column: str | None = None) -> list[str] | None:
        """Tables a relation's foreign keys reference (and tables referencing it), optionally through a column."""
        if self.conn is None:
            return None
        try:
            with self.conn.transaction():
                rows = self.conn.execute(
                    "SELECT CASE WHEN c.conrelid = r.oid THEN c.confrelid ELSE c.conrelid END::regclass::text "
                    "FROM pg_constraint c, (SELECT to_regclass(%s) AS oid) r WHERE c.contype = 'f' "
                    "AND (c.conrelid = r.oid OR c.confrelid = r.oid) AND (%s::text IS NULL OR "
                    "(SELECT attnum FROM pg_attribute WHERE attrelid = r.oid AND attname = %s) = ANY("
                    "CASE WHEN c.conrelid = r.oid THEN c.conkey ELSE c.confkey END))",
                    (relation, column, column)).fetchall()
            return [r[0] for r in rows]
        except Exception:  # noqa: BLE001
            return None


# ---------------------------------------------------------------------------------------------------------------
# helpers on the parse tree

def _name(rangevar) -> str:
    return ".".join(p for p in (getattr(rangevar, "schemaname", None), rangevar.relname) if p)


def _strings(names) -> list[str]:
    return [getattr(n, "sval", "") for n in names or ()]


def _enum(value) -> str:
    return getattr(value, "name", str(value))


def _walk(node):
    """Every pglast node under node (itself included)."""
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, pglast.ast.Node):
        yield node
        for slot in type(node).__slots__:
            yield from _walk(getattr(node, slot, None))


def _rangevars(node) -> list[str]:
    """Relations a query reads (CTE names are left out)."""
    ctes = {c.ctename for c in _walk(node) if isinstance(c, pglast.ast.CommonTableExpr)}
    seen = []
    for n in _walk(node):
        if isinstance(n, pglast.ast.RangeVar) and n.relname not in ctes and _name(n) not in seen:
            seen.append(_name(n))
    return seen


def _typename(typename) -> str:
    return RawStream()(typename)


def _max(*modes: str) -> str:
    return max(modes, key=LOCK_MODES.index)


def _effect(*effects: str) -> str:
    return "rewrite" if "rewrite" in effects else "scan" if "scan" in effects else ""


def _sequences(expr) -> list[RelationLock]:
    """nextval('s') / setval('s', ...) in an expression: ROW EXCLUSIVE on the sequence."""
    found = []
    for node in _walk(expr):
        if isinstance(node, pglast.ast.FuncCall) and _strings(node.funcname)[-1:] in (["nextval"], ["setval"]):
            arg = (node.args or (None,))[0]
            while isinstance(arg, pglast.ast.TypeCast):
                arg = arg.arg
            if isinstance(arg, pglast.ast.A_Const) and isinstance(arg.val, pglast.ast.String):
                found.append(RelationLock(arg.val.sval, "ROW EXCLUSIVE", "sequence"))
            else:
                found.append(RelationLock("", "ROW EXCLUSIVE", "the sequence it advances"))
    return found


def _volatile(expr, catalog: _Catalog) -> tuple[bool, list[str]]:
    """Does PostgreSQL think this expression volatile (contain_volatile_functions)? Looks at every function
    call in it; SQLValueFunctions (CURRENT_TIMESTAMP, CURRENT_USER, ...) are stable, never volatile."""
    notes = []
    for node in _walk(expr):
        if isinstance(node, pglast.ast.FuncCall):
            name = [n.lower() for n in _strings(node.funcname)]
            known = catalog.function_volatile(name)
            if known is None:
                bare = name[-1]
                if len(name) == 1 or name[0] == "pg_catalog":
                    if bare in VOLATILE:
                        known = True
                    elif bare in NON_VOLATILE:
                        known = False
                if known is None:
                    notes.append(f"{'.'.join(name)}(): volatility unknown without the target, assumed volatile")
                    known = True
            if known:
                return True, notes
    return False, notes
