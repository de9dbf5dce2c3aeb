"""Schema documentation: `airmigrate docs` writes the target's tables (columns with types, defaults and
comments, indexes, constraints, triggers) as Markdown, with a foreign-key diagram in SVG made here, to
docs/schema/ (beside CHANGELOG.md, which each applied migration extends)."""

from __future__ import annotations

from pathlib import Path

from airmigrate.db import Target, connect, refuse_unsupported
from airmigrate.schemadocs.diagram import foreign_key_diagram
from airmigrate.schemadocs.shape import table_shape

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "airmigrate", "pg_toast")


def write_docs(target: Target, out: Path) -> list[Path]:
    """Every user table of the target: README.md (index and diagram), schema.svg, one <schema>.<table>.md each."""
    refuse_unsupported(target, "docs")
    out.mkdir(parents=True, exist_ok=True)
    with connect(target) as conn:
        names = [f"{s}.{t}" for s, t in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname <> ALL (%s) "
            "AND n.nspname NOT LIKE 'pg\\_%%' ORDER BY 1, 2", (list(SYSTEM_SCHEMAS),)).fetchall()]
        tables = {name: {**table_shape(conn, name), "comments": _comments(conn, name)} for name in names}
        conn.commit()
    written = []
    for name, shape in tables.items():
        path = out / f"{name}.md"
        path.write_text(_table_page(name, shape))
        written.append(path)
    svg = out / "schema.svg"
    svg.write_text(foreign_key_diagram(tables))
    index = out / "README.md"
    index.write_text(_index(target, tables))
    return [index, svg, *written]


def _comments(conn, qualified: str) -> dict:
    schema, table = qualified.split(".", 1)
    rows = conn.execute(
        "SELECT coalesce(a.attname, ''), d.description FROM pg_description d JOIN pg_class c ON c.oid = d.objoid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attribute a ON a.attrelid = c.oid "
        "AND a.attnum = d.objsubid AND d.objsubid > 0 WHERE d.classoid = 'pg_class'::regclass "
        "AND n.nspname = %s AND c.relname = %s", (schema, table)).fetchall()
    return {column: text for column, text in rows}


def _cell(value) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _table_page(name: str, shape: dict) -> str:
    comments = shape["comments"]
    lines = [f"# {name}", "", comments.get("", "") or "", "",
             f"About {shape['rows_estimate']:,} rows, {shape['size_bytes'] / 1e6:,.1f} MB with indexes.", "",
             "## Columns", "", "| column | type | null | default | comment |", "|---|---|---|---|---|"]
    lines += [f"| {_cell(c['name'])} | {_cell(c['type'])} | {'yes' if c['nullable'] else 'no'} | "
              f"{_cell(c['default'])} | {_cell(comments.get(c['name']))} |" for c in shape["columns"]]
    for title, key in (("Indexes", "indexes"), ("Constraints", "constraints"), ("Triggers", "triggers")):
        lines += ["", f"## {title}", ""]
        lines += [f"- `{item['name']}`: `{item['definition']}`" for item in shape[key]] or ["(none)"]
    return "\n".join(lines) + "\n"


def _index(target: Target, tables: dict) -> str:
    lines = [f"# Schema of {target.dbname}", "", "Written by `airmigrate docs`; the history of changes is in "
             "[CHANGELOG.md](CHANGELOG.md).", "", "![foreign keys](schema.svg)", "", "| table | rows | columns | "
             "comment |", "|---|---|---|---|"]
    lines += [f"| [{name}]({name}.md) | {shape['rows_estimate']:,} | {len(shape['columns'])} | "
              f"{_cell(shape['comments'].get(''))} |" for name, shape in tables.items()]
    return "\n".join(lines) + "\n"
