"""Between the batches of a bulk delete: VACUUM the table (plain, never FULL) once its dead tuples pass the
operation's threshold, from an autocommit connection of its own (VACUUM cannot run in a transaction), so
the dead rows a delete leaves are reclaimed as it goes instead of all at once afterwards."""

from __future__ import annotations

import logging
import time

from airmigrate import engines, operations
from airmigrate.db import Target, connect
from airmigrate.spec import Migration

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # the statistics' dead-tuple count is read at most this often (it lags up to a second)


class Upkeep:
    """Counts the rows this shard deleted since its last VACUUM and reads the table's dead tuples (which
    include the other shards' and the application's); past the threshold, VACUUM."""

    def __init__(self, target: Target, migration: Migration):
        self.target, self.migration = target, migration
        self.threshold = operations.for_migration(migration).vacuum_dead_tuples if migration.spec.operations else None
        self.checked, self.vacuums, self.peak, self.deleted = 0.0, 0, 0, 0

    def after_batch(self, rows: int) -> bool:
        """True when it vacuumed the table."""
        if not self.threshold:
            return False
        self.deleted += rows
        if self.deleted < self.threshold and time.monotonic() - self.checked < CHECK_EVERY_S:
            return False
        self.checked = time.monotonic()
        spec, engine = self.migration.spec, engines.current()
        with connect(self.target, autocommit=True) as conn:
            dead = max(self.deleted, engine.dead_tuples(conn, spec.schema_name, spec.table_name))
            self.peak = max(self.peak, dead)
            if dead < self.threshold:
                return False
            started = time.monotonic()
            if not engine.vacuum(conn, spec.schema_name, spec.table_name, spec.lock_timeout_ms):
                log.info("%s has %s dead tuples; another vacuum holds it", spec.table, f"{dead:,}")
                return False
        self.vacuums, self.deleted = self.vacuums + 1, 0
        log.info("VACUUM %s: %s dead tuples past the threshold of %s, %.1fs", spec.table, f"{dead:,}",
                 f"{self.threshold:,}", time.monotonic() - started)
        return True
