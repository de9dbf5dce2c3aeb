"""The bench's figures: ratios, medians, the comparison with the best fixed loop, the table and the plot."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path


def figures(run: dict, asked: dict[str, float]) -> dict:
    """One run's figures per scenario, with every ratio against that run's single UPDATE and application alone;
    `asked`: the app_latency_ratio of each protecting scenario."""
    update_rps = run["scenarios"]["update"]["rows_per_s"]
    out = {}
    for name, s in run["scenarios"].items():
        base = s.get("baseline") or run["baseline"]  # the application alone just before and after this scenario
        row = {"name": name, "rows_per_s": s["rows_per_s"], "ratio_to_update": s["rows_per_s"] / update_rps,
               "asked_ratio": asked.get(name), "zero_tps_seconds": s["app"]["zero_tps_seconds"],
               "idle_cpu": s["app"]["idle_cpu"], "peak_rss_mb": s.get("peak_rss_mb"), "errors": s.get("errors") or [],
               "wal_bytes_per_row": float(s.get("wal_bytes_per_row") or 0), "passes": s.get("passes", 1),
               "pacer_mean_budget": (s.get("pacing") or {}).get("mean_budget"),
               "pacer_mean_latency_ratio": (s.get("pacing") or {}).get("mean_latency_ratio"),
               "pacer_decisions": (s.get("pacing") or {}).get("decisions")}
        for kind in ("quiet", "busy"):
            app, alone = s["app"][kind], base[kind]
            for stat in ("p50_ms", "p99_ms", "max_ms", "tps", "late", "skipped", "idle_cpu"):
                row[f"{kind}_{stat}"] = app[stat]
            for stat in ("p50", "p99", "max"):
                mine, theirs = app[f"{stat}_ms"], alone[f"{stat}_ms"]
                row[f"{kind}_{stat}_ratio"] = mine / theirs if mine is not None and theirs else None
        row["worst_p99_ratio"] = worst(row)
        out[name] = row
    return out


def median_of(runs: list[dict]) -> dict:
    """Per scenario and figure, the median over runs (numbers only; the rest from the first run)."""
    merged = {}
    for name in runs[0]:
        rows = [r[name] for r in runs if name in r]
        row = dict(rows[0])
        for key, value in rows[0].items():
            values = [r.get(key) for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and values:
                row[key] = statistics.median(values)
        row["runs"] = len(rows)
        merged[name] = row
    return merged


def noise_line(runs: list[dict]) -> str:
    """The application alone against the alone cycles beside it, every run pooled: the range a scenario's ratio
    must leave before it says anything about the backfill."""
    parts = []
    for kind in ("quiet", "busy"):
        ratios = sorted(r for run in runs for r in (run.get("alone_noise") or {}).get(kind, []))
        if ratios:
            parts.append(f"{kind} {ratios[0]:.2f}-{ratios[-1]:.2f} (median {statistics.median(ratios):.2f}, "
                         f"{len(ratios)} cycles)")
    return ("noise: the application alone, each cycle's p99 over the alone cycles beside it: " + "; ".join(parts)
            if parts else "noise: too few application-alone cycles to say")


def baseline_figures(runs: list[dict]) -> dict:
    out = {}
    for kind in ("quiet", "busy"):
        for stat in ("p50_ms", "p99_ms", "max_ms", "tps", "late", "skipped", "idle_cpu"):
            values = [r["baseline"][kind][stat] for r in runs if r["baseline"][kind][stat] is not None]
            out[f"{kind}_{stat}"] = statistics.median(values) if values else None
    out["zero_tps_seconds"] = statistics.median(r["baseline"]["zero_tps_seconds"] for r in runs)
    out["idle_cpu"] = statistics.median(r["baseline"]["idle_cpu"] or 0 for r in runs)
    return out


def worst(row: dict) -> float | None:
    """The application's p99 ratio in its worse phase: the harm a setting does (None without both phases)."""
    quiet, busy = row.get("quiet_p99_ratio"), row.get("busy_p99_ratio")
    return None if quiet is None or busy is None else max(quiet, busy)


def best_loop(table: dict, harm: float) -> dict | None:
    """The fastest hand-written loop setting (any batch, sleep, workers) whose worse-phase p99 ratio is at most
    `harm`: what a DBA tuning by hand would have picked for that harm, had they known it."""
    holding = [r for n, r in table.items() if n.startswith("loop") and r.get("worst_p99_ratio") is not None
               and r["worst_p99_ratio"] <= harm]
    return max(holding, key=lambda r: r["rows_per_s"], default=None)


def targets(table: dict, base: dict) -> list[str]:
    """Issue 20's targets against this run's figures (text for the log and the README)."""
    lines = []
    for name, row in table.items():
        if not row.get("asked_ratio"):
            continue
        limit, harm = row["asked_ratio"] * 1.1, row.get("worst_p99_ratio")
        if harm is None:
            lines.append(f"{name}: no figures for both phases")
            continue
        lines.append(f"{name}: app p99 ratio in the worse phase {harm:.2f} (median over runs of each run's worse "
                     f"phase; the phases' medians: quiet {fmt(row['quiet_p99_ratio'])}, busy "
                     f"{fmt(row['busy_p99_ratio'])}) (target <= {limit:.2f}): "
                     f"{'met' if harm <= limit else f'MISSED by {harm / limit:.2f}x'}")
        for what, at in (("at the same harm", harm), ("at the asked harm", max(harm, limit))):
            loop = best_loop(table, at)
            lines.append(f"  {what} (p99 ratio <= {at:.2f}): " + (
                f"best loop {loop['name']} {loop['rows_per_s']:,.0f} rows/s (p99 {loop['worst_p99_ratio']:.2f}); "
                f"{name} {row['rows_per_s']:,.0f} = {row['rows_per_s'] / loop['rows_per_s']:.2f}x (target >= 1.25)"
                if loop else "no loop setting holds it"))
    update = table["update"]["rows_per_s"]
    if "airmigrate" in table:
        row = table["airmigrate"]
        parallel = max((r for n, r in table.items() if n.startswith("loop") and " x" in n),
                       key=lambda r: r["rows_per_s"], default=None)
        lines.append(f"airmigrate (full speed): {row['rows_per_s'] / update:.2f}x the single UPDATE (target >= 1.5)"
                     + (f", {row['rows_per_s'] / parallel['rows_per_s']:.2f}x the parallel loop {parallel['name']} "
                        "(target >= 0.95)" if parallel else "")
                     + f", {row['zero_tps_seconds']:.0f} s at zero tps (target 0)")
    if "pandas" in table:
        lines.append(f"pandas: {table['pandas']['ratio_to_update']:.2f}x the single UPDATE (target >= 0.7)")
    return lines


def fmt(v, spec="{:.2f}") -> str:
    return "-" if v is None else spec.format(v)


def print_table(table: dict, base: dict, meta: dict) -> None:
    print(f"\n{meta['rows']:,} rows; application pgbench -N as role app at {meta['rates']['quiet']:,.0f} (quiet) / "
          f"{meta['rates']['busy']:,.0f} (busy) tps, {meta['phase_s']:g} s phases; median of {meta['runs']} run(s)")
    print(f"application alone: quiet p50/p99/max {fmt(base['quiet_p50_ms'], '{:.1f}')}/{fmt(base['quiet_p99_ms'], '{:.1f}')}"
          f"/{fmt(base['quiet_max_ms'], '{:.0f}')} ms, busy {fmt(base['busy_p50_ms'], '{:.1f}')}/"
          f"{fmt(base['busy_p99_ms'], '{:.1f}')}/{fmt(base['busy_max_ms'], '{:.0f}')} ms, idle cpu "
          f"{fmt(base['quiet_idle_cpu'], '{:.0%}')} quiet / {fmt(base['busy_idle_cpu'], '{:.0%}')} busy")
    print(f"{'scenario':<19} {'rows/s':>9} {'x upd':>6} {'asked':>5} | {'quiet p50 p99 max (ratio)':>25} | "
          f"{'busy p50 p99 max (ratio)':>25} | {'late':>5} {'skip':>5} {'0tps':>4} {'idle':>5}")
    for name, row in table.items():
        quiet = f"{fmt(row['quiet_p50_ratio'])} {fmt(row['quiet_p99_ratio'])} {fmt(row['quiet_max_ratio'], '{:.1f}')}"
        busy = f"{fmt(row['busy_p50_ratio'])} {fmt(row['busy_p99_ratio'])} {fmt(row['busy_max_ratio'], '{:.1f}')}"
        late = (row["quiet_late"] or 0) + (row["busy_late"] or 0)
        skipped = (row["quiet_skipped"] or 0) + (row["busy_skipped"] or 0)
        print(f"{name:<19} {row['rows_per_s']:>9,.0f} {row['ratio_to_update']:>6.2f} {fmt(row['asked_ratio'], '{:g}'):>5} | "
              f"{quiet:>25} | {busy:>25} | {late:>5.0f} {skipped:>5.0f} {row['zero_tps_seconds']:>4.0f} "
              f"{fmt(row['idle_cpu'], '{:.0%}'):>5}"
              + (f" {row['passes']:.0f} passes" if (row.get("passes") or 1) > 1 else "")
              + (f" (pacer saw {row['pacer_mean_latency_ratio']:.2f}x)" if row.get("pacer_mean_latency_ratio") else "")
              + (" ERR" if row.get("errors") else ""), flush=True)


# ------------------------------------------------------------------------------------------- plot

def plot(result: dict, png: Path) -> bool:
    """Top: rows/s against the application's p99 ratio in its worse phase, the loop's settings (their upper
    envelope joined) and airmigrate's points. Below: each protecting scenario second by second, the pacer's
    budget and the signal it held beside the application's p99 ratio (a damped pacer moves in steps, not saws)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"no matplotlib in {sys.executable}: no plot (run `python bench/backfill_bench.py --plot-from FILE` "
              "with a Python that has it)")
        return False
    lines = result.get("timelines") or {}
    fig = plt.figure(figsize=(11, 8 if lines else 5), dpi=100)
    grid = fig.add_gridspec(2 if lines else 1, max(1, len(lines)), height_ratios=[3, 2] if lines else [1])
    pareto(fig.add_subplot(grid[0, :]), result)
    for n, (name, line) in enumerate(sorted(lines.items())):
        timeline(fig.add_subplot(grid[1, n]), name, line)
    fig.tight_layout()
    fig.savefig(png)
    print(f"plot: {png}")
    return True


def pareto(ax, result: dict) -> None:
    table = result["table"]
    loops = sorted((r for n, r in table.items() if n.startswith("loop") and r.get("worst_p99_ratio")),
                   key=lambda r: r["worst_p99_ratio"])
    envelope, best = [], 0.0
    for r in loops:
        if r["rows_per_s"] > best:
            envelope.append(r)
            best = r["rows_per_s"]
    ax.plot([r["worst_p99_ratio"] for r in loops], [r["rows_per_s"] for r in loops], "o", color="grey", alpha=0.5)
    ax.plot([r["worst_p99_ratio"] for r in envelope], [r["rows_per_s"] for r in envelope], "-", color="grey",
            label="hand-written keyset loop (batch/sleep ms, xN workers): best at each harm")
    for r in loops:
        ax.annotate(r["name"].replace("loop ", ""), (r["worst_p99_ratio"], r["rows_per_s"]), fontsize=6,
                    xytext=(3, -8), textcoords="offset points", color="grey")
    for name, row in table.items():
        if name.startswith("loop") or not row.get("worst_p99_ratio"):
            continue
        style = {"update": ("s", "black"), "pandas": ("D", "tab:purple"), "airmigrate": ("^", "tab:red")}.get(
            name, ("o", "tab:blue"))
        ax.plot(row["worst_p99_ratio"], row["rows_per_s"], style[0], color=style[1], markersize=8)
        ax.annotate(name, (row["worst_p99_ratio"], row["rows_per_s"]), fontsize=8, xytext=(5, 4),
                    textcoords="offset points", color=style[1])
        if row.get("asked_ratio"):
            ax.axvline(row["asked_ratio"], color="tab:blue", alpha=0.15, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("application p99 latency, ratio to the application alone, in the worse of the two phases "
                  "(dashed: the asked ratios)", fontsize=8)
    ax.set_ylabel("backfill rows/s")
    meta = result["meta"]
    ax.set_title(f"{meta['rows']:,} rows, median of {meta['runs']} run(s), {meta['phase_s']:g} s phases "
                 f"({'quick' if meta['quick'] else 'full'}), {meta.get('date', '')}, load "
                 f"{meta['load_before'][0]:.1f} -> {meta['load_after'][0]:.1f}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)


def timeline(ax, name: str, line: dict) -> None:
    """One protecting scenario: budget (left), the pacer's signal and the application's p99 ratio (right)."""
    start = line["start"]
    log = line["log"]
    ax.step([t - start for t, *_ in log], [b for _t, b, *_ in log], where="post", color="tab:green",
            label="budget (shards)")
    ax.set_ylim(0, 2.1)
    ax.set_xlabel("s (quiet, then busy)", fontsize=7)
    ax.set_title(name, fontsize=8)
    right = ax.twinx()
    base = line["baseline_p99_ms"]
    right.plot([s - start + 0.5 for s, _p, _k in line["seconds"]],
               [p / base[k] for _s, p, k in line["seconds"]], ".-", color="tab:red", label="app p99 ratio")
    right.plot([t - start for t, _b, r, _d in log if r is not None], [r for _t, _b, r, _d in log if r is not None],
               "x", color="tab:blue", label="pacer's signal")
    right.axhline(line["asked"], color="grey", linestyle="--")
    right.set_yscale("log")
    right.yaxis.set_major_formatter(matplotlib_ticker().ScalarFormatter())
    right.yaxis.set_minor_formatter(matplotlib_ticker().NullFormatter())
    ax.tick_params(labelsize=7)
    right.tick_params(labelsize=7)
    if name.endswith("1.1") or len(ax.figure.axes) <= 3:
        ax.legend(loc="upper left", fontsize=6)
        right.legend(loc="upper right", fontsize=6)


def matplotlib_ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def timelines(run: dict, asked: dict[str, float]) -> dict:
    """The first run's protecting scenarios, second by second, for the plot."""
    out = {}
    for name, s in run["scenarios"].items():
        base = {kind: (s.get("baseline") or run["baseline"])[kind]["p99_ms"] for kind in ("quiet", "busy")}
        if name in asked and (s.get("pacing") or {}).get("log") and all(base.values()):
            out[name] = {"start": s["start"], "seconds": s.get("app_seconds") or [], "log": s["pacing"]["log"],
                         "baseline_p99_ms": base, "asked": asked[name]}
    return out


START_S = 2  # the first seconds of a cycle, told apart from the rest of its quiet phase


def start_effect(runs: list[dict]) -> dict[str, list[float]]:
    """Per scenario (and the application alone): [the p99 ratio of the quiet phase's first START_S seconds, that
    of the rest of the quiet phase], each second's p99 over the phase's p99 alone, the median over the seconds of
    every run. Tells a harm of the scenario's start (processes, connections, a pacer without a baseline yet) from
    one of the cycle's start, which the application alone would show too."""
    first: dict[str, list[float]] = {}
    rest: dict[str, list[float]] = {}

    def add(name: str, seconds: list, base: dict) -> None:
        quiet = [p / base["quiet"]["p99_ms"] for _s, p, kind in seconds if kind == "quiet" and base["quiet"]["p99_ms"]]
        first.setdefault(name, []).extend(quiet[:START_S])
        rest.setdefault(name, []).extend(quiet[START_S:])

    for run in runs:
        for seconds in run.get("alone_seconds") or []:
            add("application alone", seconds, run["baseline"])
        for name, s in run["scenarios"].items():
            if s.get("app_seconds"):
                add(name, s["app_seconds"], s.get("baseline") or run["baseline"])
    return {name: [statistics.median(first[name]), statistics.median(rest[name])]
            for name in first if first[name] and rest[name]}


def print_start_effect(effect: dict[str, list[float]]) -> None:
    if not effect:
        return
    print(f"quiet phase, p99 per second over the phase's p99 alone (median): first {START_S} s / the rest")
    for name, (start, rest) in effect.items():
        print(f"  {name:<22} {start:5.2f} / {rest:5.2f}")
