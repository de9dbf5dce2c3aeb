"""The PostgreSQL SQL of the operations on indexes, constraints and tables (add_index, add_unique, add_check,
add_foreign_key, drop_table, rename_table, rename_index, rename_constraint, create_table's rollback).

Why this shape: an index is built CONCURRENTLY (no write lock; a failed build's INVALID index is dropped before a
retry), a CHECK or FOREIGN KEY is added NOT VALID (an instant ACCESS EXCLUSIVE moment) and then validated in a
second transaction under a weak lock, and what must happen only when something exists is a DO block, so a retried
or resumed step does nothing twice. Each function returns the statements of one phase of the operation.
"""

from __future__ import annotations

from airmigrate.engines import sql


def _s(template: str, **parts) -> str:
    return sql.SQL(template).format(**parts).as_string(None)


def _ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def create_index(schema: str, table: str, name: str, columns: list[str], unique: bool = False,
                 where: str | None = None) -> str:
    predicate = " WHERE " + where if where else ""
    return _s("CREATE " + ("UNIQUE " if unique else "") + "INDEX CONCURRENTLY IF NOT EXISTS {i} ON {t} ({cols})"
              + predicate, i=_ident(name), t=_ident(schema, table),
              cols=sql.SQL(", ").join(_ident(c) for c in columns))


def drop_index(schema: str, table: str, name: str) -> str:
    return _s("DROP INDEX CONCURRENTLY IF EXISTS {i}", i=_ident(schema, name))


def add_unique(schema: str, table: str, name: str, columns: list[str]) -> list[str]:
    """A unique index built CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX (instant)."""
    return [create_index(schema, table, name, columns, unique=True),
            _s("ALTER TABLE {t} ADD CONSTRAINT {c} UNIQUE USING INDEX {c}", t=_ident(schema, table), c=_ident(name))]


def drop_unique(schema: str, table: str, name: str) -> list[str]:
    return [drop_constraint(schema, table, name), drop_index(schema, table, name)]


def add_not_valid_then_validate(schema: str, table: str, name: str, definition: str) -> list[str]:
    """Two statements, two transactions: the ACCESS EXCLUSIVE part is instant, the scan holds a weak lock."""
    t = _ident(schema, table)
    return [_s("ALTER TABLE {t} ADD CONSTRAINT {c} " + definition + " NOT VALID", t=t, c=_ident(name)),
            _s("ALTER TABLE {t} VALIDATE CONSTRAINT {c}", t=t, c=_ident(name))]


def drop_constraint(schema: str, table: str, name: str) -> str:
    return _s("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {c}", t=_ident(schema, table), c=_ident(name))


def add_check(schema: str, table: str, name: str, expression: str) -> list[str]:
    return add_not_valid_then_validate(schema, table, name, f"CHECK ({expression})")


def add_foreign_key(schema: str, table: str, name: str, columns: list[str], references: tuple[str, ...],
                    references_columns: list[str], on_delete: str, key: str, key_type: str) -> list[str]:
    definition = sql.SQL("FOREIGN KEY ({cols}) REFERENCES {ref} ({refcols}) ON DELETE " + on_delete).format(
        cols=sql.SQL(", ").join(_ident(c) for c in columns),
        ref=_ident(*references),
        refcols=sql.SQL(", ").join(_ident(c) for c in references_columns)).as_string(None)
    return add_not_valid_then_validate(schema, table, name, definition)


def rename_index(schema: str, table: str, old: str, new: str) -> str:
    return _s("ALTER INDEX IF EXISTS {a} RENAME TO {b}", a=_ident(schema, old), b=_ident(new))


def rename_constraint(schema: str, table: str, old: str, new: str) -> str:
    return _s("DO $am$ BEGIN IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass({q}) AND "
              "conname = {a_q}) THEN ALTER TABLE {t} RENAME CONSTRAINT {a} TO {b}; END IF; END $am$",
              q=sql.Literal(_ident(schema, table).as_string(None)), a_q=sql.Literal(old), t=_ident(schema, table),
              a=_ident(old), b=_ident(new))


def _swap(schema: str, table: str, view: str) -> str:
    """The table (still named `view`) becomes `table`, and a view named `view` shows it; nothing when done."""
    q = sql.Literal
    return _s("DO $am$ BEGIN IF (SELECT relkind FROM pg_class WHERE oid = to_regclass({old_q})) IN ('r', 'p') THEN "
              "ALTER TABLE {old} RENAME TO {new_name}; CREATE VIEW {old} AS SELECT * FROM {new}; END IF; END $am$",
              old_q=q(_ident(schema, view).as_string(None)), old=_ident(schema, view), new_name=_ident(table),
              new=_ident(schema, table))


def _drop_view(schema: str, name: str) -> str:
    return _s("DO $am$ BEGIN IF (SELECT relkind FROM pg_class WHERE oid = to_regclass({q})) = 'v' THEN "
              "DROP VIEW {v}; END IF; END $am$", q=sql.Literal(_ident(schema, name).as_string(None)),
              v=_ident(schema, name))


def rename_table(schema: str, table: str, to: str) -> dict[str, list[str]]:
    """The expand renames the table and leaves an updatable view under the old name; down: back to the old name,
    a view under the new one (before the contract the old name's view goes first)."""
    return {"expand": [_swap(schema, to, table)], "contract": [_drop_view(schema, table)],
            "down": [_drop_view(schema, table), _swap(schema, table, to)],
            "down_contract": [_drop_view(schema, to)]}


def retire_table(schema: str, table: str, retired: str) -> dict[str, list[str]]:
    """drop_table: renamed into the airmigrate schema (contract), moved back (down) when it is there."""
    return {"contract": [_s("ALTER TABLE {t} RENAME TO {r}", t=_ident(schema, table), r=_ident(retired)),
                         _s("ALTER TABLE {t} SET SCHEMA airmigrate", t=_ident(schema, retired))],
            "down": [_s("DO $am$ BEGIN IF to_regclass({q}) IS NOT NULL THEN ALTER TABLE {t} SET SCHEMA {sch}; "
                        "ALTER TABLE {moved} RENAME TO {r}; END IF; END $am$",
                        q=sql.Literal(f'"airmigrate"."{retired}"'), t=_ident("airmigrate", retired),
                        sch=_ident(schema), moved=_ident(schema, retired), r=_ident(table))]}


def drop_created_table(schema: str, table: str, retired: str) -> str:
    """create_table's rollback: dropped when empty, else retired into the airmigrate schema (no row lost)."""
    qualified = _ident(schema, table)
    return _s("DO $am$ BEGIN IF to_regclass({q}) IS NULL THEN RETURN; END IF; "
              "IF EXISTS (SELECT 1 FROM {t}) THEN ALTER TABLE {t} RENAME TO {r}; ALTER TABLE {moved} SET SCHEMA "
              "airmigrate; RAISE WARNING 'table % holds rows: kept as airmigrate.%', {q}, {rq}; "
              "ELSE DROP TABLE {t}; END IF; END $am$", q=sql.Literal(qualified.as_string(None)),
              t=qualified, r=_ident(retired), moved=_ident(schema, retired), rq=sql.Literal(retired))
