"""The touched tables' shape, read from the catalog: columns, indexes, constraints, triggers, foreign keys, size.

Taken at preflight ("before", kept in the run's facts) and again when the report is written ("after"), then
compared item by item. Columns, indexes, constraints and triggers come from :mod:`airmigrate.structure`, the
definition the rollback and the rehearsal compare too, so a lost NOT NULL, index, comment or grant shows here.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airmigrate import engines, structure
from airmigrate.engines.target import configured_default_schema
from airmigrate.spec import Migration

SECTIONS = ("columns", "indexes", "constraints", "triggers")


def touched_tables(migration: Migration) -> list[str]:
    """schema.table names the migration names: its table, and the tables its operations create, drop or
    reference (a split's new table, a dropped table, a foreign key's referenced table)."""
    spec = migration.spec
    names = [f"{spec.schema_name}.{spec.table_name}"]
    for op in spec.operations:
        for field in ("new_table", "table", "references_table"):
            value = getattr(op, field, None)
            if isinstance(value, str) and value:
                names.append(value if "." in value else f"{spec.schema_name}.{value}")
    return list(dict.fromkeys(names))


def snapshot(conn, migration: Migration) -> dict:
    """{"taken_at", "tables": {schema.table: {...}}} for the touched tables that exist now, plus the tables
    their foreign keys link them to (for the diagram)."""
    tables: dict[str, dict] = {}
    named = touched_tables(migration)
    for name in named:
        shape = table_shape(conn, name)
        if shape is not None:
            tables[name] = shape
    for name in list(tables):  # the neighbours over foreign keys, both ways (not their own neighbours)
        for fk in tables[name]["foreign_keys"]:
            for other in (fk["from_table"], fk["to_table"]):
                if other not in tables:
                    shape = table_shape(conn, other)
                    if shape is not None:
                        shape["neighbour"] = True
                        tables[other] = shape
    return {"taken_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "touched": named,
            "tables": tables}


def table_shape(conn, qualified: str) -> dict | None:
    schema, _, table = qualified.rpartition(".")
    schema = schema or configured_default_schema()
    engine = engines.of(conn)
    info = structure.read_table(conn, schema, table)  # the definition "identical" compares
    if info is None:
        return None
    size, estimate = engine.relation_bytes(conn, schema, table), engine.estimate_rows(conn, schema, table)
    columns = [{"name": name, "nullable": not c["not_null"], **c} for name, c in info["columns"].items()]
    indexes = [{"name": name, "definition": i["definition"]} for name, i in info["indexes"].items()]
    constraints = [{"name": name, "kind": _KINDS.get(c["kind"], c["kind"]), "definition": c["definition"]}
                   for name, c in info["constraints"].items()]
    triggers = [{"name": name, "definition": d} for name, d in info["triggers"].items()]
    foreign_keys = engine.foreign_keys(conn, schema, table)
    return {"columns": columns, "indexes": indexes, "constraints": constraints, "triggers": triggers,
            "foreign_keys": foreign_keys, "comment": info["comment"], "privileges": info["privileges"],
            "size_bytes": int(size), "rows_estimate": int(estimate)}


_KINDS = {"p": "primary key", "u": "unique", "f": "foreign key", "c": "check", "x": "exclusion", "t": "trigger",
          "n": "not null"}


def describe_item(section: str, item: dict) -> str:
    """One line per item, what the side-by-side table shows and compares."""
    if section == "columns":  # type, NOT NULL, default, identity, collation, statistics, comment, grants
        if "not_null" not in item:  # a "before" kept by an older version: type, nullability, default only
            item = {**item, "not_null": not item["nullable"]}
        return structure.describe_column(item)
    if section == "constraints":
        return f"{item['kind']}: {item['definition']}"
    return item["definition"]


def diff(before: dict | None, after: dict | None) -> list[dict]:
    """Per table (touched ones first), per section, each item's before and after text and a mark:
    "added", "removed", "changed" or "" (same). A table missing on one side is marked as a whole."""
    before_tables = (before or {}).get("tables", {})
    after_tables = (after or {}).get("tables", {})
    names = list(dict.fromkeys([*before_tables, *after_tables]))
    names.sort(key=lambda n: bool((before_tables.get(n) or after_tables.get(n) or {}).get("neighbour")))
    out = []
    for name in names:
        b, a = before_tables.get(name), after_tables.get(name)
        mark = "added" if b is None and before is not None else "removed" if a is None else ""
        sections = []
        for section in SECTIONS:
            b_items = {i["name"]: describe_item(section, i) for i in (b or {}).get(section, [])}
            a_items = {i["name"]: describe_item(section, i) for i in (a or {}).get(section, [])}
            rows = []
            for item in dict.fromkeys([*b_items, *a_items]):
                old, new = b_items.get(item), a_items.get(item)
                if before is None:
                    item_mark = ""
                elif old is None:
                    item_mark = "added"
                elif new is None:
                    item_mark = "removed"
                else:
                    item_mark = "changed" if old != new else ""
                rows.append({"name": item, "before": old, "after": new, "mark": item_mark})
            sections.append({"name": section, "rows": rows, "changes": sum(1 for r in rows if r["mark"])})
        out.append({"name": name, "mark": mark, "neighbour": bool((b or a or {}).get("neighbour")),
                    "size_before": (b or {}).get("size_bytes"), "size_after": (a or {}).get("size_bytes"),
                    "sections": sections, "changes": sum(s["changes"] for s in sections) + (1 if mark else 0)})
    return out
