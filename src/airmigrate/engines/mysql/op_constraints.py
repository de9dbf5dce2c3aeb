"""The MySQL / MariaDB SQL of the operations on indexes, constraints and tables (add_index, add_unique, add_check,
add_foreign_key, drop_table, rename_table, rename_index, create_table's rollback).

How each stays online (MariaDB 10.11 measured; the DDL executor, ``ddl.online_statement``, writes the server's own
ALGORITHM / LOCK into every ALTER and waits for metadata locks with a limit and retries, so nothing here repeats it):
- ADD [UNIQUE] INDEX is ``ALGORITHM=NOCOPY, LOCK=NONE``; RENAME INDEX is ``INSTANT``; DROP INDEX is NOCOPY.
- ADD CHECK can only copy the table with writes blocked: preflight refuses it quoting the server, unless the
  migration says ``executor: pt-osc`` (pt-online-schema-change then runs the ALTER on a shadow copy).
- ADD FOREIGN KEY is in place only with ``foreign_key_checks=0``: the PostgreSQL way (NOT VALID, then VALIDATE)
  done by hand. The constraint is added in place with the checks off for that one statement (``SET STATEMENT``:
  every other session's writes are checked from that moment), then a batched anti-join over the table's key
  proves that no existing row is an orphan, or fails naming the first orphans (the rollback drops the key).
- A table is renamed or retired with ``RENAME TABLE`` (atomic, a moment's metadata lock; across databases too).
  rename_table keeps both names working: the new name is an updatable view of the table until the contract
  swaps them in one ``RENAME TABLE`` (the view out, the table in), after the old release is gone.
Where a step must only happen when something exists, MariaDB's ``IF [NOT] EXISTS`` clauses or an anonymous
``BEGIN NOT ATOMIC ... END`` block make it idempotent, so a retried or resumed step does nothing twice. MySQL 8
has neither: :mod:`.dialect` sends them there as information_schema guards and a procedure called once.
"""

from __future__ import annotations

from airmigrate.engines import sql

# key values per batch of the foreign key's orphan scan: each batch a short consistent read, no row locks
ORPHAN_BATCH = 10_000
MESSAGE_LIMIT = 128  # SIGNAL's MESSAGE_TEXT: at most 128 characters, a variable or a literal

PARTIAL_INDEX = ("`where`: MySQL / MariaDB have no partial indexes (an index always covers every row)",
                 "drop `where` to index every row, or index a generated column that is NULL outside the rows "
                 "wanted (in up.mysql.sql)")


def _s(template: str, **parts) -> str:
    return sql.SQL(template).format(**parts).as_string(None)


def _ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def _columns(columns: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(_ident(c) for c in columns)


def create_index(schema: str, table: str, name: str, columns: list[str], unique: bool = False,
                 where: str | None = None) -> str:
    if where:
        raise ValueError(f"{PARTIAL_INDEX[0]}. Fix: {PARTIAL_INDEX[1]}")
    return _s("ALTER TABLE {t} ADD " + ("UNIQUE " if unique else "") + "INDEX IF NOT EXISTS {i} ({cols})",
              t=_ident(schema, table), i=_ident(name), cols=_columns(columns))


def drop_index(schema: str, table: str, name: str) -> str:
    return _s("ALTER TABLE {t} DROP INDEX IF EXISTS {i}", t=_ident(schema, table), i=_ident(name))


def add_unique(schema: str, table: str, name: str, columns: list[str]) -> list[str]:
    """A unique constraint is a unique index on MySQL: built online, it refuses duplicates from then on (the
    build fails, naming the duplicate, when the table already holds one)."""
    return [create_index(schema, table, name, columns, unique=True)]


def drop_unique(schema: str, table: str, name: str) -> list[str]:
    return [drop_index(schema, table, name)]


def add_check(schema: str, table: str, name: str, expression: str) -> list[str]:
    return [_s("ALTER TABLE {t} ADD CONSTRAINT IF NOT EXISTS {c} CHECK (" + expression + ")",
               t=_ident(schema, table), c=_ident(name))]


def drop_constraint(schema: str, table: str, name: str) -> str:
    return _s("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {c}", t=_ident(schema, table), c=_ident(name))


def add_foreign_key(schema: str, table: str, name: str, columns: list[str], references: tuple[str, ...],
                    references_columns: list[str], on_delete: str, key: str, key_type: str) -> list[str]:
    """Added in place with the checks off for this statement only, then proven by :func:`orphan_scan`."""
    ref = _ident(*references) if len(references) > 1 else _ident(schema, references[0])
    add = _s("SET STATEMENT foreign_key_checks = 0 FOR ALTER TABLE {t} ADD CONSTRAINT {c} FOREIGN KEY IF NOT EXISTS "
             "({cols}) REFERENCES {ref} ({refcols}) ON DELETE " + on_delete + ", ALGORITHM=INPLACE, LOCK=NONE",
             t=_ident(schema, table), c=_ident(name), cols=_columns(columns), ref=ref,
             refcols=_columns(references_columns))
    return [add, orphan_scan(schema, table, name, columns, ref, references_columns, key, key_type)]


def orphan_scan(schema: str, table: str, name: str, columns: list[str], ref: sql.Identifier,
                references_columns: list[str], key: str, key_type: str) -> str:
    """One anonymous block walking the table's key in batches of ORPHAN_BATCH: in each, the first rows whose
    (all non-NULL) foreign key columns match no referenced row; the first batch with any ends it with an error
    naming the constraint and those rows' keys and values (the foreign key's own check covers every write since it was
    added, so rows written meanwhile need no scan)."""
    k, t = _ident(key), _ident(schema, table)
    matches = sql.SQL(" AND ").join(sql.SQL("r.{} = c.{}").format(_ident(rc), _ident(c))
                                    for rc, c in zip(references_columns, columns))
    present = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(_ident(c)) for c in columns)
    values = sql.SQL(", ").join(sql.SQL("c.{}").format(_ident(c)) for c in columns)
    prefix = f"{name}: no match for ({key}: {', '.join(columns)}) "[:MESSAGE_LIMIT - 20]
    return _s(
        "BEGIN NOT ATOMIC DECLARE lo " + key_type + "; DECLARE hi " + key_type + "; DECLARE orphans TEXT; "
        "SET lo = (SELECT MIN({k}) FROM {t}); "
        "WHILE lo IS NOT NULL DO "
        "SET hi = (SELECT MAX(b.{k}) FROM (SELECT {k} FROM {t} WHERE {k} >= lo ORDER BY {k} LIMIT {batch}) b); "
        "SET orphans = (SELECT GROUP_CONCAT(o.v SEPARATOR '; ') FROM (SELECT CONCAT(c.{k}, ': ', CONCAT_WS(', ', "
        "{values})) AS v "
        "FROM {t} c WHERE c.{k} BETWEEN lo AND hi AND {present} AND NOT EXISTS (SELECT 1 FROM {ref} r WHERE "
        "{matches}) LIMIT 5) o); "
        "IF orphans IS NOT NULL THEN SET orphans = {message}; SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = orphans; "
        "END IF; "
        "SET lo = (SELECT MIN({k}) FROM {t} WHERE {k} > hi); "
        "END WHILE; END",
        k=k, t=t, batch=sql.Literal(ORPHAN_BATCH), values=values, present=present, ref=ref, matches=matches,
        message=sql.SQL("LEFT(CONCAT({}, orphans), {})").format(sql.Literal(prefix), sql.Literal(MESSAGE_LIMIT)))


def drop_foreign_key(schema: str, table: str, name: str) -> str:
    """The foreign key, and the index of its name that InnoDB made for it when no index led with its columns
    (none of that name otherwise: IF EXISTS)."""
    return _s("ALTER TABLE {t} DROP FOREIGN KEY IF EXISTS {c}, DROP INDEX IF EXISTS {c}", t=_ident(schema, table),
              c=_ident(name))


def rename_index(schema: str, table: str, old: str, new: str) -> str:
    """An index belongs to its table on MySQL: the migration's table's index `old` (INSTANT)."""
    return _s("ALTER TABLE {t} RENAME INDEX IF EXISTS {a} TO {b}", t=_ident(schema, table), a=_ident(old),
              b=_ident(new))


def _kind(schema: str, name: str) -> sql.Composable:
    """'BASE TABLE', 'VIEW' or NULL: what `name` is now (information_schema, read inside the block)."""
    return sql.SQL("(SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = {s} AND "
                   "TABLE_NAME = {n})").format(s=sql.Literal(schema), n=sql.Literal(name))


def _view_of(schema: str, view: str, table: str) -> str:
    return _s("CREATE OR REPLACE ALGORITHM = MERGE VIEW {v} AS SELECT * FROM {t}", v=_ident(schema, view),
              t=_ident(schema, table))


def _swap_in(schema: str, view: str, table: str, parked: str) -> str:
    """The view named `view` out (parked, then dropped) and the table `table` in under that name, in one atomic
    RENAME TABLE (no moment without either); nothing when it is done."""
    return _s("BEGIN NOT ATOMIC IF {view_kind} = 'VIEW' AND {table_kind} = 'BASE TABLE' THEN "
              "RENAME TABLE {v} TO {p}, {t} TO {v}; DROP VIEW {p}; END IF; END",
              view_kind=_kind(schema, view), table_kind=_kind(schema, table), v=_ident(schema, view),
              p=_ident(schema, parked), t=_ident(schema, table))


def _drop_view(schema: str, name: str) -> str:
    return _s("BEGIN NOT ATOMIC IF {kind} = 'VIEW' THEN DROP VIEW {v}; END IF; END", kind=_kind(schema, name),
              v=_ident(schema, name))


def rename_table(schema: str, table: str, to: str) -> dict[str, list[str]]:
    """expand: a view named `to` of the table (both releases work); contract (the old release gone): the table
    takes the name `to`, the view goes, atomically. down after the contract: a view under the old name first,
    then (down_contract) the table takes its old name back the same way; before the contract: the view goes."""
    parked = f"am_parked_{to}"[:64]
    return {"expand": [_view_of(schema, to, table)],
            "contract": [_swap_in(schema, to, table, parked)],
            "down": [_s("BEGIN NOT ATOMIC IF {to_kind} = 'BASE TABLE' AND {old_kind} IS NULL THEN "
                        "CREATE ALGORITHM = MERGE VIEW {old} AS SELECT * FROM {new}; END IF; END",
                        to_kind=_kind(schema, to), old_kind=_kind(schema, table), old=_ident(schema, table),
                        new=_ident(schema, to))],
            "down_contract": [_swap_in(schema, table, to, f"am_parked_{table}"[:64]), _drop_view(schema, to)]}


def retire_table(schema: str, table: str, retired: str) -> dict[str, list[str]]:
    """drop_table: moved into the airmigrate database (contract), moved back (down) when it is there."""
    return {"contract": [_s("RENAME TABLE IF EXISTS {t} TO {r}", t=_ident(schema, table),
                            r=_ident("airmigrate", retired))],
            "down": [_s("RENAME TABLE IF EXISTS {r} TO {t}", t=_ident(schema, table),
                        r=_ident("airmigrate", retired))]}


def drop_created_table(schema: str, table: str, retired: str) -> str:
    """create_table's rollback: dropped when empty, else retired into the airmigrate database (no row lost)."""
    t = _ident(schema, table)
    return _s("BEGIN NOT ATOMIC IF {kind} IS NOT NULL THEN IF EXISTS (SELECT 1 FROM {t}) THEN "
              "RENAME TABLE {t} TO {r}; ELSE DROP TABLE {t}; END IF; END IF; END", kind=_kind(schema, table), t=t,
              r=_ident("airmigrate", retired))
