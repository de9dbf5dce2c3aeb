"""Inline SVG made here, no external tool: the backfill's rows/s over time, and the touched tables with their
foreign keys. Every text is XML-escaped; the result goes into the HTML as markup."""

from __future__ import annotations

from xml.sax.saxutils import escape

FONT = "font-family:system-ui,sans-serif"


def _t(text) -> str:
    return escape(str(text), {'"': "&quot;"})


def rate_series(batches: list[dict], bins: int = 40) -> list[tuple[float, float]]:
    """(seconds since the first batch started, rows/s) per time bin, from the succeeded batches' finished_at
    and rows. Empty when there are no timed batches."""
    done = [b for b in batches if b["status"] == "succeeded" and b["finished_at"] and b["rows"] is not None]
    if not done:
        return []
    starts = [b["started_at"] or b["finished_at"] for b in done]
    t0 = min(starts)
    t1 = max(b["finished_at"] for b in done)
    span = max((t1 - t0).total_seconds(), 1e-3)
    bins = max(1, min(bins, len(done)))
    width = span / bins
    rows = [0.0] * bins
    for b in done:
        offset = (b["finished_at"] - t0).total_seconds()
        rows[min(bins - 1, int(offset / width))] += b["rows"]
    return [((i + 0.5) * width, r / width) for i, r in enumerate(rows)]


def rate_chart(series: list[tuple[float, float]], width: int = 640, height: int = 200) -> str:
    """A bar chart of rows/s over time with labelled axes."""
    if not series:
        return ""
    left, right, top, bottom = 64, 12, 14, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(rate for _, rate in series) or 1.0
    span = series[-1][0] + series[0][0]  # bins are centred: first centre = half a bin
    bar = plot_w / len(series)
    parts = [f'<svg role="img" aria-label="rows per second over time" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" style="{FONT};font-size:11px">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_t(f"{peak * frac:,.0f}")}</text>')
    for i, (_, rate) in enumerate(series):
        h = plot_h * rate / peak
        parts.append(f'<rect x="{left + i * bar + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar - 1, 1):.1f}" '
                     f'height="{h:.1f}" fill="#3b7dd8"><title>{_t(f"{rate:,.0f} rows/s")}</title></rect>')
    for frac in (0, 0.5, 1):
        x = left + plot_w * frac
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{_t(f"{span * frac:.1f}s")}'
                     "</text>")
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">time since the first '
                 "batch</text>")
    parts.append(f'<text x="12" y="{top + plot_h / 2:.1f}" transform="rotate(-90 12 {top + plot_h / 2:.1f})" '
                 'text-anchor="middle">rows/s</text></svg>')
    return "".join(parts)


def table_diagram(snapshot: dict | None, marks: dict[str, dict[str, str]] | None = None, title: str = "") -> str:
    """Boxes for the tables (name, then one line per column with its type), arrows for the foreign keys.
    ``marks``: table -> column -> "added"/"removed"/"changed" to colour (removed columns are listed struck
    through when given as extra entries)."""
    tables = (snapshot or {}).get("tables") or {}
    if not tables:
        return ""
    marks = marks or {}
    line_h, box_w, gap, pad = 16, 250, 100, 10
    boxes, x = {}, pad
    for name, shape in tables.items():
        cols = [(c["name"], c["type"], marks.get(name, {}).get(c["name"], "")) for c in shape["columns"]]
        cols += [(col, "", "removed") for col, mark in marks.get(name, {}).items()
                 if mark == "removed" and col not in {c["name"] for c in shape["columns"]}]
        height = line_h * (len(cols) + 1) + 8
        boxes[name] = {"x": x, "y": 30, "h": height, "cols": cols, "neighbour": shape.get("neighbour")}
        x += box_w + gap
    width = x - gap + pad
    arrow = "arrow-" + "".join(ch if ch.isalnum() else "-" for ch in (title or "tables"))  # unique per diagram
    height = 30 + max(b["h"] for b in boxes.values()) + 40
    parts = [f'<svg role="img" aria-label="{_t(title or "tables")}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" style="{FONT};font-size:11px">',
             f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    if title:
        parts.append(f'<text x="{pad}" y="16" style="font-weight:bold;font-size:12px">{_t(title)}</text>')
    colours = {"added": "#1a7f37", "removed": "#b42318", "changed": "#9a6700", "": "#222"}
    for name, box in boxes.items():
        fill = "#f3f3f3" if box["neighbour"] else "#eef4fc"
        parts.append(f'<rect x="{box["x"]}" y="{box["y"]}" width="{box_w}" height="{box["h"]}" rx="4" '
                     f'fill="{fill}" stroke="#7a8ca5"/>')
        parts.append(f'<text x="{box["x"] + 8}" y="{box["y"] + 14}" style="font-weight:bold">{_t(name)}</text>')
        parts.append(f'<line x1="{box["x"]}" y1="{box["y"] + 19}" x2="{box["x"] + box_w}" y2="{box["y"] + 19}" '
                     'stroke="#7a8ca5"/>')
        for i, (col, typ, mark) in enumerate(box["cols"]):
            y = box["y"] + 19 + line_h * (i + 1) - 2
            deco = ";text-decoration:line-through" if mark == "removed" else ""
            sign = {"added": "+ ", "removed": "- ", "changed": "~ "}.get(mark, "")
            parts.append(f'<text x="{box["x"] + 8}" y="{y}" fill="{colours[mark]}" style="{deco}">'
                         f'{_t(sign + col)}</text>')
            parts.append(f'<text x="{box["x"] + box_w - 8}" y="{y}" text-anchor="end" fill="#666">'
                         f'{_t(_short(typ))}</text>')
    seen = set()
    for shape in tables.values():
        for fk in shape["foreign_keys"]:
            if fk["name"] + fk["from_table"] in seen or fk["from_table"] not in boxes or fk["to_table"] not in boxes:
                continue
            seen.add(fk["name"] + fk["from_table"])
            src, dst = boxes[fk["from_table"]], boxes[fk["to_table"]]
            label = f'{fk["name"]} ({", ".join(fk["from_columns"])} -> {", ".join(fk["to_columns"])})'
            if src is dst:  # self reference: a loop under the box
                y0 = src["y"] + src["h"]
                x0 = src["x"] + box_w / 2
                parts.append(f'<path d="M{x0 - 30},{y0} C{x0 - 30},{y0 + 30} {x0 + 30},{y0 + 30} {x0 + 30},{y0}" '
                             f'fill="none" stroke="#555" marker-end="url(#{arrow})"/>')
                parts.append(f'<text x="{x0}" y="{y0 + 36}" text-anchor="middle" fill="#555">{_t(label)}</text>')
                continue
            forward = dst["x"] > src["x"]
            x1 = src["x"] + (box_w if forward else 0)
            x2 = dst["x"] + (0 if forward else box_w)
            y1, y2 = src["y"] + 28, dst["y"] + 28
            parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#555" marker-end="url(#{arrow})">'
                         f'<title>{_t(label)}</title></line>')
            parts.append(f'<text x="{(x1 + x2) / 2:.1f}" y="{min(y1, y2) - 4}" text-anchor="middle" fill="#555" '
                         f'style="font-size:9px"><title>{_t(label)}</title>{_t(_short(fk["name"], 18))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
