"""What a migration will do, before it does it: each statement with its lock, rewrite/scan, and an ETA.

The static part (statements, locks, rewrites) needs no database and feeds the DAG's docs in the
Airflow UI; the estimates (rows from ``pg_class.reltuples``, throughput measured on earlier
runs' batches) need the target and are added by ``airmigrate plan``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pglast

from airmigrate import db, operations
from airmigrate.spec import Migration, bound_placeholders

# Table-level lock modes, weakest first (PostgreSQL docs, "Explicit Locking"): each conflicts with at least
# the modes the one before it conflicts with, so "not weaker" is an index comparison.
LOCK_MODES = ["ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
              "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"]
NO_LOCK = "none on existing tables"
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


@dataclass(frozen=True)
class RelationLock:
    relation: str   # as the statement names it; "" = relations it does not name (e.g. a referenced table)
    mode: str
    what: str = "table"   # "table", "index", "indexes" (of relation), "referenced table", ...

    def __str__(self) -> str:
        where = self.relation or "?"
        if self.what == "indexes":
            return f"{self.mode} on the indexes of {where}"
        return f"{self.mode} on {self.what} {where}" if self.relation else f"{self.mode} on {self.what}"


@dataclass(frozen=True)
class Analysis:
    locks: tuple[RelationLock, ...]   # the statement's own relation first
    effect: str                        # "", "scan" or "rewrite"
    notes: tuple[str, ...] = ()

    @property
    def lock(self) -> str:
        return self.locks[0].mode if self.locks else NO_LOCK

    @property
    def others(self) -> tuple[RelationLock, ...]:
        """Locks besides the headline one: other tables (REFERENCES), indexes, ..."""
        return self.locks[1:]


@dataclass(frozen=True)
class PlannedStatement:
    stage: str
    sql: str
    lock: str
    effect: str          # "", "scan" (reads the whole table under the lock) or "rewrite"
    transactional: bool
    also: tuple[str, ...] = ()    # locks on other relations, notes ("unknown statement: ...")

    @property
    def blocks_writes(self) -> bool:
        return self.lock in WRITE_BLOCKING and self.effect != ""


def classify(statement: str, conn=None) -> tuple[str, str]:
    """(lock on the statement's own table, effect) for one statement; ``analyze`` has the other relations."""
    analysis = analyze(statement, conn)
    return analysis.lock, analysis.effect


def analyze(statement: str, conn=None) -> Analysis:
    """Every relation lock the statement takes and whether it scans or rewrites, from pglast's parse tree.

    Without ``conn`` (a connection to the target) it is conservative where the answer depends on the
    database: a column's current type, a function's volatility, a type being a domain with checks, what a
    constraint or an index belongs to. With it, those are looked up in the catalogs (no lock on any table)."""
    node = pglast.parse_sql(bound_placeholders(statement))[0].stmt
    handler = _HANDLERS.get(type(node).__name__)
    if handler is None:
        return Analysis((RelationLock("", AE, "every relation it touches"),), "", (UNKNOWN,))
    return handler(node, _Catalog(conn))


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
    from pglast.stream import RawStream

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


# ---------------------------------------------------------------------------------------------------------------
# statements

def _alter_table(node, catalog: _Catalog) -> Analysis:
    rel = _name(node.relation)
    objtype = _enum(node.objtype)
    if objtype in ("OBJECT_INDEX", "OBJECT_SEQUENCE"):
        modes = [_reloptions_lock(cmd) if _enum(cmd.subtype) in ("AT_SetRelOptions", "AT_ResetRelOptions") else AE
                 for cmd in node.cmds or ()]
        what = "index" if objtype == "OBJECT_INDEX" else "sequence"
        return Analysis((RelationLock(rel, _max(*modes) if modes else AE, what),), "")
    mode, effects, others, notes = SUE, [], [], []
    for cmd in node.cmds or ():
        sub = _enum(cmd.subtype)
        sub_mode = ALTER_LOCKS.get(sub, AE)
        effects.append(ALTER_EFFECTS.get(sub, ""))
        if sub in ("AT_SetRelOptions", "AT_ResetRelOptions"):
            sub_mode = _reloptions_lock(cmd)
        elif sub == "AT_SetAccessMethod" and cmd.name and catalog.access_method(rel) == cmd.name:
            effects[-1] = ""  # the access method it already has: nothing to rewrite
        elif sub == "AT_AddColumn":
            effect, col_others, col_notes = _add_column(rel, cmd.def_, catalog)
            effects.append(effect)
            others += col_others
            notes += col_notes
        elif sub == "AT_AddConstraint":
            sub_mode, effect, con_others = _constraint(cmd.def_)
            effects.append(effect)
            others += con_others
        elif sub == "AT_AlterColumnType":
            effect, type_notes = _column_type(rel, cmd, catalog)
            effects.append(effect)
            notes += type_notes
        elif sub == "AT_ValidateConstraint":
            found = catalog.constraint(rel, cmd.name)
            if found is None:
                others.append(RelationLock("", "ROW SHARE", "the referenced table, if it is a foreign key"))
            elif found[1]:
                others.append(RelationLock(found[1], "ROW SHARE", "referenced table"))
        elif sub in ("AT_DropConstraint", "AT_AlterConstraint"):
            found = catalog.constraint(rel, cmd.name)
            if found is None and sub == "AT_DropConstraint" and (catalog.exists(rel) is not True or not cmd.missing_ok):
                others.append(RelationLock("", AE, "the referenced table, if it is a foreign key"))
            elif found and found[1]:
                others.append(RelationLock(found[1], AE if sub == "AT_DropConstraint" else "ROW SHARE",
                                           "referenced table"))
        elif sub == "AT_DropColumn":
            tables = catalog.foreign_keys_on(rel, cmd.name)
            if tables is None:
                others.append(RelationLock("", AE, "tables linked by a foreign key on the column, if any"))
            others += [RelationLock(t, AE, "table linked by a foreign key") for t in tables or ()]
        elif sub == "AT_AttachPartition":
            others.append(RelationLock(_name(cmd.def_.name), AE, "partition"))
            others.append(RelationLock("", AE, "the default partition, if any"))
        elif sub == "AT_DetachPartition":
            sub_mode = SUE if cmd.def_.concurrent else AE
            others.append(RelationLock(_name(cmd.def_.name), sub_mode, "partition"))
        elif sub in ("AT_AddInherit", "AT_DropInherit"):
            others.append(RelationLock(_name(cmd.def_), SUE if sub == "AT_AddInherit" else AE, "parent table"))
        mode = _max(mode, sub_mode)
    return Analysis((RelationLock(rel, mode),) + _dedup(others), _effect(*effects), tuple(notes))


def _dedup(locks) -> tuple[RelationLock, ...]:
    out: dict[tuple[str, str], RelationLock] = {}
    for lock in locks:
        key = (lock.relation, lock.what)
        if key not in out or LOCK_MODES.index(lock.mode) > LOCK_MODES.index(out[key].mode):
            out[key] = lock
    return tuple(out.values())


def _reloptions_lock(cmd) -> str:
    names = [d.defname for d in cmd.def_ or ()]
    return SUE if names and all(n in SUE_RELOPTIONS or n.startswith("autovacuum_") for n in names) else AE


def _add_column(rel: str, column, catalog: _Catalog) -> tuple[str, list[RelationLock], list[str]]:
    """ADD COLUMN rewrites when a row's value cannot be one stored default (PostgreSQL 11+): a volatile default,
    serial/identity (nextval), a stored generated column, or a domain type with constraints."""
    effects, others, notes = [], [], []
    type_parts = [n.lower() for n in _strings(column.typeName.names)]
    bare = type_parts[-1]
    has_default = False
    for con in column.constraints or ():
        contype = _enum(con.contype)
        if contype == "CONSTR_DEFAULT":
            has_default = True
            others += _sequences(con.raw_expr)
            volatile, why = _volatile(con.raw_expr, catalog)
            notes += why
            if volatile:
                effects.append("rewrite")
        elif contype in ("CONSTR_IDENTITY", "CONSTR_GENERATED"):
            effects.append("rewrite")
        elif contype == "CONSTR_FOREIGN":
            others.append(RelationLock(_name(con.pktable), SRE, "referenced table"))
            effects.append("scan")
        elif contype in ("CONSTR_CHECK", "CONSTR_UNIQUE", "CONSTR_PRIMARY", "CONSTR_EXCLUSION", "CONSTR_NOTNULL"):
            effects.append("scan")
    if bare in SERIAL_TYPES and (len(type_parts) == 1 or type_parts[0] == "pg_catalog"):
        effects.append("rewrite")
    elif not column.typeName.arrayBounds and not (type_parts[0] == "pg_catalog" or
                                                  (len(type_parts) == 1 and bare in BUILTIN_TYPES)):
        resolved = catalog.type_of(_typename(column.typeName))
        checks = catalog.domain_checks(resolved[0]) if resolved else None
        if checks is None:
            notes.append(f"type {'.'.join(type_parts)}: a domain with constraints would rewrite the table; "
                         "assumed one without the target")
            effects.append("rewrite")
        elif checks:
            effects.append("rewrite")
    if column.is_not_null and not has_default:
        effects.append("scan")
    if getattr(column, "identity", "\x00") not in ("\x00", "", None) or getattr(column, "generated", "\x00") == "s":
        effects.append("rewrite")
    return _effect(*effects), others, notes


# length-coercion support functions (varchar_support, numeric_support, TemporalSimplify, ...): a typmod change
# that cannot lose data is a relabel, not a rewrite
VARCHAR, VARBIT, NUMERIC = 1043, 1562, 1700
TEMPORAL = {1114, 1184, 1083, 1266}  # timestamp, timestamptz, time, timetz
TIMESTAMPS = {(1114, 1184), (1184, 1114)}


def _typmod_safe(type_oid: int, old: int, new: int) -> bool:
    if new == old or new < 0:
        return True
    if old < 0:
        return False
    if type_oid in (VARCHAR, VARBIT) or type_oid in TEMPORAL:
        return new >= old
    if type_oid == NUMERIC:
        return ((new - 4) & 0xFFFF) == ((old - 4) & 0xFFFF) and ((new - 4) >> 16) >= ((old - 4) >> 16)
    return False


def _column_type(rel: str, cmd, catalog: _Catalog) -> tuple[str, list[str]]:
    """ALTER COLUMN TYPE rewrites unless the new type is binary-coercible and the typmod cannot cut
    (varchar(n) -> text or varchar(m >= n), numeric(p,s) -> numeric(q >= p,s), ...). Needs the column's type."""
    column = cmd.def_
    using = column.raw_default
    if using is not None and not (isinstance(using, pglast.ast.ColumnRef)
                                  and _strings(using.fields)[-1:] == [cmd.name]):
        return "rewrite", []
    old = catalog.column(rel, cmd.name)
    new = catalog.type_of(_typename(column.typeName))
    if old is None or new is None:
        return "rewrite", ([] if catalog.conn is None else
                           [f"column {cmd.name}: type unknown on the target, assumed rewritten"])
    new_oid, new_mod = new
    if catalog.domain_checks(new_oid):
        return "rewrite", []
    base_oid, base_mod = catalog.base_type(new_oid)
    if base_oid != new_oid:
        new_oid, new_mod = base_oid, base_mod if new_mod < 0 else new_mod
    old_oid, old_mod = old
    base_oid, base_mod = catalog.base_type(old_oid)
    if base_oid != old_oid:
        old_oid, old_mod = base_oid, base_mod if old_mod < 0 else old_mod
    if old_oid == new_oid:
        return ("" if _typmod_safe(new_oid, old_mod, new_mod) else "rewrite"), []
    if (old_oid, new_oid) in TIMESTAMPS and _typmod_safe(new_oid, old_mod, new_mod):
        if catalog.utc():
            return "", ["timestamp <-> timestamptz is not rewritten while the session TimeZone is UTC"]
        return "rewrite", []
    if catalog.binary_cast(old_oid, new_oid) and new_mod < 0:
        return "", []
    return "rewrite", []


def _constraint(con) -> tuple[str, str, list[RelationLock]]:
    contype = _enum(con.contype)
    not_valid = bool(getattr(con, "skip_validation", False))
    if contype == "CONSTR_FOREIGN":
        return SRE, "" if not_valid else "scan", [RelationLock(_name(con.pktable), SRE, "referenced table")]
    if contype in ("CONSTR_UNIQUE", "CONSTR_PRIMARY", "CONSTR_EXCLUSION"):
        return AE, "" if getattr(con, "indexname", None) else "scan", []
    return AE, "" if not_valid else "scan", []


def _index(node, catalog) -> Analysis:
    mode = SUE if node.concurrent else SHARE
    return Analysis((RelationLock(_name(node.relation), mode),), "scan")


def _drop(node, catalog) -> Analysis:
    kind = _enum(node.removeType)
    cascade = _enum(node.behavior) == "DROP_CASCADE"
    mode = SUE if node.concurrent else AE
    extra = [RelationLock("", AE, "objects dropped by CASCADE")] if cascade else []
    names = [".".join(_strings(obj)) if isinstance(obj, (list, tuple)) else getattr(obj, "sval", "")
             for obj in node.objects or ()]
    if kind == "OBJECT_INDEX":
        locks = []
        for index in names:
            table = catalog.index_table(index)
            # CONCURRENTLY still takes ACCESS EXCLUSIVE on the index for its physical deletion, once it is
            # dead (no query plans with it any more): it waits for old transactions, blocks nobody new
            locks += [RelationLock(table or "", mode, "table" if table else "the index's table"),
                      RelationLock(index, AE, "index")]
        return Analysis(_dedup(locks + extra), "")
    if kind in ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE", "OBJECT_SEQUENCE"):
        locks = [RelationLock(n, AE) for n in names]
        for n in names:
            linked = catalog.foreign_keys_on(n) if kind == "OBJECT_TABLE" else []
            if linked is None:
                locks.append(RelationLock("", AE, "tables linked to it by a foreign key, if any"))
            locks += [RelationLock(t, AE, "table linked by a foreign key") for t in linked or ()]
        return Analysis(_dedup(locks + extra), "")
    if kind in ("OBJECT_TRIGGER", "OBJECT_POLICY", "OBJECT_RULE"):
        tables = [".".join(_strings(obj)[:-1]) for obj in node.objects or ()]
        return Analysis(_dedup([RelationLock(t, AE) for t in tables] + extra), "")
    if kind in ("OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_TYPE", "OBJECT_DOMAIN", "OBJECT_EXTENSION",
                "OBJECT_STATISTIC_EXT", "OBJECT_ROLE") and not cascade:
        return Analysis((), "")
    return Analysis((RelationLock("", AE, "every relation it drops"),), "",
                    () if cascade else ("DROP of this kind: assumed ACCESS EXCLUSIVE",))


def _reindex(node, catalog) -> Analysis:
    concurrent = any(getattr(p, "defname", "") == "concurrently" for p in node.params or ())
    # CONCURRENTLY: SHARE UPDATE EXCLUSIVE throughout, but dropping the old copy of each index at the end takes
    # ACCESS EXCLUSIVE on it (AcquireDeletionLock), briefly, which queries planning on the table wait for
    table_mode, index_mode = (SUE, AE) if concurrent else (SHARE, AE)
    kind = _enum(node.kind)
    if kind == "REINDEX_OBJECT_INDEX":
        index = _name(node.relation)
        table = catalog.index_table(index)
        return Analysis((RelationLock(table or "", table_mode, "table" if table else "the index's table"),
                         RelationLock(index, index_mode, "index")), "scan")
    if kind == "REINDEX_OBJECT_TABLE":
        table = _name(node.relation)
        return Analysis((RelationLock(table, table_mode), RelationLock(table, index_mode, "indexes")), "scan")
    return Analysis((RelationLock("", table_mode, "every table"), RelationLock("", index_mode, "every index")), "scan")


def _vacuum(node, catalog) -> Analysis:
    options = {getattr(o, "defname", "") for o in node.options or ()}
    tables = [_name(r.relation) for r in node.rels or ()] or [""]
    if node.is_vacuumcmd and "full" in options:
        return Analysis(tuple(RelationLock(t, AE) for t in tables), "rewrite")
    return Analysis(tuple(RelationLock(t, SUE) for t in tables), "scan" if node.is_vacuumcmd else "")


def _cluster(node, catalog) -> Analysis:
    table = _name(node.relation) if node.relation else ""
    return Analysis((RelationLock(table, AE, "table" if table else "every clustered table"),), "rewrite")


def _truncate(node, catalog) -> Analysis:
    locks = [RelationLock(_name(r), AE) for r in node.relations]
    if _enum(node.behavior) == "DROP_CASCADE":
        locks.append(RelationLock("", AE, "tables truncated by CASCADE"))
    return Analysis(tuple(locks), "rewrite")


def _lock(node, catalog) -> Analysis:
    mode = LOCK_MODES[node.mode - 1] if 1 <= node.mode <= 8 else AE
    return Analysis(tuple(RelationLock(_name(r), mode) for r in node.relations), "")


def _reads(node, first_mode: str = "ACCESS SHARE", effect: str = "") -> Analysis:
    names = _rangevars(node)
    return Analysis(tuple(RelationLock(n, first_mode if i == 0 else "ACCESS SHARE") for i, n in enumerate(names)),
                    effect)


def _dml(node, catalog) -> Analysis:
    target = _name(node.relation)
    others = [n for n in _rangevars(node) if n != target]
    kind = type(node).__name__
    effect = "" if getattr(node, "whereClause", None) is not None or kind == "InsertStmt" else "scan"
    notes = ()
    if not effect and kind in ("UpdateStmt", "DeleteStmt"):  # a WHERE no index serves reads every row all the same
        from airmigrate.scans import seq_scanned

        seq = seq_scanned(catalog.conn, node, target)
        effect = "scan" if seq else ""
        notes = ("no index serves the WHERE: the planner reads the whole table",) if seq else ()
    return Analysis((RelationLock(target, "ROW EXCLUSIVE"),) + tuple(RelationLock(n, "ACCESS SHARE") for n in others),
                    effect, notes)


def _select(node, catalog) -> Analysis:
    locking = any(isinstance(n, pglast.ast.LockingClause) for n in _walk(node))
    return _reads(node, "ROW SHARE" if locking else "ACCESS SHARE")


def _copy(node, catalog) -> Analysis:
    if node.relation is not None:
        return Analysis((RelationLock(_name(node.relation), "ROW EXCLUSIVE" if node.is_from else "ACCESS SHARE"),), "")
    return _reads(node.query)


def _create_table(node, catalog) -> Analysis:
    locks = []
    for parent in node.inhRelations or ():
        locks.append(RelationLock(_name(parent), AE if node.partbound is not None else SUE,
                                  "partitioned table" if node.partbound is not None else "parent table"))
    if node.partbound is not None:
        locks.append(RelationLock("", AE, "the default partition, if any"))
    for n in _walk(node.tableElts):
        if isinstance(n, pglast.ast.Constraint) and _enum(n.contype) == "CONSTR_FOREIGN":
            locks.append(RelationLock(_name(n.pktable), SRE, "referenced table"))
        elif isinstance(n, pglast.ast.TableLikeClause):
            locks.append(RelationLock(_name(n.relation), "ACCESS SHARE", "table copied by LIKE"))
    return Analysis(_dedup(locks), "")


def _create_table_as(node, catalog) -> Analysis:
    return _reads(node.query)


def _view(node, catalog) -> Analysis:
    reads = _reads(node.query).locks
    view = _name(node.view)
    if node.replace and catalog.exists(view) is not False:
        return Analysis((RelationLock(view, AE, "view"),) + reads, "")
    return Analysis(reads, "")


def _refresh(node, catalog) -> Analysis:
    view = _name(node.relation)
    if node.concurrent:
        return Analysis((RelationLock(view, "EXCLUSIVE", "materialized view"),
                         RelationLock("", "ACCESS SHARE", "the tables it reads")), "scan")
    return Analysis((RelationLock(view, AE, "materialized view"),
                     RelationLock("", "ACCESS SHARE", "the tables it reads")), "rewrite")


def _trigger(node, catalog) -> Analysis:
    locks = [RelationLock(_name(node.relation), SRE)]
    if node.constrrel is not None:
        locks.append(RelationLock(_name(node.constrrel), "ACCESS SHARE", "referenced table"))
    return Analysis(tuple(locks), "")


def _policy(node, catalog) -> Analysis:
    return Analysis((RelationLock(_name(node.table), AE),), "")


def _comment(node, catalog) -> Analysis:
    """COMMENT ON / SECURITY LABEL lock the relation they describe SHARE UPDATE EXCLUSIVE (get_object_address)."""
    kind = _enum(node.objtype)
    names = _strings(node.object) if isinstance(node.object, (list, tuple)) else []
    if kind in ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_INDEX", "OBJECT_SEQUENCE",
                "OBJECT_FOREIGN_TABLE"):
        return Analysis((RelationLock(".".join(names), SUE),), "")
    if kind in ("OBJECT_COLUMN", "OBJECT_TABCONSTRAINT", "OBJECT_TRIGGER", "OBJECT_POLICY", "OBJECT_RULE"):
        return Analysis((RelationLock(".".join(names[:-1]), SUE),), "")
    return Analysis((), "")


def _rename(node, catalog) -> Analysis:
    kind = _enum(node.renameType)
    if node.relation is None:
        return Analysis((), "")  # a function, type, schema, ...: catalog rows only
    rel = _name(node.relation)
    if kind == "OBJECT_INDEX":
        return Analysis((RelationLock(rel, SUE, "index"),), "")
    return Analysis((RelationLock(rel, AE),), "")


def _set_schema(node, catalog) -> Analysis:
    if node.relation is None:
        return Analysis((), "")
    rel = _name(node.relation)
    return Analysis((RelationLock(rel, AE), RelationLock(rel, AE, "indexes")), "")


def _statistics(node, catalog) -> Analysis:
    return Analysis(tuple(RelationLock(_name(r), SUE) for r in node.relations if isinstance(r, pglast.ast.RangeVar)),
                    "")


def _alter_sequence(node, catalog) -> Analysis:
    return Analysis((RelationLock(_name(node.sequence), SRE, "sequence"),), "")


def _no_lock(node, catalog) -> Analysis:
    return Analysis((), "")


_HANDLERS = {
    "AlterTableStmt": _alter_table, "IndexStmt": _index, "DropStmt": _drop, "ReindexStmt": _reindex,
    "VacuumStmt": _vacuum, "ClusterStmt": _cluster, "TruncateStmt": _truncate, "LockStmt": _lock,
    "UpdateStmt": _dml, "DeleteStmt": _dml, "InsertStmt": _dml, "SelectStmt": _select, "CopyStmt": _copy,
    "CreateStmt": _create_table, "CreateTableAsStmt": _create_table_as, "ViewStmt": _view,
    "RefreshMatViewStmt": _refresh, "CreateTrigStmt": _trigger, "CreatePolicyStmt": _policy,
    "AlterPolicyStmt": _policy, "CommentStmt": _comment, "SecLabelStmt": _comment, "RenameStmt": _rename,
    "AlterObjectSchemaStmt": _set_schema, "CreateStatsStmt": _statistics, "AlterSeqStmt": _alter_sequence,
    "GrantStmt": _no_lock, **dict.fromkeys(
        ["CreateFunctionStmt", "CreateSeqStmt", "VariableSetStmt", "VariableShowStmt", "CreateEnumStmt",
         "AlterEnumStmt", "CreateDomainStmt", "CompositeTypeStmt", "DefineStmt", "CreateRangeStmt",
         "TransactionStmt", "CreateRoleStmt", "AlterRoleStmt", "GrantRoleStmt", "AlterOwnerStmt",
         "AlterFunctionStmt", "CreateCastStmt", "CreateConversionStmt"], _no_lock),
}


class NotNullProofs:
    """SET NOT NULL scans the table unless a validated CHECK (col IS NOT NULL) proves it (PostgreSQL 12+): the
    recipe add_column's contract follows. Fed the statements in run order, it tells which SET NOT NULL is free."""

    def __init__(self):
        self.checks: dict[str, str] = {}   # constraint name -> column it proves NOT NULL once validated
        self.validated: set[str] = set()

    def skips_scan(self, statement: str) -> bool:
        node = pglast.parse_sql(bound_placeholders(statement))[0].stmt
        if type(node).__name__ == "RenameStmt" and node.renameType.name == "OBJECT_COLUMN":
            if node.subname in self.validated:  # the proof follows the column (a replacement's swap)
                self.validated = (self.validated - {node.subname}) | {node.newname}
            return False
        if type(node).__name__ != "AlterTableStmt":
            return False
        free = False
        for cmd in node.cmds or ():
            kind = cmd.subtype.name
            if kind == "AT_AddConstraint" and cmd.def_.contype.name == "CONSTR_CHECK":
                expr = cmd.def_.raw_expr
                if type(expr).__name__ == "NullTest" and expr.nulltesttype.name == "IS_NOT_NULL" \
                        and type(expr.arg).__name__ == "ColumnRef":
                    self.checks[cmd.def_.conname] = expr.arg.fields[-1].sval
            elif kind == "AT_ValidateConstraint" and cmd.name in self.checks:
                self.validated.add(self.checks[cmd.name])
            elif kind == "AT_SetNotNull":
                free = cmd.name in self.validated
        return free


def sync_trigger_sql(migration: Migration) -> tuple[list[str], list[str]]:
    """The `backfill.sync` trigger's (install, drop) statements: the ones the backfill stage runs."""
    from airmigrate.stages.backfill import sync_trigger_sql as statements

    return statements(migration)


def static_plan(migration: Migration, conn=None) -> list[PlannedStatement]:
    """Every statement in run order, with the lock it takes and whether it scans or rewrites. With ``conn``
    (the target) column types, function volatility and domains are looked up instead of assumed, and the
    operations' statements are generated with the target's column types and the structure they carry over,
    exactly as the stages run them."""
    steps = _steps(migration, conn)
    install, drop = sync_trigger_sql(migration)
    parts = [("schema_change", db.split_statements(migration.up_sql) + steps.expand),
             ("backfill.plan", install),
             ("backfill (per batch)", [_unbound(s) for s in db.split_statements(bound_placeholders(
                 "\n;".join(_backfill_sql(migration, steps))))]),
             ("cleanup", drop + db.split_statements(migration.cleanup_sql or "") + steps.contract)]
    planned, proven = [], NotNullProofs()
    for stage, statements in parts:
        for statement in statements:
            analysis = analyze(statement, conn)
            effect = "" if proven.skips_scan(statement) else analysis.effect
            also = _elsewhere(analysis, migration.spec.table_name) + analysis.notes
            planned.append(PlannedStatement(stage, statement, analysis.lock, effect,
                                            not db.needs_autocommit(bound_placeholders(statement)), also))
    return planned


def _elsewhere(analysis: Analysis, table: str) -> tuple[str, ...]:
    """The locks besides the headline one, and any lock on another table than the migration's, said so."""
    out = []
    for i, lock in enumerate(analysis.locks):
        other = bool(lock.relation) and lock.relation.split(".")[-1].strip('"').lower() != table.lower()
        if i == 0 and not other:
            continue
        out.append(f"{lock}" + (f" (another table than {table})" if other and lock.what != "index" else ""))
    return tuple(out)


def estimate(conn, migration: Migration) -> dict:
    """Rows (planner estimate), batches, and rows/s measured on this target's earlier batches."""
    spec = migration.spec
    from airmigrate.db import estimate_rows

    rows = estimate_rows(conn, spec.schema_name, spec.table_name)
    measured = None
    if conn.execute("SELECT to_regclass('airmigrate.batches')").fetchone()[0]:
        # this migration's own recent batches when it has any (a re-plan after a rollback), else the target's
        measured = conn.execute(
            "SELECT sum(rows) / nullif(sum(extract(epoch FROM finished_at - started_at)), 0) FROM "
            "(SELECT b.rows, b.started_at, b.finished_at FROM airmigrate.batches b JOIN airmigrate.runs r "
            "USING (run_id) WHERE b.status = 'succeeded' AND b.rows > 0 "
            "ORDER BY r.migration_id = %s DESC, b.finished_at DESC LIMIT 200) recent", (migration.id,)).fetchone()[0]
    backfills = bool(spec.backfill or operations.for_migration(migration).backfill)
    batches = -(-rows // spec.batch_size) if backfills else 0
    rate = float(measured) * spec.shards if measured else None
    return {"rows": rows, "batches": batches, "rows_per_s": rate, "eta_s": (rows / rate) if rate and backfills else None,
            "backfills": backfills}


def render(migration: Migration, planned: list[PlannedStatement], est: dict | None = None) -> str:
    spec = migration.spec
    lines = [f"plan for {migration.id} on {spec.table} (lock_timeout {spec.lock_timeout_ms} ms, "
             f"statement_timeout {spec.statement_timeout_ms} ms, up to {spec.ddl_attempts} attempts)"]
    for i, p in enumerate(planned, 1):
        where = "own transaction (autocommit)" if not p.transactional else "transaction"
        effect = {"scan": "scans the table", "rewrite": "REWRITES the table", "": "no scan"}[p.effect]
        warn = "  <-- blocks writes while it runs" if p.blocks_writes else ""
        lines.append(f"{i:>3}. [{p.stage}] {_one_line(p.sql)}\n       lock {p.lock}; {effect}; {where}{warn}")
        lines += [f"       also: {extra}" for extra in p.also]
    if est and not est.get("backfills", True):
        lines.append(f"rows ~{est['rows']:,} (planner estimate); no backfill: nothing is written row by row")
    elif est:
        eta = f"{est['eta_s'] / 60:.1f} min at {est['rows_per_s']:,.0f} rows/s measured" if est["eta_s"] \
            else "no throughput measured on this target yet"
        lines.append(f"rows ~{est['rows']:,} (planner estimate); {est['batches']:,} batches of "
                     f"{spec.batch_size:,} on {spec.shards} shards; backfill ETA: {eta}")
    from airmigrate.lifecycle.migrate import render_app_versions  # expand now, contract later: when to deploy what

    lines += render_app_versions(migration)
    return "\n".join(lines)


def render_sql(migration: Migration, conn=None) -> str:
    """Exactly the SQL that will run, with its timeouts and transaction boundaries (like Alembic --sql). With
    ``conn`` (the target) the generated statements carry the column types read from it, as at run time;
    without it they show `text` where the type comes from the target."""
    spec = migration.spec
    steps = _steps(migration, conn)
    out = [f"-- {migration.id}: SQL as airmigrate runs it"
           + ("" if conn is not None or not spec.operations else
              " (offline: generated columns whose type comes from the target show `text`)")]
    install, drop = sync_trigger_sql(migration)
    for stage, statements in (("schema_change", db.split_statements(migration.up_sql) + steps.expand),
                              ("cleanup", drop + db.split_statements(migration.cleanup_sql or "") + steps.contract)):
        out.append(f"\n-- stage {stage}")
        for autocommit, group in db.group_statements(statements):
            timeouts = [f"SET {'' if autocommit else 'LOCAL '}lock_timeout = '{spec.lock_timeout_ms}ms';",
                        f"SET {'' if autocommit else 'LOCAL '}statement_timeout = '{spec.statement_timeout_ms}ms';"]
            body = [s + ";" for s in group]
            out += (timeouts + body) if autocommit else (["BEGIN;"] + timeouts + body + ["COMMIT;"])
        if stage == "schema_change" and install:  # installed with the backfill's cursor, before the first batch
            out += ["\n-- stage backfill.plan: the sync trigger keeps rows written meanwhile right", "BEGIN;"] + \
                [i + ";" for i in install] + ["COMMIT;"]
        if stage == "schema_change" and (backfill := _backfill_sql(migration, steps)):
            out.append("\n-- stage backfill: once per batch, each in its own transaction with its state row")
            out += ["BEGIN;"] + [b + ";" for b in backfill] + ["COMMIT;"]
    return "\n".join(out) + "\n"


def _steps(migration: Migration, conn=None, live_columns: frozenset[str] | None = None):
    """The operations' steps: resolved against the target like the stages do, or static without it."""
    if conn is None:
        return operations.for_migration(migration)
    from airmigrate.stages.generated import runtime_steps

    return runtime_steps(conn, migration, live_columns)


def rollback_phases(migration: Migration, conn=None) -> list[tuple[str, list[str]]]:
    """The rollback DAG's statements by phase, as stages.rollback runs them: down DDL, the per-batch copy-back
    (the operations' copy-back, then the snapshot restore of overwritten values), the finishing DDL. With
    ``conn`` the table's shape now picks each operation's path (before or after the contract); without it the
    longer, after-the-contract path is shown."""
    from airmigrate.stages.generated import column_types, restore_statement, snapshot_columns

    spec = migration.spec
    live = frozenset(column_types(conn, spec.schema_name, spec.table_name)) if conn is not None else None
    steps = _steps(migration, conn, live)
    copy_back = list(steps.down_backfill)
    if conn is not None and conn.execute("SELECT to_regclass('airmigrate.history')").fetchone()[0] is not None:
        row = conn.execute("SELECT snapshot_table FROM airmigrate.history WHERE migration_id = %s",
                           (migration.id,)).fetchone()
        snapshot = row[0] if row else None
        restore = restore_statement(migration, snapshot, [c for c in snapshot_columns(conn, migration, snapshot)
                                                          if c not in steps.self_restored]) if snapshot else None
        copy_back += [restore] if restore else []
    elif spec.backfill or steps.backfill_columns or steps.dropped_columns:
        from airmigrate.operations.base import snapshot_name

        columns = [c for c in [*(spec.backfill.columns if spec.backfill else []), *steps.backfill_columns,
                               *steps.dropped_columns] if c not in steps.self_restored]
        restore = restore_statement(migration, snapshot_name(migration.id), list(dict.fromkeys(columns)))
        copy_back += [restore] if restore else []
    return [("down", sync_trigger_sql(migration)[1] + db.split_statements(migration.down_sql or "") + steps.down),
            ("copy-back (per batch)", copy_back),
            ("finish", list(steps.down_contract))]


def render_rollback(migration: Migration, conn=None, sql: bool = False) -> str:
    """The rollback plan: each phase's statements with the lock each takes (``sql``: as a runnable script with
    its timeouts and transaction boundaries, the locks as comments)."""
    spec = migration.spec
    note = "" if conn is not None else " (offline: the path after the contract is shown; types show `text`)"
    out = [f"-- rollback of {migration.id} ({migration.rollback_dag_id}){note}" if sql else
           f"rollback plan for {migration.id} ({migration.rollback_dag_id}) on {spec.table}{note}"]
    number = 0
    for phase, statements in rollback_phases(migration, conn):
        batch = phase.startswith("copy-back")
        out.append(f"\n-- phase {phase}" if sql else f"phase {phase}:")
        if not statements:
            out.append("-- (nothing)" if sql else "       (nothing)")
            continue
        groups = [(False, statements)] if batch else db.group_statements(statements)
        for autocommit, group in groups:
            if sql:
                prefix = "" if autocommit else "LOCAL "
                out += ([] if autocommit else ["BEGIN;"]) + (
                    [] if batch else [f"SET {prefix}lock_timeout = '{spec.lock_timeout_ms}ms';",
                                      f"SET {prefix}statement_timeout = '{spec.statement_timeout_ms}ms';"])
            for statement in group:
                analysis = analyze(statement, conn)
                effect = {"scan": "scans the table", "rewrite": "REWRITES the table", "": "no scan"}[analysis.effect]
                lock = f"lock {analysis.lock}; {effect}"
                also = [str(x) for x in _elsewhere(analysis, spec.table_name) + analysis.notes]
                if sql:
                    out += [f"-- {lock}"] + [f"--   also: {x}" for x in also] + [statement + ";"]
                else:
                    number += 1
                    where = "each batch its own transaction" if batch else \
                        ("own transaction (autocommit)" if autocommit else "transaction")
                    warn = "  <-- blocks writes while it runs" if analysis.lock in WRITE_BLOCKING and \
                        analysis.effect else ""
                    out.append(f"{number:>3}. [{phase}] {_one_line(statement)}\n       {lock}; {where}{warn}")
                    out += [f"       also: {x}" for x in also]
            if sql and not autocommit:
                out.append("COMMIT;")
    return "\n".join(out) + "\n"


def _unbound(statement: str) -> str:
    """Back from the quoted form the parser needed to the placeholders that run (for display)."""
    return re.sub(r"'(%\((?:lo|hi)(?:_\d+)?\)s)'", r"\1", statement)


def _backfill_sql(migration: Migration, steps) -> list[str]:
    """The per-batch statements: the user's UPDATE, or the pandas path's SQL around transform(df)."""
    if migration.transform_file:
        from airmigrate.stages.backfill.transform import transform_statements

        pandas = {name: statement.as_string() for name, statement in transform_statements(migration).items()}
        return [pandas["read"], f"-- transform(df) from {migration.transform_file.name}, in the worker\n{pandas['temp']}",
                pandas["copy"], f"-- (the transformed rows, streamed by COPY)\n{pandas['update']}"] + steps.backfill
    user = [migration.backfill_sql.strip().rstrip(";")] if migration.backfill_sql else []
    return user + steps.backfill


def _one_line(statement: str) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= 110 else text[:107] + "..."
