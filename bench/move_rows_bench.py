"""move_rows on 1,000,000 users (30% matching) into a created users_archive while an application inserts and
updates; a REPEATABLE READ reader counts source + destination in one snapshot the whole time; then the rollback.

The database, the application, the dead-tuple watcher and the run up and down are bench/delete_rows_bench.py's.
`.venv/bin/python bench/move_rows_bench.py [bench/move_rows.json]` prints the figures README.md quotes (and writes
them to the file given); it exits non-zero when one of the "done when" conditions does not hold."""
import threading

import psycopg
from delete_rows_bench import (
    ROWS,
    WHERE,
    App,
    DeadTuples,
    load,
    matching_left,
    migration_of,
    million_database,
    pacing,
    report,
    run_down,
    run_up,
    scalar,
    untouched_identical,
)

from airmigrate.db import connect

DESTINATION = "users_archive"


class Snapshots(threading.Thread):
    """In one REPEATABLE READ snapshot at a time: the original rows in the source + in the destination (must be
    1,000,000 at every commit) and the rows in both (must be 0)."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.target, self.stop = target, threading.Event()
        self.sums, self.overlaps, self.samples = set(), set(), 0

    def run(self):
        with connect(self.target, autocommit=True) as conn:
            while not self.stop.is_set():
                try:
                    self.sample(conn)
                except psycopg.errors.UndefinedTable:  # the rollback's last step dropped the empty destination
                    pass

    def sample(self, conn) -> None:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            total = conn.execute("SELECT count(*) FROM users WHERE id <= %s", (ROWS,)).fetchone()[0]
            if conn.execute("SELECT to_regclass(%s)", (DESTINATION,)).fetchone()[0] is not None:
                total += conn.execute(f"SELECT count(*) FROM {DESTINATION} WHERE id <= %s", (ROWS,)).fetchone()[0]
                if self.samples % 4 == 0:  # the join costs more than the counts: every 4th snapshot
                    self.overlaps.add(conn.execute(f"SELECT count(*) FROM {DESTINATION} d JOIN users u USING (id)"
                                                   ).fetchone()[0])
        self.sums.add(total)
        self.samples += 1


def main() -> dict:
    out = {"load_before": load(), "where": WHERE}
    with million_database() as target:
        m = migration_of("0061_move_thirty_percent", {"op": "move_rows", "to": DESTINATION, "where": WHERE,
                                                       "create": True})
        lock_timeout_s = m.spec.lock_timeout_ms / 1000
        out["lock_timeout_s"] = lock_timeout_s
        out["expected"] = scalar(target, f"SELECT count(*) FROM users WHERE {WHERE}")
        app, dead, snapshots = App(target), DeadTuples(target), Snapshots(target)
        for t in (app, dead, snapshots):
            t.start()
        out["app_alone"] = app.baseline()
        run_id, out["move_seconds"] = run_up(target, m)
        out["matching_left_in_source_le_1M"] = scalar(target, f"SELECT count(*) FROM users WHERE ({WHERE}) "
                                                              f"AND id <= {ROWS}")
        out["matching_left_in_source_written_before_the_last_batch"], out["matching_written_after_it"] = \
            matching_left(target, run_id)
        with connect(target) as c:
            out["in_destination"], out["in_destination_distinct"] = c.execute(
                f"SELECT count(*), count(DISTINCT id) FROM {DESTINATION}").fetchone()
            out["archived"] = c.execute('SELECT count(*) FROM airmigrate."archive_0061_move_thirty_percent"'
                                        ).fetchone()[0]
            out["moved_by_batches"] = int(c.execute("SELECT sum(rows) FROM airmigrate.batches WHERE run_id = %s "
                                                    "AND status = 'succeeded'", (run_id,)).fetchone()[0])
            out["batches"] = c.execute("SELECT count(*) FROM airmigrate.batches WHERE run_id = %s AND status = "
                                       "'succeeded'", (run_id,)).fetchone()[0]
            out["final_sweeps"], out["sweep_left"] = c.execute("SELECT facts -> 'sweeps', facts -> 'sweep_left' FROM "
                                                               "airmigrate.runs WHERE run_id = %s", (run_id,)).fetchone()
            out["manual_vacuums"] = c.execute("SELECT vacuum_count FROM pg_stat_user_tables "
                                              "WHERE relname = 'users'").fetchone()[0]
        out["max_dead_tuples_seen"] = dead.peak
        out["app_during_move"] = app.take_waits()
        out["pacing"] = pacing(target, run_id)
        out["snapshot_samples_during_move"] = snapshots.samples
        out["rollback_seconds"] = run_down(target, m)
        for t in (app, dead, snapshots):
            t.stop.set()
        for t in (app, dead, snapshots):
            t.join(10)
        out["app_during_rollback"] = app.take_waits()
        out["app_errors"] = app.errors[:3]
        out["snapshot_samples_in_all"] = snapshots.samples
        out["source_plus_destination_seen"] = sorted(snapshots.sums)
        out["rows_in_both_seen"] = sorted(snapshots.overlaps)
        out["rows_back_le_1M"] = scalar(target, f"SELECT count(*) FROM users WHERE id <= {ROWS}")
        out["destination_after_rollback"] = scalar(target, f"SELECT to_regclass('{DESTINATION}')::text")
        out["untouched_rows_md5_identical"] = untouched_identical(target, app.touched)
    out["load_after"] = load()
    out["checks"] = {
        "no row matches in the source (original, or written before the last batch)":
            out["matching_left_in_source_le_1M"] == out["matching_left_in_source_written_before_the_last_batch"] == 0,
        "source + destination = 1,000,000 in every snapshot": out["source_plus_destination_seen"] == [ROWS],
        "no row in both tables in any snapshot": out["rows_in_both_seen"] == [0],
        "moved = in destination = archived, each once": out["moved_by_batches"] == out["in_destination"]
        == out["in_destination_distinct"] == out["archived"],
        "no application statement waited > lock_timeout + 1 s": max(out["app_during_move"]["max_s"],
                                                                     out["app_during_rollback"]["max_s"])
        < lock_timeout_s + 1,
        "no application error": not out["app_errors"],
        "rollback md5-identical": out["untouched_rows_md5_identical"] and out["rows_back_le_1M"] == ROWS,
    }
    return out


if __name__ == "__main__":
    report(main())
