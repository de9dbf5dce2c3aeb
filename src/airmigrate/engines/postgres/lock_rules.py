"""Which lock each statement takes and whether it scans or rewrites the table, read from pglast's parse tree
(one rule per statement kind; PostgreSQL's "Explicit Locking" and ALTER TABLE docs). The engine's
``analyze``; NotNullProofs says which SET NOT NULL a validated CHECK makes free."""

from __future__ import annotations

import pglast

from airmigrate.engines.postgres.lock_model import (
    AE,
    ALTER_EFFECTS,
    ALTER_LOCKS,
    BUILTIN_TYPES,
    LOCK_MODES,
    SERIAL_TYPES,
    SHARE,
    SRE,
    SUE,
    SUE_RELOPTIONS,
    UNKNOWN,
    Analysis,
    RelationLock,
    _Catalog,
    _effect,
    _enum,
    _max,
    _name,
    _rangevars,
    _sequences,
    _strings,
    _typename,
    _volatile,
    _walk,
)
from airmigrate.engines.postgres.scans import seq_scanned
from airmigrate.sqlfiles import bound_placeholders


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
