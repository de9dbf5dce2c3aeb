"""The migration page's chart as inline SVG (no script, no CDN): rows/s over time beside the application's
latency ratio and the pacing target, with pauses as gaps."""

from __future__ import annotations

from datetime import datetime, timezone


def _segments(points: list[dict]) -> list[list[dict]]:
    """The points split where nothing was logged for a while (a pause): the chart shows a gap there, not a line
    across it. A gap is 5 s, or 2.5 times the usual spacing when points are sparser (10 s buckets)."""
    if len(points) < 2:
        return [points]
    steps = sorted(b["at"].timestamp() - a["at"].timestamp() for a, b in zip(points, points[1:]))
    gap = max(5.0, 2.5 * steps[len(steps) // 2])
    out = [[points[0]]]
    for a, b in zip(points, points[1:]):
        if b["at"].timestamp() - a["at"].timestamp() > gap:
            out.append([])
        out[-1].append(b)
    return out


def chart_svg(series: list[dict], target_now: float | None = None, width: int = 760, height: int = 220) -> str:
    """Rows/s (area, left axis) and the application's latency ratio (line, right axis) over time, as inline SVG;
    pauses as gaps; the pacing target (``target_now``: the current one) as a labelled line on the ratio's axis."""
    from html import escape

    points = _smoothed([p for p in series if p["at"] is not None])
    if len(points) < 2:
        return ('<svg class="chart" viewBox="0 0 %d 60" role="img" aria-label="no data yet"><text x="10" y="35">'
                "No throughput recorded yet: the chart fills in while the backfill runs.</text></svg>" % width)
    pad_l, pad_r, pad_t, pad_b = 56, 48, 12, 28
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    t0, t1 = points[0]["at"].timestamp(), points[-1]["at"].timestamp()
    span = max(t1 - t0, 1.0)
    max_rps = max((p["rows_per_s"] or 0) for p in points) or 1.0
    ratios = [p["latency_ratio"] for p in points if p["latency_ratio"] is not None]
    targets = [p["target_ratio"] for p in points if p["target_ratio"] is not None]
    if target_now is not None:
        targets.append(float(target_now))  # the target now, set from the console after the last log line
    max_ratio = max(ratios + targets + [2.0]) * 1.1

    def x(p):
        return pad_l + w * (p["at"].timestamp() - t0) / span

    def y_rps(v):
        return pad_t + h - h * (v or 0) / max_rps

    def y_ratio(v):
        return pad_t + h - h * v / max_ratio

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="rows per second and the application latency ratio over time">']
    for segment in _segments(points):
        area = " ".join(f"{x(p):.1f},{y_rps(p['rows_per_s']):.1f}" for p in segment)
        parts.append(f'<polygon class="rps" points="{x(segment[0]):.1f},{pad_t + h:.1f} {area} '
                     f'{x(segment[-1]):.1f},{pad_t + h:.1f}"/>')
        lat = [p for p in segment if p["latency_ratio"] is not None]
        if len(lat) >= 2:
            parts.append('<polyline class="latency" points="' +
                         " ".join(f"{x(p):.1f},{y_ratio(p['latency_ratio']):.1f}" for p in lat) + '"/>')
    lat = [p for p in points if p["latency_ratio"] is not None]
    if targets:
        yt = y_ratio(targets[-1])
        parts.append(f'<line class="target" x1="{pad_l}" x2="{pad_l + w}" y1="{yt:.1f}" y2="{yt:.1f}"/>'
                     f'<text class="axis target-label" x="{pad_l + w - 4}" y="{yt - 4:.1f}" text-anchor="end">'
                     f'pacing target now {targets[-1]:.2f}x (right axis)</text>')
    parts += [f'<line class="axisline" x1="{pad_l}" x2="{pad_l}" y1="{pad_t}" y2="{pad_t + h}"/>',
              f'<line class="axisline" x1="{pad_l}" x2="{pad_l + w}" y1="{pad_t + h}" y2="{pad_t + h}"/>',
              f'<text class="axis" x="{pad_l - 6}" y="{pad_t + 10}" text-anchor="end">{max_rps:,.0f}</text>',
              f'<text class="axis" x="{pad_l - 6}" y="{pad_t + h}" text-anchor="end">0</text>',
              f'<text class="axis rps-label" x="4" y="{pad_t + h / 2:.0f}">rows/s</text>']
    if lat or targets:  # the ratio axis: the latency line and the pacing target are read on it
        parts.append(f'<text class="axis latency-label" x="{pad_l + w + 6}" y="{pad_t + 10}">{max_ratio:.1f}x</text>'
                     f'<text class="axis latency-label" x="{pad_l + w + 6}" y="{pad_t + h}">0x</text>')
    for frac in (0, 0.5, 1):
        at = datetime.fromtimestamp(t0 + span * frac, timezone.utc)
        parts.append(f'<text class="axis" x="{pad_l + w * frac:.0f}" y="{height - 8}" '
                     f'text-anchor="{"start" if frac == 0 else "end" if frac == 1 else "middle"}">'
                     f'{escape(at.strftime("%H:%M:%S"))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _smoothed(points: list[dict], seconds: float = 10.0) -> list[dict]:
    """Rows/s as a trailing mean over ``seconds``: the pacer logs every second, a batch lands in one of them."""
    out, start = [], 0
    for i, p in enumerate(points):
        while p["at"].timestamp() - points[start]["at"].timestamp() > seconds:
            start += 1
        window = [q["rows_per_s"] or 0 for q in points[start:i + 1]]
        out.append({**p, "rows_per_s": sum(window) / len(window)})
    return out
