"""The final sweep of delete_rows and move_rows: the rows that still match `where` once the walk reached the end.

The walk hands out key ranges in order, so it sees every row written ahead of its cursor but none written behind
it: a row the application inserted with a lower key, or updated so that it matches `where`, after its range was
done. When the walk reaches the end and no batch of the run is unfinished (the last shard to finish gets here; a
claimed batch is still `pending` until it commits, so no shard sweeps while another works), the sweep makes
batches over the keys of the rows matching `where` now, anywhere in the table (the ranges of
:meth:`Key.next_range` with the condition: `size` matching keys each), and the shards run them like any other,
each in one transaction with its state row, so kill -9 safety and pacing are unchanged. Then the walk goes on
from where it was (rows written past its end meanwhile) and, at the end, sweeps again: the run ends when a sweep
finds nothing. An application that keeps writing matching rows behind the cursor would keep the run going, so
after MAX_SWEEPS sweeps that made batches the run ends anyway, with a warning naming how many rows match
(recorded in the run's facts as `sweep_left`; the migration's expectation suite then fails the validation).
A failed batch also holds back the sweep: the run reports it, and its retry (`retry_failed`) ends with the sweep.
"""

from __future__ import annotations

import logging

from airmigrate import engines, state
from airmigrate.stages.backfill.keys import Key

log = logging.getLogger(__name__)

MAX_SWEEPS = 3


def sweep_batches(conn, key: Key, run_id: int, condition: str, size: int, next_batch_no: int) -> int | None:
    """In the transaction holding the run's cursor row, once no range is left after the cursor: None while a
    batch of the run is unfinished (the shard stops; the one finishing last sweeps), else the number of batches
    made over the rows matching `condition` (0: none match, or MAX_SWEEPS are done: the walk is over)."""
    if conn.execute("SELECT EXISTS (SELECT 1 FROM airmigrate.batches WHERE run_id = %s AND status IN "
                    "('pending', 'running', 'failed'))", (run_id,)).fetchone()[0]:
        return None
    row = conn.execute(engines.of(conn).state_sql().SWEEPS_DONE, (run_id,)).fetchone()
    done = (row[0] if row else None) or 0
    ranges = list(_matching_ranges(conn, key, condition, size, None if done < MAX_SWEEPS else 1))
    if not ranges:
        return 0
    if done >= MAX_SWEEPS:
        left = key.count_where(conn, condition)
        state.add_facts(conn, run_id, sweep_left=left)
        log.warning("%s row(s) still match `where` after %d final sweeps: the application keeps writing rows that "
                    "match it behind the batches; the run ends here (the validation's suite will say so)",
                    f"{left:,}", done)
        return 0
    for offset, (lo, hi) in enumerate(ranges):
        conn.execute("INSERT INTO airmigrate.batches (run_id, batch_no, lo, hi, size) VALUES (%s, %s, %s, %s, %s)",
                     (run_id, next_batch_no + offset, lo, hi, size))
    conn.execute("UPDATE airmigrate.cursors SET next_batch_no = next_batch_no + %s WHERE run_id = %s",
                 (len(ranges), run_id))
    state.add_facts(conn, run_id, sweeps=done + 1)
    log.info("final sweep %d: rows matching `where` were written behind the batches: %d batch(es) over them "
             "(%s .. %s)", done + 1, len(ranges), ranges[0][0], ranges[-1][1])
    return len(ranges)


def _matching_ranges(conn, key: Key, condition: str, size: int, limit: int | None = None):
    """The ranges of `size` matching keys each, in key order (at most `limit` of them)."""
    position, made = None, 0
    while (limit is None or made < limit) and (bounds := key.next_range(conn, position, size, condition)):
        yield bounds
        position, made = bounds[1], made + 1

