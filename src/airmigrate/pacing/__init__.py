"""Pacing: the backfill goes as fast as it can without hurting the application's latency more than asked.

:mod:`.controller` is the duty-cycle logic (pure), :mod:`.signals` reads the application's impact from
PostgreSQL, :mod:`.pacer` runs them for a shard. The batch size (the inner loop) stays in
:mod:`airmigrate.stages.backfill.tuning`.
"""

from airmigrate.pacing.pacer import UNSET, Pacer

__all__ = ["Pacer", "UNSET"]
