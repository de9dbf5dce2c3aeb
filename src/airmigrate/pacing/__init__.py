"""Pacing: the backfill goes as fast as it can without hurting the application's latency more than asked.

:mod:`.controller` is the duty-cycle logic (pure), :mod:`.signals` reads the application's impact from the
database through the engine's ``pacing_sql`` (``Engine.pacing_sql()``: PostgreSQL's statistics views, MySQL's
information_schema and performance_schema), :mod:`.leader` runs them in one shard's thread for the whole run, and
:mod:`.pacer` is every shard's side (the shared budget, its pauses, taking the lead over). The batch size (the inner
loop) stays in :mod:`airmigrate.stages.backfill.tuning`.
"""

from airmigrate.pacing.pacer import UNSET, Pacer, open_shared_row

__all__ = ["Pacer", "UNSET", "open_shared_row"]
