"""The column operations' MySQL / MariaDB building blocks (add_column, rename_column, change_column_type,
drop_column).

Where PostgreSQL has one trigger function for ``INSERT OR UPDATE`` branching on ``TG_OP``, MySQL has one trigger
per event: a row trigger here is two, ``<name>_i`` (BEFORE INSERT) and ``<name>_u`` (BEFORE UPDATE), each
``SET NEW.c = ...`` (with ``IF ... ELSEIF`` where the rule has conditions). They are made by ``DROP TRIGGER IF
EXISTS`` then ``CREATE TRIGGER`` (MySQL 8 has no ``CREATE OR REPLACE TRIGGER``; a re-run of the expand makes
them again). ``IS DISTINCT FROM`` is ``NOT (CAST(a AS BINARY) <=> CAST(b AS BINARY))`` (:func:`distinct`); a
conversion is the assignment itself (the server converts, and refuses a value that does not fit in strict mode); NOT NULL is one ``MODIFY COLUMN`` restating the
column's definition, ``ALGORITHM=INPLACE, LOCK=NONE`` (writes go on; the server refuses it if a NULL is left).
"""

from __future__ import annotations

import hashlib
import re

from airmigrate.engines import sql
from airmigrate.engines.mysql.connection import render

MAX_NAME = 64  # bytes of a MySQL identifier


def _s(template: str, **parts) -> str:
    return render(sql.SQL(template).format(**parts))


def trigger_names(name: str) -> tuple[str, str]:
    """(insert trigger, update trigger) of the row trigger `name`, each at most 64 bytes (a long name keeps a
    hash of itself, so two long names never meet)."""
    if len(name) > MAX_NAME - 2:
        name = name[:MAX_NAME - 11] + "_" + hashlib.md5(name.encode()).hexdigest()[:8]
    return f"{name}_i", f"{name}_u"


def _row_triggers(name: str, table: tuple[str, str], on_insert: str, on_update: str) -> list[str]:
    """The two BEFORE triggers with their bodies (one statement, or BEGIN ... END)."""
    out = drop_row_trigger(name, table)
    for trigger, event, body in zip(trigger_names(name), ("INSERT", "UPDATE"), (on_insert, on_update)):
        out.append(_s("CREATE TRIGGER {trg} BEFORE " + event + " ON {tbl} FOR EACH ROW {body}",
                      trg=sql.Identifier(table[0], trigger), tbl=sql.Identifier(*table), body=sql.SQL(body)))
    return out


def _set(column: str, value: str) -> str:
    return _s("SET NEW.{c} = {v}", c=sql.Identifier(column), v=sql.SQL(value))


def computed_column_trigger(name: str, table: tuple[str, str], column: str, expression: str) -> list[str]:
    """`expression` is already read from the row (``on_record``): on every insert and update."""
    body = _set(column, expression)
    return _row_triggers(name, table, body, body)


def two_way_sync_trigger(name: str, table: tuple[str, str], old: str, new: str) -> list[str]:
    """On INSERT fill whichever is missing; on UPDATE copy the side that changed (the old one first)."""
    o, n = (_s("NEW.{c}", c=sql.Identifier(c)) for c in (old, new))
    was_o, was_n = (_s("OLD.{c}", c=sql.Identifier(c)) for c in (old, new))
    on_insert = (f"BEGIN IF {n} IS NULL THEN {_set(new, o)}; ELSEIF {o} IS NULL THEN {_set(old, n)}; END IF; END")
    on_update = (f"BEGIN IF {distinct(o, was_o)} THEN {_set(new, o)}; ELSEIF {distinct(n, was_n)} THEN "
                 f"{_set(old, n)}; END IF; END")
    return _row_triggers(name, table, on_insert, on_update)


def cast_back_trigger(name: str, table: tuple[str, str], source: str, target: str, type_: str) -> list[str]:
    """Only a value the application writes now (an insert, or a changed `source`) is copied into `target`, whose
    type converts it."""
    o, was_o = _s("NEW.{c}", c=sql.Identifier(source)), _s("OLD.{c}", c=sql.Identifier(source))
    return _row_triggers(name, table, _set(target, o), f"BEGIN IF {distinct(o, was_o)} THEN {_set(target, o)}; "
                                                       "END IF; END")


def drop_row_trigger(name: str, table: tuple[str, str]) -> list[str]:
    return [_s("DROP TRIGGER IF EXISTS {trg}", trg=sql.Identifier(table[0], trigger))
            for trigger in trigger_names(name)]


def distinct(a: str, b: str) -> str:
    """NULL-safe inequality, byte for byte: ``<=>`` is MySQL's NULL-safe equality, and both sides as binary strings
    because a case-insensitive collation (utf8mb4_general_ci, the default) finds 'Row' equal to 'ROW': the sync
    trigger would not copy an application's change of case, nor the backfill a value differing only in case (a
    lost write). Two equal values written differently (1.5 and 1.50) read as distinct: one more write, never one
    fewer."""
    return f"NOT (CAST({a} AS BINARY) <=> CAST({b} AS BINARY))"


def cast(expression: str, type_: str) -> str:
    """MySQL's CAST knows only a few target types (SIGNED, CHAR, DECIMAL, ...): the assignment to the column of
    the new type converts instead (strict mode refuses what does not fit, as a failed batch naming the row)."""
    return expression


def set_not_null(table: tuple[str, str], column: str, type_: str, default: str | None) -> list[str]:
    """One MODIFY COLUMN restating the column's type and default with NOT NULL; in place, writes going on (the
    server checks the rows while the application writes, and refuses when a NULL is left)."""
    default_clause = f" DEFAULT {default}" if default is not None else ""
    return [_s("ALTER TABLE {t} MODIFY COLUMN {c} " + type_ + " NOT NULL" + default_clause
               + ", ALGORITHM=INPLACE, LOCK=NONE", t=sql.Identifier(*table), c=sql.Identifier(column))]


def swap_columns(table: tuple[str, str], trigger: str, old: str, new: str, retired: str) -> list[str]:
    """MySQL commits around every DDL statement: between dropping the sync trigger and renaming, a write of the
    application would reach `old` only. So the table is write-locked for the moment of the two (instant)
    statements: ``LOCK TABLES`` (waits at most the lock wait limit), the triggers dropped, both renames in one
    ALTER, ``UNLOCK TABLES``; the executor runs the group in one session (parsing.group_statements)."""
    tbl = sql.Identifier(*table)
    return ([_s("LOCK TABLES {t} WRITE", t=tbl)] + drop_row_trigger(trigger, table)
            + [_s("ALTER TABLE {t} RENAME COLUMN {o} TO {r}, RENAME COLUMN {n} TO {o}, ALGORITHM=INSTANT, LOCK=NONE",
                  t=tbl, o=sql.Identifier(old), r=sql.Identifier(retired), n=sql.Identifier(new)),
               "UNLOCK TABLES"])


def column_definition(info: dict, not_null: bool) -> str:
    """A column's definition as read by catalog.read_table (type, collation, NULL, default, comment) for ADD or
    MODIFY COLUMN; `not_null` says whether to state NOT NULL."""
    parts = [info["type"]]
    if info.get("collation"):
        parts.append(f"COLLATE {info['collation']}")
    parts.append("NOT NULL" if not_null else "NULL")
    if info.get("default") is not None and not (info["default"] == "NULL" and not_null):
        parts.append(f"DEFAULT {info['default']}")
    if info.get("comment"):
        parts.append("COMMENT " + render(sql.Literal(info["comment"])))
    return " ".join(parts)


def restore_dropped_column(table: tuple[str, str], column: str, type_: str, structure: dict | None
                           ) -> tuple[list[str], list[str]]:
    """The column added back where it was (AFTER its neighbour, so `SELECT *` reads as before) with its type,
    collation, default and comment, nullable (instant) while the snapshot's values come back; a column that was
    NOT NULL becomes so at the end, in place with writes going on. Without the recorded structure: its type."""
    tbl, col = sql.Identifier(*table), sql.Identifier(column)
    columns = list((structure or {}).get("columns") or {})
    if column not in columns:
        return [_s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} " + type_, t=tbl, c=col)], []
    info = structure["columns"][column]
    at = columns.index(column)
    place = " FIRST" if at == 0 else _s(" AFTER {p}", p=sql.Identifier(columns[at - 1]))
    down = [_s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} ", t=tbl, c=col) + column_definition(info, False)
            + place]
    finish = [_s("ALTER TABLE {t} MODIFY COLUMN {c} ", t=tbl, c=col) + column_definition(info, True)
              + ", ALGORITHM=INPLACE, LOCK=NONE"] if info["not_null"] else []
    return down, finish + _indexes_back(tbl, column, structure)


def _indexes_back(tbl: sql.Identifier, column: str, structure: dict) -> list[str]:
    """The indexes that went with the dropped column, built again online (the executor writes in the server's
    algorithm, LOCK=NONE) once its values are back, each part with its prefix length (:func:`index_parts`). A
    FULLTEXT or SPATIAL index, or one on an expression, is left out (catalog.read_table does not keep the
    expression)."""
    out = []
    for name, index in sorted(structure.get("indexes", {}).items()):
        parts = index_parts(index)
        if column not in index["columns"] or name == "PRIMARY" or parts is None:
            continue
        unique = "UNIQUE " if index["definition"].startswith("UNIQUE ") else ""
        out.append(_s("ALTER TABLE {t} ADD " + unique + "INDEX {i} ({p})", t=tbl, i=sql.Identifier(name),
                      p=key_parts(parts)))
    return out


def drop_or_rename_back(table: tuple[str, str], old: str, new: str, live_columns: frozenset[str] | None) -> list[str]:
    """MySQL has no DO block: decided from the table as the rollback found it (without one, in a plan: the longer
    way, after the contract)."""
    tbl = sql.Identifier(*table)
    if live_columns is not None and old in live_columns:
        return [_s("ALTER TABLE {t} DROP COLUMN IF EXISTS {n}", t=tbl, n=sql.Identifier(new))]
    return [_s("ALTER TABLE {t} RENAME COLUMN {n} TO {o}", t=tbl, n=sql.Identifier(new), o=sql.Identifier(old))]


TEMPORARY_SUFFIX = "__am"


def _temporary(name: str) -> str:
    return f"{name[:MAX_NAME - 5]}{TEMPORARY_SUFFIX}"


_PREFIX = re.compile(r"(.+)\((\d+)\)")


def index_parts(index: dict) -> list[tuple[str, int | None]] | None:
    """(column, prefix length or None) of each part of a plain (BTREE / HASH) index in order, from
    catalog.read_table's definition (``BTREE (name(10), id)``: STATISTICS.SUB_PART kept, so ``KEY (name(10))``
    is built again as itself, not on the whole value: a different index on MariaDB, an error for a TEXT column
    on MySQL 8, and for a UNIQUE one a different rule); None for one this cannot rebuild (FULLTEXT, SPATIAL, an
    expression)."""
    definition = f" {index['definition']}"
    if not (" BTREE (" in definition or " HASH (" in definition) or "(expression)" in definition:
        return None
    out = []
    for part in definition.split(" (", 1)[1][:-1].split(", "):
        prefix = _PREFIX.fullmatch(part)
        out.append((prefix.group(1), int(prefix.group(2))) if prefix else (part, None))
    return out


def key_parts(parts: list[tuple[str, int | None]], rename: dict[str, str] | None = None) -> sql.Composable:
    """An index's key parts as SQL (`` `name`(10), `id` ``), a column renamed where `rename` says."""
    return sql.SQL(", ").join(
        sql.SQL("{}" + (f"({length})" if length else "")).format(sql.Identifier((rename or {}).get(c, c)))
        for c, length in parts)


def carry_column(structure: dict | None, column: str, onto: str, final: str, new_type: str | None = None
                 ) -> tuple[list[str], list[str], list[str]]:
    """(build, release, finish) for a replacement column on the same table: each plain index using `column`
    built on `onto` under a temporary name while the sync trigger runs (online: the executor writes in the
    server's algorithm, LOCK=NONE) and renamed to its own name once the old column (and its index) is gone
    (instant); NOT NULL, the default and the comment restated by one MODIFY COLUMN of `final` at the end (in
    place, writes going on)."""
    if not structure or column not in structure.get("columns", {}):
        return [], [], []
    tbl = sql.Identifier(structure["schema"], structure["table"])
    build, finish = [], []
    for name, index in sorted(structure.get("indexes", {}).items()):
        parts = index_parts(index)
        if column not in index["columns"] or name == "PRIMARY" or parts is None:
            continue
        unique = "UNIQUE " if index["definition"].startswith("UNIQUE ") else ""
        build.append(_s("ALTER TABLE {t} ADD " + unique + "INDEX {i} ({p})", t=tbl, i=sql.Identifier(_temporary(name)),
                        p=key_parts(parts, {column: onto})))
        finish.append(_s("ALTER TABLE {t} RENAME INDEX {tmp} TO {i}", t=tbl, tmp=sql.Identifier(_temporary(name)),
                         i=sql.Identifier(name)))
    info = structure["columns"][column]
    if new_type is not None:  # the replacement's type; a collation only where it still applies
        texty = new_type.strip().lower().startswith(("char", "varchar", "tinytext", "text", "mediumtext", "longtext",
                                                     "enum", "set"))
        info = {**info, "type": new_type, "collation": info.get("collation") if texty else None}
    if info["not_null"] or (info.get("default") not in (None, "NULL")) or info.get("comment"):
        finish.append(_s("ALTER TABLE {t} MODIFY COLUMN {c} ", t=tbl, c=sql.Identifier(final))
                      + column_definition(info, info["not_null"]))
    return build, [], finish


def type_change_probe(structure: dict | None, column: str, new_type: str) -> list[str]:
    """On a session temporary copy of the table (CREATE TEMPORARY TABLE ... LIKE: its indexes and defaults, no
    rows), the column changed to `new_type` with its default, NOT NULL and comment as the contract will restate
    them: the server refuses a default or an index that does not fit, now rather than after the backfill. The
    copy is dropped at the end (and before, should an earlier probe have failed half-way)."""
    if not structure or column not in structure.get("columns", {}):
        return []
    _, _, finish = carry_column(structure, column, column, column, new_type)
    modify = next((s for s in finish if " MODIFY COLUMN " in s), None)
    probe, tbl = sql.Identifier("am_probe"), sql.Identifier(structure["schema"], structure["table"])
    change = (modify.replace(_s("ALTER TABLE {t}", t=tbl), _s("ALTER TABLE {p}", p=probe), 1) if modify else
              _s("ALTER TABLE {p} MODIFY COLUMN {c} " + new_type, p=probe, c=sql.Identifier(column)))
    return [_s("DROP TEMPORARY TABLE IF EXISTS {p}", p=probe), _s("CREATE TEMPORARY TABLE {p} LIKE {t}", p=probe, t=tbl),
            change, _s("DROP TEMPORARY TABLE IF EXISTS {p}", p=probe)]


def placed_after(column: str) -> str:
    return _s(" AFTER {c}", c=sql.Identifier(column))


def replacement_refusals(structure: dict | None, column: str) -> list[str]:
    """Another table's foreign key to `column`: MySQL refuses to drop a column a foreign key needs, and a key
    cannot be re-pointed without checking every row under a lock; an index this carry cannot rebuild (FULLTEXT,
    SPATIAL, on an expression) would be lost."""
    if not structure or column not in structure.get("columns", {}):
        return []
    table, out = f"{structure['schema']}.{structure['table']}", []
    for name, fk in sorted(structure.get("referenced_by", {}).items()):
        referenced = fk["definition"].rsplit("(", 1)[-1].rstrip(")").split(",")  # catalog: "... REFERENCES t (a,b)"
        if column in referenced:
            out.append(f"foreign key {name} ({fk['definition']}) references {table}.{column}: MySQL cannot drop the "
                       "old column while it exists. Drop that foreign key first (in an earlier migration) and add it "
                       "again afterwards, or leave this column alone")
    for name, index in sorted(structure.get("indexes", {}).items()):
        if column in index["columns"] and name != "PRIMARY" and index_parts(index) is None:
            out.append(f"index {name} ({index['definition']}) on {table}.{column} cannot be rebuilt online on the "
                       "replacement column. Drop it first (in an earlier migration) and create it again afterwards")
    return out


def fill_back_from_snapshot(table: tuple[str, str], key: str, back: str, column: str, original: str,
                            snapshot: tuple[str, str]) -> str:
    """The batch's rows LEFT JOIN the snapshot, updated in place: the table is read only as the rows written (a
    derived table of it would be read with shared locks first, which deadlock with the application's writes);
    the assignment converts to the original type."""
    k, o, b = sql.Identifier(key), sql.Identifier(column), sql.Identifier(back)
    value = _s("CASE WHEN s.{k} IS NULL THEN t.{o} ELSE s.{o} END", k=k, o=o)
    return _s("UPDATE {t} AS t LEFT JOIN {snap} AS s ON s.{k} = t.{k} SET t.{b} = {v} WHERE t.{k} BETWEEN %(lo)s "
              "AND %(hi)s AND t.{b} IS NULL AND ({v}) IS NOT NULL", t=sql.Identifier(*table),
              snap=sql.Identifier(*snapshot), k=k, b=b, v=sql.SQL(value))
