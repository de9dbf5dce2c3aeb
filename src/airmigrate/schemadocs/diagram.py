"""A foreign-key diagram as SVG, made here (no Graphviz, no web service): one box per table with its
columns, key columns marked, an arrow per foreign key; tables laid out in columns by dependency depth
(referenced tables to the left)."""

from __future__ import annotations

from html import escape

BOX_W, ROW_H, HEAD_H, GAP_X, GAP_Y, MAX_ROWS = 230, 16, 22, 80, 24, 14


def foreign_key_diagram(tables: dict, marks: dict | None = None) -> str:
    """`tables`: qualified name -> table_shape(); `marks`: optional {table: {column: "added"|"removed"}}."""
    marks = marks or {}
    depth = _depths(tables)
    positions, heights, column_y = {}, {}, {}
    for level in sorted(set(depth.values())):
        y = 10
        for name in sorted(n for n in tables if depth[n] == level):
            rows = min(len(tables[name]["columns"]), MAX_ROWS) + (1 if len(tables[name]["columns"]) > MAX_ROWS else 0)
            positions[name], heights[name] = (10 + level * (BOX_W + GAP_X), y), HEAD_H + rows * ROW_H + 6
            y += heights[name] + GAP_Y
            column_y[name] = y
    width = 20 + (max(depth.values(), default=0) + 1) * (BOX_W + GAP_X)
    height = max([positions[n][1] + heights[n] for n in tables] or [40]) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    for name, shape in tables.items():
        parts += _box(name, shape, positions[name], heights[name], marks.get(name, {}))
    for name, shape in tables.items():
        for fk in shape.get("foreign_keys", []):
            if fk["from_table"] == name and fk["to_table"] in positions:
                parts.append(_arrow(positions[name], heights[name], positions[fk["to_table"]],
                                    heights[fk["to_table"]], ", ".join(fk["from_columns"])))
    parts.append("</svg>")
    return "\n".join(parts)


def _depths(tables: dict) -> dict[str, int]:
    """0 for tables that reference nothing here; else one more than the deepest table they reference."""
    refs = {n: {fk["to_table"] for fk in s.get("foreign_keys", []) if fk["from_table"] == n and fk["to_table"] in tables
                and fk["to_table"] != n} for n, s in tables.items()}
    depth: dict[str, int] = {}

    def of(name: str, seen: frozenset) -> int:
        if name not in depth:
            depth[name] = 0 if not refs[name] or name in seen else \
                1 + max(of(r, seen | {name}) for r in refs[name] if r not in seen | {name}) \
                if refs[name] - (seen | {name}) else 0
        return depth[name]

    for name in tables:
        of(name, frozenset())
    return depth


def _box(name: str, shape: dict, at: tuple[int, int], height: int, marks: dict) -> list[str]:
    x, y = at
    keys = {c for con in shape.get("constraints", []) if con["kind"] == "primary key"
            for c in con["definition"].split("(", 1)[-1].rstrip(")").replace('"', "").split(", ")}
    out = [f'<g><rect x="{x}" y="{y}" width="{BOX_W}" height="{height}" rx="4" fill="#fff" stroke="#446"/>',
           f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{HEAD_H}" rx="4" fill="#dde4f0" stroke="#446"/>',
           f'<text x="{x + 8}" y="{y + 15}" font-weight="bold">{escape(name)}</text>']
    columns = shape["columns"]
    for i, column in enumerate(columns[:MAX_ROWS]):
        mark = marks.get(column["name"])
        color = {"added": "#1a7f37", "removed": "#b42318"}.get(mark, "#222")
        label = ("🔑 " if column["name"] in keys else "") + f"{column['name']}  {column['type']}"
        label += {"added": "  (+)", "removed": "  (-)"}.get(mark, "")
        out.append(f'<text x="{x + 8}" y="{y + HEAD_H + 12 + i * ROW_H}" fill="{color}">{escape(label[:38])}</text>')
    if len(columns) > MAX_ROWS:
        out.append(f'<text x="{x + 8}" y="{y + HEAD_H + 12 + MAX_ROWS * ROW_H}" fill="#666">… '
                   f'{len(columns) - MAX_ROWS} more</text>')
    out.append("</g>")
    return out


def _arrow(src: tuple[int, int], src_h: int, dst: tuple[int, int], dst_h: int, label: str) -> str:
    x1, y1 = src[0], src[1] + src_h / 2
    x2, y2 = dst[0] + BOX_W, dst[1] + dst_h / 2
    if src[0] == dst[0]:  # same column: go around the right side
        x1 = src[0] + BOX_W
    mid = (x1 + x2) / 2
    return (f'<path d="M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}" fill="none" stroke="#555" '
            f'marker-end="url(#arrow)"><title>{escape(label)}</title></path>')
