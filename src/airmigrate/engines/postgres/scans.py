"""Does an UPDATE or DELETE with a WHERE read the whole table? The planner says, not the WHERE's presence.

`DELETE FROM orders WHERE is_obsolete` has a WHERE, and `plan` used to say "no scan": without an index on
`is_obsolete` it reads every row of the table (holding its row locks to the end of the transaction). With the
target connected, ``EXPLAIN`` (never executed, no ANALYZE) shows whether the table is read by a sequential
scan; without the target nobody can know, and the caller says so.
"""

from __future__ import annotations

from pglast.stream import RawStream


def seq_scanned(conn, node, relation: str) -> bool | None:
    """True when the planner reads `relation` with a Seq Scan for this statement, False when it uses an index;
    None when it cannot tell (no target, a table up.sql creates, batch placeholders in the statement)."""
    if conn is None:
        return None
    try:
        text = RawStream()(node)
    except Exception:  # noqa: BLE001  (a tree the printer does not know: no answer)
        return None
    if "%(" in text:  # a per-batch statement: bounded by the key's index by construction
        return None
    try:
        with conn.transaction():
            plan = conn.execute("EXPLAIN (FORMAT JSON) " + text).fetchone()[0]
    except Exception:  # noqa: BLE001  (EXPLAIN refused: the table does not exist yet, ...)
        return None
    name = relation.split(".")[-1].strip('"')
    return any(node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == name
               for node in _nodes(plan[0]["Plan"]))


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)
