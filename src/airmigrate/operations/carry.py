"""Carry a column's structure over to its replacement, the lock-safe way, and say what cannot be carried.

An operation that replaces a column (change_column_type, rename_column) or moves it to another table
(split_table), and the rollback paths that bring the original back, would otherwise lose everything the
old column had when the old one is dropped. :func:`carry_column` rebuilds all of it on the replacement:

- ``build`` (before the swap, while the sync trigger still runs): every index using the column, including
  the indexes of its UNIQUE constraints, ``CREATE [UNIQUE] INDEX CONCURRENTLY`` under a temporary name;
  its CHECKs and foreign keys ``ADD CONSTRAINT ... NOT VALID`` then ``VALIDATE CONSTRAINT``; NOT NULL as a
  validated ``CHECK (col IS NOT NULL)``;
- ``release`` (first in the swap's short transaction): the other tables' foreign keys referencing the
  column are dropped, or the old column could not go;
- ``finish`` (in the swap's short transaction, once the old column is gone): ``SET NOT NULL`` (no scan:
  the validated CHECK proves it) and that CHECK dropped, UNIQUE constraints attached ``USING INDEX``, every
  index and constraint renamed to its original name, the default, comment, column grants and statistics
  target set again, the other tables' foreign keys added back ``NOT VALID``; then (own transactions)
  those foreign keys validated.

:func:`refusals` lists what cannot be carried safely (primary key, identity and generated columns, views
and generated columns computed from it, exclusion constraints; for a split also objects spanning moved and
kept columns and other tables' foreign keys to a moved column), each with its reason and fix; preflight
refuses.
The input is :func:`airmigrate.structure.read_table` of the table as it was before the migration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from airmigrate import engines
from airmigrate.engines import sql
from airmigrate.operations.base import ident, mirror_index, s

SUFFIX = "__am"


@dataclass
class Carry:
    build: list[str] = field(default_factory=list)
    release: list[str] = field(default_factory=list)
    finish: list[str] = field(default_factory=list)


_TEXT_TYPES = re.compile(r"^\s*(text|varchar|character varying|char|character|bpchar|citext|name)\b", re.I)


def collate(info: dict | None, column: str, new_type: str | None = None) -> str:
    """` COLLATE x` for a replacement of `column` when it had a collation other than its type's default
    (empty otherwise, and when `new_type` is not a string type a collation could apply to)."""
    collation = ((info or {}).get("columns", {}).get(column) or {}).get("collation")
    if not collation or (new_type is not None and not _TEXT_TYPES.match(new_type)):
        return ""
    return f" COLLATE {collation}"


def temporary(name: str) -> str:
    """The name an object is built under while the original still holds its name (at most 63 bytes)."""
    return f"{name[:59]}{SUFFIX}"


def carry_column(info: dict | None, column: str, onto: str, final: str, table: tuple[str, str] | None = None,
                 extra_columns: tuple[str, ...] = (), new_type: str | None = None) -> Carry:
    """Statements rebuilding everything `column` has in `info` on column `onto` of `table` (default: the same
    table), which is called `final` once the swap is done. `extra_columns` (a split's other moved columns and
    key) may appear in the same objects and keep their names. `new_type`: the replacement's type when it differs
    (an engine restating the column's definition needs it)."""
    if not info or column not in info["columns"]:
        return Carry()
    own = None if table else engines.current().carry_column_sql(info, column, onto, final, new_type)
    if own is not None:  # the engine's own way (MySQL: no NOT VALID, no CONCURRENTLY)
        return Carry(*own)
    schema, name = table or (info["schema"], info["table"])
    qualified, carry = ident(schema, name), Carry()
    # on another table only objects over the moved columns can be built (preflight refuses the others)
    fits = (lambda used: set(used) <= {column, *extra_columns}) if table else (lambda used: True)
    relation = (schema, name) if table else None
    for index_name, index in sorted(info["indexes"].items()):  # recorded as jsonb: its key order is not ours
        if column in index["columns"] and not index["constraint"] and "INVALID" not in index["definition"]:
            if fits(index["columns"]):
                _index(carry, schema, index_name, index["definition"], column, onto, relation)
    for con_name, con in sorted(info["constraints"].items()):
        if column not in con["columns"] or not fits(con["columns"]):
            continue
        if con["kind"] == "u":
            _index(carry, schema, con_name, con["index"], column, onto, relation, constraint=True)
            deferral = "".join(f" {w}" for w in ("DEFERRABLE", "INITIALLY DEFERRED") if w in con["definition"])
            carry.finish.append(s("ALTER TABLE {t} ADD CONSTRAINT {c} UNIQUE USING INDEX {i}" + deferral,
                                  t=qualified, c=ident(con_name), i=ident(temporary(con_name))))
        elif con["kind"] in ("c", "f"):
            carry.build.extend(_constraint(qualified, con_name, con["definition"], column, onto))
            carry.finish.append(s("ALTER TABLE {t} RENAME CONSTRAINT {tmp} TO {c}", t=qualified,
                                  tmp=ident(temporary(con_name)), c=ident(con_name)))
    carry.finish.extend(_column_properties(info["columns"][column], (schema, name), column, onto, final, carry))
    sequence = info["columns"][column].get("owns_sequence")
    if sequence:  # a serial column's sequence would be dropped with the old column: the replacement owns it
        carry.release.append(s("ALTER SEQUENCE " + sequence + " OWNED BY {c}", c=ident(schema, name, onto)))
    if table is None:  # the same table: other tables' foreign keys follow the column to its replacement
        _referencing(carry, info, column, final)
    return carry


def _referencing(carry: Carry, info: dict, column: str, final: str) -> None:
    """Another table's foreign key on the column is dropped before the old column goes and added back on the
    replacement NOT VALID in the same transaction (new writes are checked at once), then validated, each in its
    own transaction after the swap (all of them re-added first: none stays missing while another validates)."""
    validations = []
    for _, fk in sorted(info.get("referenced_by", {}).items()):
        if column not in fk["columns"] or "table" not in fk:
            continue
        other = ident(*fk["table"])
        added = s("ALTER TABLE {t} ADD CONSTRAINT {c} ", t=other, c=ident(fk["name"])) + fk["definition"]
        was_valid = not fk["definition"].endswith("NOT VALID")
        carry.release.append(s("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {c}", t=other, c=ident(fk["name"])))
        carry.finish.append(engines.current().foreign_key_not_valid(added, column, final))
        if was_valid:
            validations.append(s("ALTER TABLE {t} VALIDATE CONSTRAINT {c}", t=other, c=ident(fk["name"])))
    carry.finish.extend(validations)


def _index(carry: Carry, schema: str, name: str, definition: str, column: str, onto: str,
           relation: tuple[str, str] | None, constraint: bool = False) -> None:
    """The index built concurrently on `onto` under a temporary name, renamed back at the swap (a UNIQUE
    constraint's index is renamed by ``ADD CONSTRAINT ... USING INDEX`` instead)."""
    carry.build.append(mirror_index(definition, column, onto, temporary(name), relation))
    if not constraint:
        carry.finish.append(s("ALTER INDEX IF EXISTS {tmp} RENAME TO {i}", tmp=ident(schema, temporary(name)),
                              i=ident(name)))


def probe(info: dict | None, column: str, new_type: str) -> list[str]:
    """Statements that fail, on an empty temporary copy of the table, exactly when the column's default, CHECKs
    or indexes cannot apply to `new_type` (`lower(col)` on an integer, say): preflight runs them in a
    transaction it rolls back, so the contract never finds out after hours of backfill."""
    if not info or column not in info["columns"]:
        return []
    own = engines.current().type_change_probe(info, column, new_type)
    if own is not None:
        return own
    out = [s("CREATE TEMP TABLE am_probe (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DROP",
             t=ident(info["schema"], info["table"])),
           s("ALTER TABLE am_probe ALTER COLUMN {c} TYPE " + new_type + " USING NULL", c=ident(column))]
    for n, (_, con) in enumerate(sorted(info["constraints"].items())):
        if column in con["columns"] and con["kind"] == "c":
            out.append(s("ALTER TABLE am_probe ADD CONSTRAINT {c} ", c=ident(f"am_probe_{n}")) + con["definition"])
    definitions = [i["definition"] for _, i in sorted(info["indexes"].items()) if column in i["columns"]]
    for n, definition in enumerate(definitions):
        out.append(engines.current().index_on(definition.removesuffix(" -- INVALID"), f"am_probe_i{n}", "am_probe"))
    return out


def _constraint(qualified, name: str, definition: str, column: str, onto: str) -> list[str]:
    """ADD CONSTRAINT <temporary> ... NOT VALID, then VALIDATE (two transactions: the strong lock is instant,
    the scan holds a weak one). A constraint that was NOT VALID stays so (what was there, no more)."""
    was_valid = not definition.endswith("NOT VALID")
    added = s("ALTER TABLE {t} ADD CONSTRAINT {c} ", t=qualified, c=ident(temporary(name))) + definition
    out = [engines.current().constraint_not_valid(added, column, onto)]
    if was_valid:
        out.append(s("ALTER TABLE {t} VALIDATE CONSTRAINT {c}", t=qualified, c=ident(temporary(name))))
    return out


def _column_properties(col: dict, table: tuple[str, str], column: str, onto: str, final: str,
                       carry: Carry) -> list[str]:
    """NOT NULL (through a validated CHECK built before the swap), default, comment, grants, statistics."""
    finish, target, qualified = [], ident(final), ident(*table)
    if col["not_null"]:
        check = temporary(f"{column[:40]}_not_null")
        carry.build += [s("ALTER TABLE {t} ADD CONSTRAINT {c} CHECK ({o} IS NOT NULL) NOT VALID", t=qualified,
                          c=ident(check), o=ident(onto)),
                        s("ALTER TABLE {t} VALIDATE CONSTRAINT {c}", t=qualified, c=ident(check))]
        finish += [s("ALTER TABLE {t} ALTER COLUMN {f} SET NOT NULL", t=qualified, f=target),
                   s("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {c}", t=qualified, c=ident(check))]
    if col["default"] is not None and not col["generated"]:
        finish.append(s("ALTER TABLE {t} ALTER COLUMN {f} SET DEFAULT ", t=qualified, f=target) + col["default"])
    if col["comment"] is not None:
        finish.append(s("COMMENT ON COLUMN {c} IS {text}", c=ident(*table, final), text=sql.Literal(col["comment"])))
    for grant in col["privileges"]:
        grantee, privilege, *option = grant.split(" ", 2)
        finish.append(s("GRANT " + privilege + " ({f}) ON {t} TO " + grantee + (" WITH GRANT OPTION" if option else ""),
                        f=target, t=qualified))
    if col["statistics"] is not None:
        finish.append(s("ALTER TABLE {t} ALTER COLUMN {f} SET STATISTICS " + str(int(col["statistics"])),
                        t=qualified, f=target))
    return finish


def refusals(info: dict | None, columns: list[str], key: tuple[str, ...] = (), moving: bool = False) -> list[str]:
    """Why `columns` cannot be replaced (or, `moving`, moved to a new table keyed by `key`) without losing
    something, each with the fix; empty when everything can be carried over."""
    if not info:
        return []
    out = []
    table = f"{info['schema']}.{info['table']}"
    for column in columns:
        col = info["columns"].get(column)
        if col is None:
            continue
        if not moving:
            out += engines.current().replacement_refusals(info, column)
        if col["identity"]:
            out.append(f"{table}.{column} is an identity column: a replacement column cannot take over its "
                       "sequence safely. Keep the column, or drop the identity first (ALTER COLUMN ... DROP IDENTITY) "
                       "in an earlier migration")
        if col["generated"] and moving:
            out.append(f"{table}.{column} is a generated column: the new table would hold a plain copy of its values "
                       "that no longer follows what it is computed from. Leave it in place, or drop it first (in an "
                       "earlier migration) and add it to the new table afterwards, computed from the new table's "
                       "columns")
        elif col["generated"]:
            out.append(f"{table}.{column} is a generated column: change its expression with a new generated "
                       "column (add_column) instead")
        for what in info.get("dependents", {}).get(column, []):
            out.append(f"{what} depends on {table}.{column}: dropping the old column would drop it or fail. "
                       "Drop it first in an earlier migration, and create it again on the new column afterwards")
        for name, con in info["constraints"].items():
            if column not in con["columns"]:
                continue
            if con["kind"] == "p":
                out.append(f"{table}.{column} is part of the primary key {name}: a replacement column cannot take "
                           "it over without a long lock. Change the key in a dedicated migration (a new unique "
                           "NOT NULL column, then ADD PRIMARY KEY USING INDEX), or leave this column alone")
            elif con["kind"] == "x":
                out.append(f"exclusion constraint {name} uses {table}.{column}: it cannot be rebuilt without a long "
                           "lock. Drop it in an earlier migration and add it again afterwards")
            elif moving and not set(con["columns"]) <= {*columns, *key}:
                out.append(f"constraint {name} spans moved and staying columns ({', '.join(con['columns'])}): it "
                           "cannot live on either table. Drop it first, or move all its columns")
        for name, fk in info.get("referenced_by", {}).items():
            if moving and column in fk["columns"]:
                out.append(f"foreign key {name} ({fk['definition']}) references {table}.{column}: it cannot follow "
                           f"the column to another table. Drop that foreign key first (and add it again on the "
                           "new table afterwards), or leave this column alone")
        if moving:
            for name, index in info["indexes"].items():
                if column in index["columns"] and not set(index["columns"]) <= {*columns, *key}:
                    out.append(f"index {name} spans moved and staying columns ({', '.join(index['columns'])}): it "
                               "cannot live on either table. Drop it first, or move all its columns")
    return list(dict.fromkeys(out))


__all__ = ["Carry", "carry_column", "refusals", "temporary", "probe", "collate"]
