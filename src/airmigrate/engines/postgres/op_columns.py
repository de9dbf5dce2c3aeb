"""The column operations' PostgreSQL building blocks (add_column, rename_column, change_column_type, drop_column):
row triggers as one PL/pgSQL function and one ``BEFORE INSERT OR UPDATE`` trigger, ``IS DISTINCT FROM``, ``::``
casts, NOT NULL through a validated CHECK. The text is what the operations wrote before the engine seam, byte
for byte (the plans, lint findings and tests of PostgreSQL migrations do not change)."""

from __future__ import annotations

from airmigrate.engines import sql
from airmigrate.engines.postgres.connection import render


def _s(template: str, **parts) -> str:
    return render(sql.SQL(template).format(**parts))


def _function(name: str) -> sql.Identifier:
    return sql.Identifier("airmigrate", name)


def _trigger(name: str, table: tuple[str, str], body: str) -> list[str]:
    """CREATE OR REPLACE FUNCTION airmigrate.<name>() with a plpgsql body, and the row trigger running it
    (DROP + CREATE in one transaction, the expand group, keeps it idempotent)."""
    return [_s("CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS {body}", fn=_function(name),
               body=sql.Literal(body)),
            _s("CREATE OR REPLACE TRIGGER {trg} BEFORE INSERT OR UPDATE ON {tbl} FOR EACH ROW EXECUTE FUNCTION {fn}()",
               trg=sql.Identifier(name), tbl=sql.Identifier(*table), fn=_function(name))]


def computed_column_trigger(name: str, table: tuple[str, str], column: str, expression: str) -> list[str]:
    """`expression` is already read from the row (``on_record``)."""
    return _trigger(name, table, _s("BEGIN NEW.{c} := {e}; RETURN NEW; END", c=sql.Identifier(column),
                                    e=sql.SQL(expression)))


def two_way_sync_trigger(name: str, table: tuple[str, str], old: str, new: str) -> list[str]:
    """On INSERT fill whichever is missing; on UPDATE copy the side that changed."""
    body = _s(
        "BEGIN "
        "IF TG_OP = 'INSERT' THEN "
        "IF NEW.{n} IS NULL THEN NEW.{n} := NEW.{o}; ELSIF NEW.{o} IS NULL THEN NEW.{o} := NEW.{n}; END IF; "
        "ELSIF NEW.{o} IS DISTINCT FROM OLD.{o} THEN NEW.{n} := NEW.{o}; "
        "ELSIF NEW.{n} IS DISTINCT FROM OLD.{n} THEN NEW.{o} := NEW.{n}; END IF; "
        "RETURN NEW; END", o=sql.Identifier(old), n=sql.Identifier(new))
    return _trigger(name, table, body)


def cast_back_trigger(name: str, table: tuple[str, str], source: str, target: str, type_: str) -> list[str]:
    """Only a value the application writes now (an insert, or a changed `source`) is cast into `target`."""
    body = _s("BEGIN IF TG_OP = 'INSERT' OR NEW.{o} IS DISTINCT FROM OLD.{o} THEN NEW.{b} := NEW.{o}::" + type_
              + "; END IF; RETURN NEW; END", b=sql.Identifier(target), o=sql.Identifier(source))
    return _trigger(name, table, body)


def drop_row_trigger(name: str, table: tuple[str, str]) -> list[str]:
    return [_s("DROP TRIGGER IF EXISTS {trg} ON {tbl}", trg=sql.Identifier(name), tbl=sql.Identifier(*table)),
            _s("DROP FUNCTION IF EXISTS {fn}()", fn=_function(name))]


def distinct(a: str, b: str) -> str:
    return f"{a} IS DISTINCT FROM {b}"


def cast(expression: str, type_: str) -> str:
    return f"{expression}::{type_}"


def set_not_null(table: tuple[str, str], column: str, type_: str, default: str | None) -> list[str]:
    """CHECK (col IS NOT NULL) NOT VALID -> VALIDATE (no write lock) -> SET NOT NULL (uses the valid check, no
    scan) -> drop the check. The type and default are MySQL's need (it restates the column), not PostgreSQL's."""
    tbl, col, check = sql.Identifier(*table), sql.Identifier(column), sql.Identifier(f"{column}_not_null"[:63])
    return [_s("ALTER TABLE {t} ADD CONSTRAINT {k} CHECK ({c} IS NOT NULL) NOT VALID", t=tbl, k=check, c=col),
            _s("ALTER TABLE {t} VALIDATE CONSTRAINT {k}", t=tbl, k=check),
            _s("ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL", t=tbl, c=col),
            _s("ALTER TABLE {t} DROP CONSTRAINT {k}", t=tbl, k=check)]


def swap_columns(table: tuple[str, str], trigger: str, old: str, new: str, retired: str) -> list[str]:
    """The trigger dropped and both renames: one transaction (the contract's group)."""
    tbl = sql.Identifier(*table)
    return drop_row_trigger(trigger, table) + [
        _s("ALTER TABLE {t} RENAME COLUMN {o} TO {r}", t=tbl, o=sql.Identifier(old), r=sql.Identifier(retired)),
        _s("ALTER TABLE {t} RENAME COLUMN {n} TO {o}", t=tbl, n=sql.Identifier(new), o=sql.Identifier(old))]


def restore_dropped_column(table: tuple[str, str], column: str, type_: str, structure: dict | None
                           ) -> tuple[list[str], list[str]]:
    """The column added back with its type (nullable, at the end: PostgreSQL cannot place a column)."""
    return [_s("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} " + type_, t=sql.Identifier(*table),
               c=sql.Identifier(column))], []


def drop_or_rename_back(table: tuple[str, str], old: str, new: str, live_columns: frozenset[str] | None) -> list[str]:
    """Decided by the server when it runs (a DO block), whatever `live_columns` says."""
    return [_s("DO $am$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = {sch} AND "
               "table_name = {tn} AND column_name = {oc}) THEN ALTER TABLE {t} DROP COLUMN IF EXISTS {n}; "
               "ELSE ALTER TABLE {t} RENAME COLUMN {n} TO {o}; END IF; END $am$",
               sch=sql.Literal(table[0]), tn=sql.Literal(table[1]), oc=sql.Literal(old), t=sql.Identifier(*table),
               n=sql.Identifier(new), o=sql.Identifier(old))]


def placed_after(column: str) -> str:
    """PostgreSQL adds a column at the end, always."""
    return ""


def fill_back_from_snapshot(table: tuple[str, str], key: str, back: str, column: str, original: str,
                            snapshot: tuple[str, str]) -> str:
    """One UPDATE ... FROM a subquery of the batch's rows left-joined to the snapshot."""
    tbl, k, o, b = sql.Identifier(*table), sql.Identifier(key), sql.Identifier(column), sql.Identifier(back)
    bounds_x = _s("{k} BETWEEN %(lo)s AND %(hi)s", k=sql.Identifier("x", key))
    bounds_t = _s("{k} BETWEEN %(lo)s AND %(hi)s", k=sql.Identifier("t", key))
    return _s("UPDATE {t} AS t SET {b} = v.value FROM (SELECT x.{k}, CASE WHEN s.{k} IS NULL THEN x.{o}::" + original +
              " ELSE s.{o} END AS value FROM {t} AS x LEFT JOIN {snap} AS s ON s.{k} = x.{k} WHERE " + bounds_x +
              ") AS v WHERE t.{k} = v.{k} AND " + bounds_t + " AND t.{b} IS NULL AND v.value IS NOT NULL",
              t=tbl, b=b, k=k, o=o, snap=sql.Identifier(*snapshot))
