"""Which worker ran which batch, for the report: one row per worker (the Celery node, or host, with the process
and the shard: :mod:`airmigrate.worker_name`) with its batches as compact number ranges and its rows."""

from __future__ import annotations


def by_worker(batches: list[dict]) -> list[dict]:
    """The succeeded and failed batches grouped by the worker recorded on them (split batches are replaced by
    their halves; pending ones have run nowhere yet)."""
    groups: dict[str, list[dict]] = {}
    for batch in batches:
        if batch.get("worker") and batch["status"] in ("succeeded", "failed"):
            groups.setdefault(batch["worker"], []).append(batch)
    return [{"worker": worker, "batches": len(rows), "rows": sum(b["rows"] or 0 for b in rows),
             "failed": sum(1 for b in rows if b["status"] == "failed"),
             "batch_nos": ranges(sorted(b["batch_no"] for b in rows))}
            for worker, rows in sorted(groups.items())]


def ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    out: list[str] = []
    start = prev = None
    for n in numbers:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = n
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ", ".join(out)
