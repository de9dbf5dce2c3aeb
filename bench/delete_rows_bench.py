"""delete_rows on 1,000,000 users (30% matching) while an application inserts and updates; then its rollback.

Uses the test suite's million-row template (airmigrate_test_million, made by tests/test_rollback.py) on
127.0.0.1:5432 when it is there, else seeds 1,000,000 users into the bench's own database (about a minute).
Prints the figures README.md quotes: `.venv/bin/python bench/delete_rows_bench.py`. The pieces below (the
database, the application, the dead-tuple watcher, the run up and down, the md5 comparison) are shared with
bench/move_rows_bench.py, which measures move_rows the same way.

Environment: AIRMIGRATE_BENCH_DB_PREFIX (default amtest_measure_) names the bench's database;
AIRMIGRATE_BENCH_TEMPLATE (default airmigrate_test_million) the template it clones."""
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import yaml

from airmigrate import devdb
from airmigrate.db import Target, connect
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, backup, preflight, rollback, schema_change

ROWS = 1_000_000
WHERE = "id % 10 < 3"
SERVER = Target.from_url(os.environ.get("AIRMIGRATE_BENCH_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres"))


def load() -> list[float]:
    """The machine's load average (1, 5, 15 min), as `uptime` shows it: the figures depend on it."""
    return [round(x, 2) for x in os.getloadavg()]


@contextmanager
def million_database():
    """A database of its own with 1,000,000 users (from the template when it exists), dropped afterwards."""
    name = os.environ.get("AIRMIGRATE_BENCH_DB_PREFIX", "amtest_measure_") + uuid.uuid4().hex[:6]
    template = os.environ.get("AIRMIGRATE_BENCH_TEMPLATE", "airmigrate_test_million")
    with connect(SERVER, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,)).fetchone()
    target = devdb.recreate_database(SERVER, name, template=template if exists else None)
    try:
        if not exists:
            devdb.seed_users(target, ROWS)
        with connect(target) as c:
            c.execute("CREATE TABLE users_before AS SELECT * FROM users")
            c.commit()
        yield target
    finally:
        devdb.drop_database(SERVER, name)


def migration_of(folder_name: str, op: dict, shards: int = 2):
    folder = Path(tempfile.mkdtemp()) / folder_name
    folder.mkdir(parents=True)
    (folder / "migration.yaml").write_text(yaml.safe_dump({"description": "m", "table": "users", "shards": shards,
                                                           "operations": [op]}))
    return load_migration(folder)


class App(threading.Thread):
    """The application: one insert for three updates of random existing users, each statement timed."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.target, self.stop = target, threading.Event()
        self.waits, self.touched, self.errors = [], set(), []

    def run(self):
        rng = random.Random(1)
        with connect(self.target, autocommit=True) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                t0 = time.monotonic()
                try:
                    if n % 4 == 0:
                        c.execute("INSERT INTO users (email, full_name, country) VALUES (%s, 'A', 'US')", (f"a{n}@x",))
                    else:
                        i = rng.randint(1, ROWS)
                        self.touched.add(i)
                        c.execute("UPDATE users SET full_name = 'B' WHERE id = %s", (i,))
                except Exception as e:
                    self.errors.append(str(e)[:100])
                self.waits.append(time.monotonic() - t0)
                time.sleep(0.002)

    def take_waits(self) -> dict:
        """The statements since the last call: how many, and their median, p99 and longest time in s."""
        waits, self.waits = sorted(self.waits), []
        if not waits:
            return {"statements": 0}

        def at(share: float) -> float:
            return round(waits[min(len(waits) - 1, int(share * len(waits)))], 4)
        return {"statements": len(waits), "p50_s": at(0.5), "p99_s": at(0.99), "max_s": round(waits[-1], 3)}

    def baseline(self, seconds: float = 5.0) -> dict:
        """The application alone for a few seconds: what its statements take before any migration."""
        self.take_waits()
        time.sleep(seconds)
        return self.take_waits()


class DeadTuples(threading.Thread):
    """The highest n_dead_tup of the table seen, sampled every half second."""

    def __init__(self, target, table: str = "users"):
        super().__init__(daemon=True)
        self.target, self.table, self.stop, self.peak = target, table, threading.Event(), 0

    def run(self):
        with connect(self.target, autocommit=True) as c:
            while not self.stop.is_set():
                row = c.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s",
                                (self.table,)).fetchone()
                self.peak = max(self.peak, row[0] if row else 0)
                time.sleep(0.5)


def run_up(target, m) -> tuple[int, float]:
    """The way up as the DAG runs it (preflight, backup, expand, the shards at once): (run_id, seconds)."""
    t0 = time.monotonic()
    run_id = preflight.preflight(target, m)["run_id"]
    backup.backup(target, m, run_id)
    schema_change.schema_change(target, m, run_id)
    backfill.start_backfill(target, m, run_id)
    shards = [threading.Thread(target=backfill.run_shard, args=(target, m, run_id, i)) for i in range(m.spec.shards)]
    for s in shards:
        s.start()
    for s in shards:
        s.join()
    return run_id, round(time.monotonic() - t0, 1)


def run_down(target, m) -> float:
    """The rollback (down, its batches, restore): seconds."""
    t0 = time.monotonic()
    rid = rollback.preflight_rollback(target, m)["run_id"]
    rollback.down(target, m, rid)
    rollback.restore(target, m, rid)
    return round(time.monotonic() - t0, 1)


def untouched_identical(target, touched) -> bool:
    """Every original row no application statement wrote is md5-identical to its copy taken before."""
    q = ("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {} t WHERE id <= %s "
         "AND id NOT IN (SELECT unnest(%s::bigint[]))")  # a hashed subplan: `<> ALL` of 20,000 keys takes minutes
    with connect(target) as c:
        a = c.execute(q.format("users"), (ROWS, list(touched))).fetchone()[0]
        b = c.execute(q.format("users_before"), (ROWS, list(touched))).fetchone()[0]
    return a == b


def scalar(target, query: str, params=None, row: bool = False):
    """One value (or the row, with `row`); without params a `%` in the query is the operator, with them `%%`."""
    with connect(target) as c:
        found = c.execute(query, params).fetchone()
    return found if row else found[0]


def pacing(target, run_id: int) -> dict:
    """The pacer's decisions for the run (airmigrate.pacing_log): how often each, the highest latency ratio it saw
    (application latency over its baseline; None without pg_stat_statements) and the most blocked sessions."""
    with connect(target) as c:
        decisions = dict(c.execute("SELECT split_part(decision, ':', 1), count(*) FROM airmigrate.pacing_log WHERE "
                                   "run_id = %s GROUP BY 1 ORDER BY 2 DESC", (run_id,)).fetchall())
        ratio, blocked = c.execute("SELECT max(latency_ratio), max(blocked) FROM airmigrate.pacing_log WHERE "
                                   "run_id = %s", (run_id,)).fetchone()
    return {"decisions": decisions, "max_latency_ratio": ratio, "max_blocked": blocked}


def matching_left(target, run_id: int) -> tuple[int, int]:
    """Rows matching `where` in the table: (written before the run's last batch committed, written after it). The
    first must be 0; the second are the application's new rows once the run was over, which it no longer sees."""
    return scalar(target, f"SELECT count(*) FILTER (WHERE created_at <= b.last), count(*) FILTER (WHERE created_at "
                          f"> b.last) FROM users, (SELECT max(finished_at) AS last FROM airmigrate.batches WHERE "
                          f"run_id = {run_id}) b WHERE {WHERE}", row=True)


def main() -> dict:
    out = {"load_before": load()}
    with million_database() as target:
        m = migration_of("0060_purge_thirty_percent", {"op": "delete_rows", "where": WHERE})
        out["expected"] = scalar(target, f"SELECT count(*) FROM users WHERE {WHERE}")
        app, dead = App(target), DeadTuples(target)
        app.start(), dead.start()
        out["app_alone"] = app.baseline()
        run_id, out["delete_seconds"] = run_up(target, m)
        out["matching_left_le_1M"] = scalar(target, f"SELECT count(*) FROM users WHERE {WHERE} AND id <= {ROWS}")
        out["matching_left_written_before_the_last_batch"], out["matching_written_after_it"] = \
            matching_left(target, run_id)
        with connect(target) as c:
            out["archived"], out["archived_distinct"] = c.execute(
                'SELECT count(*), count(DISTINCT id) FROM airmigrate."archive_0060_purge_thirty_percent"').fetchone()
            out["deleted_by_batches"] = c.execute("SELECT sum(rows) FROM airmigrate.batches WHERE run_id=%s AND "
                                                  "status='succeeded'", (run_id,)).fetchone()[0]
            out["final_sweeps"], out["sweep_left"] = c.execute("SELECT facts -> 'sweeps', facts -> 'sweep_left' FROM "
                                                               "airmigrate.runs WHERE run_id = %s", (run_id,)).fetchone()
            out["manual_vacuums"] = c.execute("SELECT vacuum_count FROM pg_stat_user_tables "
                                              "WHERE relname='users'").fetchone()[0]
        out["max_dead_tuples_seen"] = dead.peak
        out["app_during_delete"] = app.take_waits()
        out["pacing"] = pacing(target, run_id)
        out["rollback_seconds"] = run_down(target, m)
        app.stop.set(), dead.stop.set()
        app.join(5), dead.join(5)
        out["app_during_rollback"] = app.take_waits()
        out["app_errors"] = app.errors[:3]
        out["rows_back_le_1M"] = scalar(target, f"SELECT count(*) FROM users WHERE id <= {ROWS}")
        out["untouched_rows_md5_identical"] = untouched_identical(target, app.touched)
    out["load_after"] = load()
    out["checks"] = {
        "no row matches (original, or written before the last batch)":
            out["matching_left_le_1M"] == out["matching_left_written_before_the_last_batch"] == 0,
        "archived = deleted, each once": out["archived"] == out["archived_distinct"] == int(out["deleted_by_batches"]),
        "no application statement waited > lock_timeout + 1 s": max(out["app_during_delete"]["max_s"],
                                                                     out["app_during_rollback"]["max_s"])
        < m.spec.lock_timeout_ms / 1000 + 1,
        "no application error": not out["app_errors"],
        "rollback md5-identical": out["untouched_rows_md5_identical"] and out["rows_back_le_1M"] == ROWS,
    }
    return out


def report(figures: dict) -> None:
    """Print the figures (and write them to the file named on the command line); exit 1 when a check failed."""
    text = json.dumps(figures, indent=1, default=str)
    print(text)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text + "\n")
    sys.exit(0 if all(figures["checks"].values()) else 1)


if __name__ == "__main__":
    report(main())
