"""split_table on MySQL / MariaDB: the moved columns go to a new table keyed like the old one, kept in sync by
triggers, copied in batches, dropped from the old table at the contract; the rollback brings them home the same way.

PostgreSQL's steps (airmigrate.operations.split_table) are one trigger function branching on ``TG_OP`` and
``ON CONFLICT DO UPDATE``; here:

- **Triggers**: MySQL has one trigger per event: three AFTER triggers on the old table (``<name>_i``, ``_u``,
  ``_d``), each made by ``DROP TRIGGER IF EXISTS`` + ``CREATE TRIGGER`` (MySQL 8 has no ``CREATE OR REPLACE
  TRIGGER``). Insert and update upsert the row's key and moved columns into the new table (``INSERT ... ON
  DUPLICATE KEY UPDATE c = NEW.c``: the trigger's row by name, which MariaDB and every MySQL 8.0 run; not
  ``VALUES(c)``, deprecated from MySQL 8.0.20, nor the row alias ``VALUES (...) AS new`` that replaces it, which
  MariaDB lacks and MySQL has only from 8.0.19); an update that changes the key
  first deletes the old key's row (a change of case too: compared byte for byte); delete deletes it. They run in
  the application's statement, so the new table changes in the same transaction as the old one.
- **Batches**: ``INSERT INTO new ... SELECT ... FROM old AS am_row WHERE <range> LOCK IN SHARE MODE ON DUPLICATE
  KEY UPDATE c = am_row.c`` (an INSERT ... SELECT names the SELECT's columns there, MySQL's WL#6312: no VALUES()
  either). The shared locks make a concurrent update of a batch's row wait until the batch commits, so its
  trigger's copy lands after the batch's and wins; without them the batch could write back a value read before
  that update (a lost update). ``LOCK IN SHARE MODE``, not ``FOR SHARE``: MariaDB 10.11 has only the former,
  MySQL 8 both. Both the batch and the application's trigger lock the old row first and the new row second:
  one order, no deadlock between them.
- **Structure**: the new table's columns are created nullable with their type and collation; everything else
  the moved columns had is the engine's carry (op_columns.carry_column on the new table): each plain index built
  in the expand while the table is still empty (a prefix index with its prefix: ``KEY (name(10))``), renamed to
  its own name at the contract, and NOT NULL, the default and the comment restated by one ``MODIFY COLUMN`` there
  (in place, writes going on). What it cannot carry (a FULLTEXT, SPATIAL or expression index, a generated
  column) or what would break once the columns are gone (a staying generated column or the application's
  trigger naming one) is refused by preflight (:func:`refusals`, which says which of the application's triggers
  are safe and why).
- **Contract**: the triggers go, then the old table's indexes on moved columns (MySQL would otherwise shrink an
  index of the key and a moved column to the key alone, and the rollback could not build it again under its
  name), then the columns, in one ``ALTER`` (the executor writes the server's algorithm: INSTANT where it can).
- **Rollback** before the contract: the up triggers and the new table go. The old table still holds every value
  (the application writes it; the new table is a mirror), so nothing is copied back: a batch would overwrite what
  the application wrote after the triggers went with the mirror's older copy. After the contract: the columns
  come back empty where they were (``ADD COLUMN ... AFTER``, instant, with their type, collation, default and
  comment), triggers on the new table mirror what the application writes there back home, batches copy the rest
  (``UPDATE new STRAIGHT_JOIN old``: the new row locked before the old one, the order the triggers take); at the
  end NOT NULL and their indexes come back (op_columns.restore_dropped_column's finish), then the new table goes.

The statements avoid MariaDB-only syntax (no ``IF [NOT] EXISTS`` inside ALTER, no anonymous blocks): a retry
of a DDL step an earlier attempt completed is recognised by the server's error (stages.schema_change).
"""

from __future__ import annotations

import hashlib
import re

from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

from airmigrate.engines import sql
from airmigrate.engines.mysql.connection import render
from airmigrate.engines.mysql.op_columns import (
    MAX_NAME,
    carry_column,
    column_definition,
    distinct,
    index_parts,
    restore_dropped_column,
)
from airmigrate.engines.mysql.parsing import tokenize
from airmigrate.engines.operation_sql import SplitJob

SOURCE = sql.Identifier("am_row")  # the batch's source row, named in its ON DUPLICATE KEY UPDATE


def _s(template: str, **parts) -> str:
    return render(sql.SQL(template).format(**parts))


def _list(pieces) -> sql.Composable:
    return sql.SQL(", ").join(pieces)


def trigger_names(name: str, events: str = "iud") -> list[str]:
    """`name` with a suffix per event (i, u, d), each at most 64 bytes (a long name keeps a hash of itself, as
    op_columns.trigger_names does)."""
    if len(name) > MAX_NAME - 2:
        name = name[:MAX_NAME - 11] + "_" + hashlib.md5(name.encode()).hexdigest()[:8]
    return [f"{name}_{event}" for event in events]


def _triggers(schema: str, name: str, table: sql.Identifier, bodies: dict[str, str]) -> list[str]:
    """DROP TRIGGER IF EXISTS + CREATE TRIGGER ... AFTER <event> for each event ('i', 'u', 'd') in `bodies`."""
    out = []
    events = {"i": "INSERT", "u": "UPDATE", "d": "DELETE"}
    for trigger, event in zip(trigger_names(name, "".join(bodies)), bodies):
        trg = sql.Identifier(schema, trigger)
        out += [_s("DROP TRIGGER IF EXISTS {trg}", trg=trg),
                _s("CREATE TRIGGER {trg} AFTER " + events[event] + " ON {t} FOR EACH ROW {body}", trg=trg, t=table,
                   body=sql.SQL(bodies[event]))]
    return out


def _drop_triggers(schema: str, name: str, events: str) -> list[str]:
    return [_s("DROP TRIGGER IF EXISTS {trg}", trg=sql.Identifier(schema, trigger))
            for trigger in trigger_names(name, events)]


def _info(job: SplitJob, column: str) -> dict | None:
    return ((job.structure or {}).get("columns") or {}).get(column)


def _on_new_table(job: SplitJob) -> dict | None:
    """The recorded structure pointed at the new table, for op_columns.carry_column to build there."""
    return {**job.structure, "table": job.new_table} if job.structure else None


def _carried(job: SplitJob) -> tuple[list[str], list[str]]:
    """(build, finish) of every moved column on the new table; an index over several moved columns once. The
    MODIFY COLUMN restating NOT NULL, the default and the comment says ``ALGORITHM=INPLACE, LOCK=NONE`` as
    op_columns.set_not_null does: in place with writes going on or refused at once, and read so by lint and
    the plan without a server (which would otherwise guess a copy for a restated column)."""
    build, finish, moved = [], [], _on_new_table(job)
    for column in job.columns:
        part_build, _, part_finish = carry_column(moved, column, column, column)
        build += part_build
        finish += [f"{s}, ALGORITHM=INPLACE, LOCK=NONE" if " MODIFY COLUMN " in s else s for s in part_finish]
    return list(dict.fromkeys(build)), list(dict.fromkeys(finish))


def _moved_indexes(job: SplitJob) -> list[str]:
    """The old table's indexes using a moved column (not the primary key: preflight refuses moving it)."""
    indexes = (job.structure or {}).get("indexes") or {}
    return [name for name, index in sorted(indexes.items())
            if name != "PRIMARY" and set(index["columns"]) & set(job.columns)]


def steps(job: SplitJob) -> dict[str, list[str]]:
    schema, _ = job.table
    tbl, new, key = sql.Identifier(*job.table), sql.Identifier(schema, job.new_table), sql.Identifier(job.key)
    cols = [sql.Identifier(c) for c in job.columns]
    names = _list([key, *cols])
    upsert = _s("INSERT INTO {n} ({names}) VALUES ({values}) ON DUPLICATE KEY UPDATE {sets}", n=new, names=names,
                values=_list(sql.SQL("NEW.{}").format(c) for c in [key, *cols]),
                sets=_list(sql.SQL("{c} = NEW.{c}").format(c=c) for c in cols))
    forget = _s("DELETE FROM {n} WHERE {k} = OLD.{k}", n=new, k=key)
    moved_key = distinct(_s("NEW.{k}", k=key), _s("OLD.{k}", k=key))
    build, finish = _carried(job)
    definitions = _list([sql.SQL("{} " + job.types[job.key] + _collation(job, job.key) + " NOT NULL").format(key)]
                        + [sql.SQL("{} " + job.types[c] + _collation(job, c) + " NULL").format(sql.Identifier(c))
                           for c in job.columns])
    expand = [_s("CREATE TABLE IF NOT EXISTS {n} ({defs}, PRIMARY KEY ({k}))", n=new, defs=definitions, k=key)]
    expand += build  # the new table is empty: its indexes cost nothing now
    # delete first, insert last: a row the insert trigger copied is never deleted while the delete trigger is
    # missing (it would stay in the new table); a row inserted or updated before its trigger the batches copy
    expand += _triggers(schema, job.sync, tbl, {
        "d": forget, "u": f"BEGIN IF {moved_key} THEN {forget}; END IF; {upsert}; END", "i": upsert})
    backfill = [_s("INSERT INTO {n} ({names}) SELECT {names} FROM {t} AS {o} WHERE {k} BETWEEN %(lo)s AND %(hi)s "
                   "LOCK IN SHARE MODE ON DUPLICATE KEY UPDATE {sets}", n=new, names=names, t=tbl, k=key, o=SOURCE,
                   sets=_list(sql.SQL("{c} = {o}.{c}").format(c=c, o=SOURCE) for c in cols))]
    contract = _drop_triggers(schema, job.sync, "iud")  # the other way round: a copied row's delete still follows
    contract += [_s("ALTER TABLE {t} DROP INDEX {i}", t=tbl, i=sql.Identifier(name)) for name in _moved_indexes(job)]
    contract += [_s("ALTER TABLE {t} ", t=tbl) + ", ".join(_s("DROP COLUMN {c}", c=c) for c in cols)]
    contract += finish
    down, down_backfill, down_contract = _rollback(job, tbl, new, key, cols)
    return {"expand": expand, "backfill": backfill, "contract": contract, "down": down,
            "down_backfill": down_backfill, "down_contract": down_contract}


def _collation(job: SplitJob, column: str) -> str:
    """` COLLATE x` when the recorded column has one (the new table's column compares as the old one did)."""
    info = _info(job, column)
    return f" COLLATE {info['collation']}" if info and info.get("collation") else ""


def _rollback(job: SplitJob, tbl: sql.Identifier, new: sql.Identifier, key: sql.Identifier,
              cols: list[sql.Identifier]) -> tuple[list[str], list[str], list[str]]:
    """(down, down_backfill, down_contract): see the module's doc. Before the contract the old table holds the
    truth (the application writes it, the new table only mirrors it): nothing is copied back, since a batch would
    overwrite what the application wrote after the triggers went with the new table's older copy."""
    schema = job.table[0]
    down = _drop_triggers(schema, job.sync, "iud")
    if not job.contracted:
        return down, [], [_s("DROP TABLE IF EXISTS {n}", n=new)]
    down += _added_back(job, tbl)
    differs = sql.SQL(" OR ").join(sql.SQL(distinct(_s("o.{c}", c=c), _s("x.{c}", c=c))) for c in cols)
    mirror = _s("UPDATE {t} SET {sets} WHERE {k} = NEW.{k} AND ({differs})", t=tbl, k=key,
                sets=_list(sql.SQL("{c} = NEW.{c}").format(c=c) for c in cols),
                differs=sql.SQL(" OR ").join(sql.SQL(distinct(_s("{c}", c=c), _s("NEW.{c}", c=c))) for c in cols))
    down += _triggers(schema, job.back, new, {"i": mirror, "u": mirror})
    down_backfill = [_s("UPDATE {n} AS x STRAIGHT_JOIN {t} AS o ON o.{k} = x.{k} SET {sets} WHERE x.{k} BETWEEN "
                        "%(lo)s AND %(hi)s AND ({differs})", n=new, t=tbl, k=key, differs=differs,
                        sets=_list([sql.SQL("o.{c} = x.{c}").format(c=c) for c in cols]
                                   + [sql.SQL("o.{c} = o.{c}").format(c=c) for c in _stamped(job)]))]
    home = []  # NOT NULL and the indexes come back once the values are
    for column in job.columns:
        home += restore_dropped_column(job.table, column, job.types[column], job.structure)[1]
    down_contract = list(dict.fromkeys(home)) + [_s("DROP TABLE IF EXISTS {n}", n=new)]
    return down, down_backfill, down_contract


def _stamped(job: SplitJob) -> list[sql.Identifier]:
    """The staying columns the server stamps on every update (ON UPDATE CURRENT_TIMESTAMP): the rollback's batches
    set each to itself, the one way to keep a row's stamp (the MySQL manual's) while the moved columns come home,
    which is no change of the application's. Its mirror trigger does not: that is the application's write."""
    stamped = (job.structure or {}).get("on_update") or {}
    return [sql.Identifier(c) for c in sorted(stamped) if c not in job.columns]


def _added_back(job: SplitJob, tbl: sql.Identifier) -> list[str]:
    """The moved columns added back empty and nullable, each where it was (in the table's order, so a neighbour
    that moved too is back before it), with its type, collation, default and comment; without the recorded
    structure (the plan) their types, at the end."""
    order = list(((job.structure or {}).get("columns") or {}))
    out = []
    for column in sorted(job.columns, key=lambda c: order.index(c) if c in order else len(order)):
        info = _info(job, column)
        if info is None:
            out.append(_s("ALTER TABLE {t} ADD COLUMN {c} " + job.types[column], t=tbl, c=sql.Identifier(column)))
            continue
        at = order.index(column)
        place = " FIRST" if at == 0 else _s(" AFTER {p}", p=sql.Identifier(order[at - 1]))
        out.append(_s("ALTER TABLE {t} ADD COLUMN {c} ", t=tbl, c=sql.Identifier(column))
                   + column_definition(info, False) + place)
    return out


def refusals(structure: dict | None, columns: list[str], key: tuple[str, ...]) -> list[str]:
    """What the new table cannot take over, or the triggers cannot follow, each with its fix: an index on a moved
    column the carry cannot build there (FULLTEXT, SPATIAL, on an expression: catalog.read_table keeps nothing to
    rebuild it from); a CHECK or a foreign key of the table on a moved column (MySQL adds a CHECK only by copying
    the table, and cannot drop a column a foreign key uses); a foreign key whose action deletes rows of the table
    or changes a moved or key column (MySQL runs no trigger for those rows: the new table would not follow); a
    generated column computed from a moved column (:func:`_generated_refusals`); the application's triggers that
    name a moved column or run on the table's updates (:func:`_trigger_refusals`); a moved column the server stamps
    ON UPDATE (:func:`_stamp_refusals`)."""
    if not structure:
        return []
    table, moved = f"{structure['schema']}.{structure['table']}", set(columns)
    return (_index_refusals(structure, table, moved) + _check_refusals(structure, table, moved)
            + _reference_refusals(structure, table, moved, key) + _generated_refusals(structure, table, moved)
            + _trigger_refusals(structure, table, moved) + _stamp_refusals(structure, table, moved))


def _index_refusals(structure: dict, table: str, moved: set[str]) -> list[str]:
    out = []
    for name, index in sorted((structure.get("indexes") or {}).items()):
        if set(index["columns"]) & moved and name != "PRIMARY" and index_parts(index) is None:
            out.append(f"index {name} ({index['definition']}) on {table} uses a moved column and cannot be built "
                       "again on the new table. Drop it first (in an earlier migration) and create it on the new "
                       "table afterwards, or leave its columns in place")
    return out


def _check_refusals(structure: dict, table: str, moved: set[str]) -> list[str]:
    return [f"CHECK {name} ({check['definition']}) on {table} uses a moved column: MySQL adds a CHECK only by copying "
            "the table. Drop it first (in an earlier migration) and add it to the new table afterwards (add_check, "
            "`executor: pt-osc`), or leave its columns in place"
            for name, check in sorted((structure.get("checks") or {}).items()) if set(check["columns"]) & moved]


def _reference_refusals(structure: dict, table: str, moved: set[str], key: tuple[str, ...]) -> list[str]:
    out = []
    for name, fk in sorted((structure.get("references") or {}).items()):
        if set(fk["columns"]) & moved:
            out.append(f"foreign key {name} ({fk['definition']}) of {table} uses a moved column: MySQL cannot drop a "
                       "column a foreign key uses, and it is not moved. Drop it first (in an earlier migration) and add "
                       "it to the new table afterwards (add_foreign_key), or leave its columns in place")
        elif fk["on_delete"] == "CASCADE" or (
                {fk["on_delete"], fk["on_update"]} & {"CASCADE", "SET NULL", "SET DEFAULT"}
                and set(fk["columns"]) & {*key}):
            out.append(f"foreign key {name} ({fk['definition']}) of {table} deletes or changes its rows by itself: "
                       "MySQL runs no trigger for them, so the new table would keep rows the old one lost. Make its "
                       "actions RESTRICT (in an earlier migration) until the contract, the application deleting or "
                       "changing those rows itself meanwhile")
    return out


def _generated_refusals(structure: dict, table: str, moved: set[str]) -> list[str]:
    """A staying generated column computed from a moved column: the contract's DROP COLUMN would fail (MariaDB:
    "Unknown column 's' in 'GENERATED ALWAYS AS'", MySQL 8: "has a generated column dependency") after the whole
    backfill, and no expression on the old table can read a column of the new one. (A moved column that is itself
    generated is refused by operations.carry.refusals: the new table would hold a plain copy.)"""
    out = []
    for name, column in (structure.get("columns") or {}).items():
        reads = sorted(c for c in moved if c.lower() in _names(column.get("generated") or ""))
        if column.get("generated") and name not in moved and reads:
            out.append(f"generated column {name} of {table} is computed from moved column {', '.join(reads)} "
                       f"({column['generated']}): the contract could not drop {', '.join(reads)} (the server refuses "
                       f"while {name} reads it), and {name} cannot read the new table. Drop {name} first (in an "
                       "earlier migration) and compute it where its columns are afterwards (a view, or the new "
                       "table), or leave these columns in place")
    return out


def _stamp_refusals(structure: dict, table: str, moved: set[str]) -> list[str]:
    """A moved column the server stamps on every update (ON UPDATE CURRENT_TIMESTAMP): the new table's column is
    made from its type, default and comment (op_columns.column_definition), so after the contract nothing would
    stamp it. (A staying one is kept as it is by the rollback's batches: :func:`_stamped`.)"""
    return [f"{table}.{name} is stamped by the server on every update (ON UPDATE {stamp}): its copy in the new table "
            "would not be. Drop the ON UPDATE clause first (in an earlier migration; the application sets the time "
            "itself), or leave it in place"
            for name, stamp in sorted(((structure.get("on_update") or {}).items())) if name in moved]


def _trigger_refusals(structure: dict, table: str, moved: set[str]) -> list[str]:
    """The application's triggers (catalog: the table's own and other tables' naming it). Safe, and so allowed:
    one that names no moved column and runs on INSERT or DELETE, since the split never inserts into nor deletes from
    the old table (its steps write the new table; the rollback after the contract UPDATEs the old one): it runs for
    the application's writes as before, and airmigrate's AFTER triggers, created last, run after it (a BEFORE
    trigger's changes to NEW are what they copy; an AFTER one cannot change the row). Refused:
    - one naming a moved column (its body reads or sets ``NEW.s``, or writes ``s`` from another table): MySQL does
      not look into triggers at DROP COLUMN, so after the contract every write it runs for fails ("Unknown column
      's' in 'NEW'"). Until then it is harmless, which is why only the contract would find out.
    - one running on the table's UPDATE: a rollback after the contract copies the moved columns home with an UPDATE
      of every row, which would run it once per row the application never touched (a BEFORE trigger changing the
      row, say ``SET NEW.updated_at = NOW()``, or an AFTER one writing an audit table, or refusing the row).
    Only while a moved column is still on the table (a run resumed past its contract is not stopped)."""
    columns = {c.lower() for c in (structure.get("columns") or {})}
    if not moved & set(structure.get("columns") or {}):
        return []
    out = []
    for name, trigger in sorted((structure.get("row_triggers") or {}).items()):
        on = trigger.get("schema", structure["schema"])
        where = f"{trigger['timing']} {trigger['event']} on {on}.{trigger['table']}"
        ours = on == structure["schema"] and trigger["table"] == structure["table"]
        named = sorted(c for c in moved if c.lower() in _names(trigger["statement"]) and c.lower() in columns)
        if named:
            out.append(f"trigger {name} ({where}) names moved column {', '.join(named)}: MySQL does not look into "
                       "triggers when the contract drops a column, so from then on every "
                       f"{trigger['event']} it runs for would fail (Unknown column). Drop it, or rewrite it without "
                       f"{', '.join(named)} (which will be in the new table), first (in an earlier migration), or "
                       "leave these columns in place")
        elif ours and trigger["event"] == "UPDATE":
            out.append(f"trigger {name} ({where}) would run for every row a rollback after the contract copies "
                       f"back to {table} (the moved columns come home by an UPDATE of each row): what it changes in "
                       "the row or writes elsewhere would happen for rows the application never touched. Drop it "
                       "first (in an earlier migration) and create it again once the split is no longer to be rolled "
                       "back, or leave these columns in place")
    return out


def _names(text: str) -> set[str]:
    """Every word of `text` outside string literals, lower-cased (MySQL's column names compare so): what an
    expression or a trigger's body may name. Unreadable text: every word of it (a refusal too many, never one
    too few)."""
    try:
        return {t.text.lower() for t in tokenize(text) if t.token_type != TokenType.STRING}
    except TokenError:
        return {w.lower() for w in re.findall(r"\w+", text)}
