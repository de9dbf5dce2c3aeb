"""A table's full definition read from the engine's catalog, normalised, and compared.

One reader serves two needs:

- the operations that replace a column or move columns to a new table carry over everything the old one
  had (NOT NULL, default, CHECK, UNIQUE, foreign keys, indexes, comment, column grants, statistics target);
  they need each object with the columns it uses (:func:`read_table`);
- the checks that say "identical" (the rehearsal after its rollback, the rollback's own verification, the
  run report's schema diff) compare structure, not only rows (:func:`definition` and :func:`differences`).

The result is plain JSON (it is kept in a run's facts, so a rollback after the contract still knows what
the original column had). Column order is not part of the definition: no zero-downtime operation can put
a replaced column back in its old position without rewriting the table.

The catalog reading is each engine's (``Engine.read_table_structure``); the comparison here is neutral.
"""

from __future__ import annotations

from airmigrate import engines


def read_table(conn, schema: str, table: str) -> dict | None:
    """Everything about `schema.table` an operation must carry over or a check must compare; None when
    the table does not exist. Each constraint and index lists the columns it uses. The engine reads its catalog
    (Engine.read_table_structure)."""
    return engines.of(conn).read_table_structure(conn, schema, table)


def definition(conn, schema: str, table: str) -> dict | None:
    """The table's normalised definition: what "identical" compares. Columns by name (not position) with type,
    nullability, default, identity, generation, collation, comment, statistics target and grants;
    constraints, indexes and triggers by name with their definitions; the table's comment and grants; the
    foreign keys of other tables pointing at it. Object names are part of it (a renamed index differs)."""
    table_info = read_table(conn, schema, table)
    return None if table_info is None else normalise(table_info)


def normalise(table_info: dict) -> dict:
    """The comparable part of :func:`read_table`'s result (drops the helper fields: columns used, etc.)."""
    return {"comment": table_info["comment"], "privileges": table_info["privileges"],
            "columns": table_info["columns"],
            "constraints": {n: c["definition"] for n, c in table_info["constraints"].items()},
            "indexes": {n: i["definition"] for n, i in table_info["indexes"].items()},
            "triggers": table_info["triggers"],
            "referenced_by": {n: r["definition"] for n, r in table_info["referenced_by"].items()}}


def differences(before: dict | None, after: dict | None, name: str = "the table") -> list[str]:
    """Each difference between two definitions in words ("index users_email_idx: missing (was CREATE ...)");
    an empty list means identical."""
    if before is None or after is None:
        if before is after:
            return []
        return [f"{name}: {'missing' if after is None else 'did not exist before'}"]
    out = []
    for field in ("comment", "privileges"):
        if before.get(field) != after.get(field):
            out.append(f"{name} {field}: {before.get(field)!r} -> {after.get(field)!r}")
    for section, label in (("columns", "column"), ("constraints", "constraint"), ("indexes", "index"),
                           ("triggers", "trigger"), ("referenced_by", "foreign key to it")):
        was, now = before.get(section) or {}, after.get(section) or {}
        for item in sorted(set(was) | set(now)):
            if item not in now:
                out.append(f"{label} {item}: missing (was {_show(was[item])})")
            elif item not in was:
                out.append(f"{label} {item}: added ({_show(now[item])})")
            elif was[item] != now[item]:
                out.append(f"{label} {item}: {_changed(was[item], now[item])}")
    return out


def _show(value) -> str:
    if isinstance(value, dict):
        return describe_column(value)
    return str(value)


def _changed(was, now) -> str:
    if isinstance(was, dict) and isinstance(now, dict):
        return "; ".join(f"{k} {was.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(was) | set(now))
                         if was.get(k) != now.get(k))
    return f"{was} -> {now}"


def describe_column(column: dict) -> str:
    """One line: type, NOT NULL, DEFAULT, identity/generation, collation, statistics, comment, grants."""
    parts = [column["type"]]
    if column.get("collation"):
        parts.append(f"COLLATE {column['collation']}")
    if column.get("not_null"):
        parts.append("NOT NULL")
    if column.get("generated"):
        parts.append(f"GENERATED ALWAYS AS ({column.get('default')}) STORED")
    elif column.get("default") is not None:
        parts.append(f"DEFAULT {column['default']}")
    if column.get("identity"):
        parts.append("GENERATED " + ("ALWAYS" if column["identity"] == "a" else "BY DEFAULT") + " AS IDENTITY")
    if column.get("statistics") is not None:
        parts.append(f"STATISTICS {column['statistics']}")
    if column.get("comment"):
        parts.append(f"COMMENT {column['comment']!r}")
    if column.get("owns_sequence"):
        parts.append(f"OWNS {column['owns_sequence']}")
    if column.get("privileges"):
        parts.append("GRANT " + ", ".join(column["privileges"]))
    return " ".join(parts)


__all__ = ["read_table", "definition", "normalise", "differences", "describe_column"]
