"""delete_rows and move_rows on a real MySQL / MariaDB (issue 22), through the stages an Airflow run calls, while
the application writes (tests/mysql_support.Writer, a process of its own): it updates rows, inserts rows past the
end and, for the first half of the run, inserts rows matching `where` behind the batches' cursor (keys below the
table's) and updates rows into matching it, which only the final sweep finds.

Checks: no application error, no application statement slower than the lock wait limit + 1 s, no row matching
`where` left, each deleted row in the archive once (and, for move_rows, in the destination: table + destination
= every row), the rollback giving back the table md5-identical; and a kill -9 of the batch process at random
moments then a resume: nothing lost, nothing done twice.

AIRMIGRATE_TEST_MYSQL_ROWS scales the table (30,000 rows by default: 15 batches of 2,000 keys; the README's figures
are at 1,000,000).
The rendered MySQL SQL (no server) is checked in test_op_rows_sql.py."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from mysql_support import (OPERATION_ROWS, URL, Writer, assert_unharmed, fill, rows_md5, scratch_database,
                           skip_without_server, switch)
from polling import wait_for

from airmigrate import db, state
from airmigrate.engines.mysql.state_names import state_database
from airmigrate.engines.target import Target
from airmigrate.errors import PreflightError
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, backup, cleanup, preflight, rollback, schema_change

pytestmark = pytest.mark.server
skip_without_server()

ROWS = OPERATION_ROWS
LOCK_WAIT_MS = 1000
WHERE = "MOD(a, 3) = 0"          # a = id mod 1000: a third of the rows
KILL_ROWS = min(ROWS, 30_000)   # the kill -9 tests: ~1 ms per matching row (SLOW), long enough to be killed in
SLOW = " AND SLEEP(0.001) = 0"
ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


@pytest.fixture
def target(monkeypatch):
    with scratch_database("am_rows", monkeypatch) as found:  # its state database (airmigrate__<db>) goes with it
        yield found


def make_migration(tmp_path: Path, target: Target, operation: dict, **extra):
    folder = tmp_path / f"0001_{target.dbname}"
    folder.mkdir()
    spec = {"description": f"{operation['op']} on MySQL", "table": f"{target.dbname}.users", "key": "id",
            "batch_size": 2000, "shards": 2, "lock_timeout_ms": LOCK_WAIT_MS, "operations": [operation], **extra}
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    return load_migration(folder)


def archive(migration) -> str:
    return f"airmigrate.`archive_{migration.id}`"


def scalar(target: Target, query: str, params=()):
    with db.connect(target) as conn:
        return conn.execute(query, params).fetchone()[0]


class Application:
    """The writer's work: 10% inserts past the end, 90% updates of random rows; while `behind` is on, also rows
    matching `where` written behind the cursor (new keys below the table's, updates making a row match). Once it
    is off (half the walk done) nothing it writes matches: a matching row written after the final sweep would
    stay, by design (the sweep's MAX_SWEEPS). `kept` (next_id, low_id, touched) is the writer's `keep`: it comes
    back from the writer's process when it finishes."""

    def __init__(self, rows: int, next_id: int | None = None, behind: bool = True):
        self.rows, self.behind = rows, switch()
        self.kept = {"next_id": next_id or rows + 1, "low_id": 0, "touched": set()}
        if behind:
            self.behind.set()

    next_id = property(lambda self: self.kept["next_id"])
    low_id = property(lambda self: self.kept["low_id"])
    touched = property(lambda self: self.kept["touched"])

    def __call__(self, conn, rng, i) -> None:
        roll, kept = rng.random(), self.kept
        if roll < 0.1:  # ahead of the cursor: the walk meets them (matching ones too, until `behind` ends)
            a = rng.randint(0, 999) if self.behind.is_set() else rng.choice((1, 2, 4, 5))
            conn.execute("INSERT INTO users (id, a, s) VALUES (%s, %s, 'new')", (kept["next_id"], a))
            kept["touched"].add(kept["next_id"])
            kept["next_id"] += 1
        elif roll < 0.2 and self.behind.is_set():
            conn.execute("INSERT INTO users (id, a, s) VALUES (%s, 3, 'behind')", (kept["low_id"],))
            kept["touched"].add(kept["low_id"])
            kept["low_id"] -= 1
        elif roll < 0.3 and self.behind.is_set():
            row = rng.randint(1, self.rows)
            conn.execute("UPDATE users SET a = 6, s = 'now matching' WHERE id = %s", (row,))
            kept["touched"].add(row)
        else:
            row = rng.randint(1, self.rows)
            conn.execute("UPDATE users SET s = CONCAT('app ', %s) WHERE id = %s", (i, row))
            kept["touched"].add(row)


def begin(target: Target, migration) -> int:
    run_id = preflight.preflight(target, migration)["run_id"]
    backup.backup(target, migration, run_id)
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id)
    return run_id


def run_shards(target: Target, migration, run_id: int, **options) -> None:
    """Two shards in threads, as the DAG runs them (`options`: run_shard's, e.g. should_stop), at full speed unless
    `options` say otherwise: the subject is each row handled once under the application, not pacing."""
    options.setdefault("app_latency_ratio", None)
    errors: list[BaseException] = []

    def shard(i: int) -> None:
        try:
            backfill.run_shard(target, migration, run_id, i, **options)
        except BaseException as exc:  # noqa: BLE001 -- re-raised below
            errors.append(exc)
    threads = [threading.Thread(target=shard, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def roll_back(target: Target, migration) -> None:
    run_id = rollback.preflight_rollback(target, migration)["run_id"]
    rollback.down(target, migration, run_id)
    rollback.restore(target, migration, run_id)


def archived(target: Target, migration) -> int:
    return scalar(target, f"SELECT COUNT(*) FROM {archive(migration)}")


def run_under_the_application(target: Target, migration) -> tuple[int, Application, Writer, float]:
    """The up stages with the writer on: the shards stop once half the matching rows are archived, the writer's
    `behind` writes end, the shards go on to the end (what came behind the cursor is the sweep's); the writer
    stops when the batches end."""
    app = Application(ROWS)
    writer = Writer(target, app, keep=app.kept)
    started = time.monotonic()
    writer.start()
    try:
        run_id = begin(target, migration)
        half = ROWS // 6  # half the rows `where` matches: the walk is about half way (batch sizes adapt)
        run_shards(target, migration, run_id, should_stop=lambda: archived(target, migration) >= half)
        app.behind.clear()  # before the walk's end and its sweeps (a matching row written after them would stay)
        run_shards(target, migration, run_id)
    finally:
        app.behind.clear()
        writer.finish()
    return run_id, app, writer, time.monotonic() - started


def batches(target: Target, run_id: int) -> str:
    """The run's batches in words, for the log line the README's figures come from."""
    with db.connect(target) as conn:
        found = state.batch_summary(conn, run_id)
    return f"{found['succeeded']} batches in {float(found['seconds'] or 0):.1f}s"


def sweeps(target: Target, run_id: int) -> int:
    """How many final sweeps made batches over rows written behind the cursor (the run's facts)."""
    return int(scalar(target, "SELECT COALESCE(JSON_EXTRACT(facts, '$.sweeps'), 0) FROM airmigrate.runs "
                              "WHERE run_id = %s", (run_id,)))


def assert_application_healthy(writer: Writer, min_calls: int = 50) -> None:
    assert_unharmed(writer, LOCK_WAIT_MS / 1000, min_calls)


def keep_expected(target: Target, rows_query: str) -> None:
    """What the rollback must give back: every row where the run left it (table, archive or destination)."""
    with db.connect(target, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE expected AS {rows_query}")


def roll_back_under_the_application(target: Target, migration) -> tuple[float, Writer]:
    """The rollback with the writer on (updates and inserts past the end, nothing matching `where`): its
    seconds, and the writer."""
    app = Application(ROWS, next_id=scalar(target, "SELECT MAX(id) + 1 FROM expected"), behind=False)
    writer = Writer(target, app, seed=11, keep=app.kept)
    started = time.monotonic()
    writer.start()
    try:
        roll_back(target, migration)
    finally:
        writer.finish()
    return time.monotonic() - started, writer


def assert_as_expected(target: Target, touched: set[int]) -> None:
    """The table after the rollback is md5-identical to `expected` on every row the application did not write
    during the rollback."""
    others = ",".join(map(str, sorted(touched))) or "NULL"
    assert rows_md5(target, f"SELECT id, a, s FROM users WHERE id NOT IN ({others})") == rows_md5(
        target, f"SELECT id, a, s FROM expected WHERE id NOT IN ({others})")
    assert scalar(target, f"SELECT COUNT(*) FROM expected WHERE id NOT IN ({others})") == scalar(
        target, f"SELECT COUNT(*) FROM users WHERE id NOT IN ({others})")


def roll_back_identical(target: Target, migration, app: Application) -> tuple[float, Writer]:
    """The rollback under the application, unharmed; after it the table is md5-identical to `expected` on every
    row the application did not write during the rollback, and to the table before the run (users_before) on
    every row it never wrote: the rollback's seconds, and its writer."""
    back, during = roll_back_under_the_application(target, migration)
    assert_application_healthy(during, min_calls=10)  # short: about a second at 100,000 rows
    assert_as_expected(target, during.work.touched)
    untouched = ",".join(map(str, sorted(app.touched | during.work.touched))) or "NULL"
    assert rows_md5(target, f"SELECT id, a, s FROM users WHERE id NOT IN ({untouched})") == rows_md5(
        target, f"SELECT id, a, s FROM users_before WHERE id NOT IN ({untouched})")
    return back, during


def keep_original(target: Target) -> None:
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE users_before AS SELECT * FROM users")


def test_delete_rows_under_the_application_sweeps_behind_the_cursor_and_rolls_back_identical(target, tmp_path):
    fill(target, "users", ROWS)
    keep_original(target)
    migration = make_migration(tmp_path, target, {"op": "delete_rows", "where": WHERE, "keep_archive_days": 0})
    run_id, app, writer, took = run_under_the_application(target, migration)
    assert_application_healthy(writer)
    assert scalar(target, f"SELECT COUNT(*) FROM users WHERE {WHERE}") == 0
    assert scalar(target, "SELECT COUNT(*) FROM users WHERE s = 'behind'") == 0 and sweeps(target, run_id) >= 1
    archived, distinct, wrong = (int(v or 0) for v in db.connect(target).execute(
        f"SELECT COUNT(*), COUNT(DISTINCT id), SUM(NOT ({WHERE})) FROM {archive(migration)}").fetchone())
    deleted = int(scalar(target, "SELECT SUM(`rows`) FROM airmigrate.batches WHERE run_id = %s AND status = "
                                 "'succeeded'", (run_id,)))
    assert archived == distinct == deleted and wrong == 0
    assert scalar(target, f"SELECT COUNT(*) FROM {archive(migration)} WHERE s = 'behind'") > 0
    total = scalar(target, "SELECT COUNT(*) FROM users") + archived
    assert total == ROWS + (app.next_id - ROWS - 1) + (-app.low_id)   # every row in one place
    keep_expected(target, f"SELECT id, a, s FROM users UNION ALL SELECT id, a, s FROM {archive(migration)}")

    back, during = roll_back_identical(target, migration, app)
    assert scalar(target, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND "
                          "table_name = %s", (state_database(target.dbname), f"archive_{migration.id}")) == 0
    assert scalar(target, "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = %s",
                  (target.dbname,)) == 0
    log.warning("delete_rows on MySQL, %s rows: %d archived, %d app statements, %d errors, slowest %.3fs, "
                "%.1fs (%s); rollback %.1fs under %d app statements (%d errors, slowest %.3fs), md5 equal",
                f"{ROWS:,}", archived, writer.calls, len(writer.errors), writer.slowest, took, batches(target, run_id),
                back, during.calls, len(during.errors), during.slowest)


def test_move_rows_under_the_application_keeps_every_row_in_one_place_and_moves_them_back(target, tmp_path):
    fill(target, "users", ROWS)
    keep_original(target)
    migration = make_migration(tmp_path, target, {"op": "move_rows", "to": "users_old", "where": WHERE,
                                                  "create": True, "keep_archive_days": 0})
    run_id, app, writer, took = run_under_the_application(target, migration)
    assert_application_healthy(writer)
    assert scalar(target, f"SELECT COUNT(*) FROM users WHERE {WHERE}") == 0 and sweeps(target, run_id) >= 1
    moved = scalar(target, "SELECT COUNT(*) FROM users_old")
    assert moved == scalar(target, f"SELECT COUNT(*) FROM {archive(migration)}") == int(scalar(
        target, "SELECT SUM(`rows`) FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded'", (run_id,)))
    assert scalar(target, f"SELECT COUNT(*) FROM users_old d LEFT JOIN {archive(migration)} x ON x.id = d.id "
                          "WHERE x.id IS NULL") == 0
    total = scalar(target, "SELECT COUNT(*) FROM users") + moved
    assert total == ROWS + (app.next_id - ROWS - 1) + (-app.low_id)
    assert scalar(target, "SELECT COUNT(*) FROM users u JOIN users_old d ON d.id = u.id") == 0
    keep_expected(target, "SELECT id, a, s FROM users UNION ALL SELECT id, a, s FROM users_old")

    back, during = roll_back_identical(target, migration, app)
    assert scalar(target, "SELECT COUNT(*) FROM information_schema.tables WHERE table_name IN (%s, 'users_old') "
                          "AND table_schema IN ('airmigrate', %s)", (f"archive_{migration.id}", target.dbname)) == 0
    log.warning("move_rows on MySQL, %s rows: %d moved, %d app statements, %d errors, slowest %.3fs, %.1fs (%s); "
                "rollback %.1fs under %d app statements (%d errors, slowest %.3fs), md5 equal", f"{ROWS:,}", moved,
                writer.calls, len(writer.errors), writer.slowest, took, batches(target, run_id), back, during.calls,
                len(during.errors), during.slowest)


def test_contract_waits_for_keep_archive_days_then_drops_the_archive(target, tmp_path, sql_forms):
    fill(target, "users", 3000)
    migration = make_migration(tmp_path, target, {"op": "delete_rows", "where": WHERE, "keep_archive_days": 2})
    matching = scalar(target, f"SELECT COUNT(*) FROM users WHERE {WHERE}")
    run_id = begin(target, migration)
    run_shards(target, migration, run_id)
    with pytest.raises(Exception, match="keep_archive_days"):
        cleanup.cleanup(target, migration, run_id)
    assert scalar(target, f"SELECT COUNT(*) FROM {archive(migration)}") == matching
    with db.connect(target, autocommit=True) as conn:  # two days later
        conn.execute("UPDATE airmigrate.batches SET finished_at = finished_at - INTERVAL 49 HOUR WHERE run_id = %s",
                     (run_id,))
    cleanup.cleanup(target, migration, run_id)
    assert scalar(target, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND "
                          "table_name = %s", (state_database(target.dbname), f"archive_{migration.id}")) == 0
    assert scalar(target, "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = %s",
                  (target.dbname,)) == 0
    assert scalar(target, "SELECT COUNT(*) FROM users") == 3000 - matching


WORKER = """
import sys
from airmigrate.engines.target import Target
from airmigrate.errors import PreflightError
from airmigrate.spec import load_migration
from airmigrate.stages.backfill import run_shard
run_shard(Target.from_url(sys.argv[1]), load_migration(sys.argv[2]), int(sys.argv[3]))
"""


def kill_9_then_resume(target: Target, migration, done_query: str, assert_consistent, expected: int) -> int:
    """The batches in a worker process killed with SIGKILL at random moments after it made progress (three
    times, `assert_consistent` after each), then resumed here to the end; the run's id."""
    run_id = begin(target, migration)
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": URL}
    env.pop("AIRFLOW_CONN_AIRMIGRATE_TARGET", None)
    rng, done, kills = random.Random(22), 0, 0
    for _ in range(3):
        worker = subprocess.Popen([sys.executable, "-c", WORKER, target.url(), str(migration.folder), str(run_id)],
                                  env=env, cwd=ROOT)
        wait_for(lambda: scalar(target, done_query) > done or worker.poll() is not None, 300, "progress")
        time.sleep(rng.uniform(0, 0.3))
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            kills += 1
        worker.wait()
        done = scalar(target, done_query)
        assert_consistent(target)
    assert kills and 0 < done < expected, f"the kills must land in the middle of the run ({kills}, {done})"
    backfill.run_shard(target, migration, run_id, app_latency_ratio=None)  # the rest at full speed: not pacing's test
    assert_consistent(target)
    assert scalar(target, done_query) == expected
    assert int(scalar(target, "SELECT SUM(`rows`) FROM airmigrate.batches WHERE run_id = %s AND status = "
                              "'succeeded'", (run_id,))) == expected
    return run_id


def test_delete_rows_kill_9_at_random_moments_then_resume_archives_each_row_once(target, tmp_path):
    fill(target, "users", KILL_ROWS)
    migration = make_migration(tmp_path, target, {"op": "delete_rows", "where": WHERE + SLOW}, batch_size=300,
                               shards=1)
    expected = scalar(target, f"SELECT COUNT(*) FROM users WHERE {WHERE}")

    def consistent(found: Target) -> None:
        assert db.connect(found).execute(
            f"SELECT COUNT(*), COUNT(DISTINCT id) FROM (SELECT id FROM users UNION ALL SELECT id FROM "
            f"{archive(migration)}) x").fetchone() == (KILL_ROWS, KILL_ROWS)
        assert scalar(found, f"SELECT COUNT(*) FROM {archive(migration)} WHERE NOT ({WHERE})") == 0

    kill_9_then_resume(target, migration, f"SELECT COUNT(*) FROM {archive(migration)}", consistent, expected)
    assert scalar(target, f"SELECT COUNT(*) FROM users WHERE {WHERE}") == 0


def test_move_rows_kill_9_at_random_moments_then_resume_moves_each_row_once(target, tmp_path):
    fill(target, "users", KILL_ROWS)
    migration = make_migration(tmp_path, target, {"op": "move_rows", "to": "users_old", "where": WHERE + SLOW,
                                                  "create": True}, batch_size=300, shards=1)
    expected = scalar(target, f"SELECT COUNT(*) FROM users WHERE {WHERE}")

    def consistent(found: Target) -> None:
        with db.connect(found) as conn:
            assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM (SELECT id FROM users UNION ALL SELECT id "
                                "FROM users_old) x").fetchone() == (KILL_ROWS, KILL_ROWS)
            assert conn.execute(f"SELECT COUNT(*) FROM users_old d LEFT JOIN {archive(migration)} x ON x.id = d.id "
                                "WHERE x.id IS NULL").fetchone()[0] == 0
            assert conn.execute(f"SELECT COUNT(*) FROM {archive(migration)}").fetchone()[0] == conn.execute(
                "SELECT COUNT(*) FROM users_old").fetchone()[0]

    kill_9_then_resume(target, migration, "SELECT COUNT(*) FROM users_old", consistent, expected)
    assert scalar(target, f"SELECT COUNT(*) FROM users WHERE {WHERE}") == 0


def test_move_rows_with_computed_columns_into_an_existing_table_and_back(target, tmp_path):
    """The trigger computes the destination's row from the deleted one; the rollback brings the originals back
    from the archive while its trigger removes the computed rows."""
    fill(target, "users", 5000)
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE users_old (id INT PRIMARY KEY, a INT NOT NULL, label VARCHAR(60) NOT NULL)")
    before = rows_md5(target, "SELECT id, a, s FROM users")
    migration = make_migration(tmp_path, target, {"op": "move_rows", "to": "users_old", "where": WHERE,
                                                  "columns": {"id": "id", "a": "a", "label": "upper(s)"}},
                               batch_size=700)
    run_id = begin(target, migration)
    run_shards(target, migration, run_id)
    with db.connect(target) as conn:
        moved, computed = conn.execute("SELECT COUNT(*), SUM(label = UPPER(CONCAT('row ', id))) FROM users_old"
                                       ).fetchone()
        assert moved == int(computed) == conn.execute(f"SELECT COUNT(*) FROM {archive(migration)}").fetchone()[0]
        assert moved + conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 5000
    roll_back(target, migration)
    assert rows_md5(target, "SELECT id, a, s FROM users") == before
    assert scalar(target, "SELECT COUNT(*) FROM users_old") == 0  # it existed before: kept, empty


def test_archive_none_deletes_with_an_acknowledgement_and_the_backup_keeps_a_dump(target, tmp_path):
    fill(target, "users", 3000)
    migration = make_migration(tmp_path, target, {"op": "delete_rows", "where": WHERE, "archive": "none"},
                               acknowledge=[{"rule": "delete-without-archive",
                                             "reason": "rows past their retention period must not be kept"}])
    run_id = begin(target, migration)
    run_shards(target, migration, run_id)
    assert scalar(target, f"SELECT COUNT(*) FROM users WHERE {WHERE}") == 0
    facts = yaml.safe_load(scalar(target, "SELECT facts FROM airmigrate.runs WHERE run_id = %s", (run_id,)))
    assert facts["backup_path"] and "without an archive" in facts["backup_reason"]
    assert Path(facts["backup_path"]).exists()
    assert scalar(target, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND "
                          "table_name = %s", (state_database(target.dbname), f"archive_{migration.id}")) == 0


def test_preflight_names_rows_of_other_tables_that_reference_matching_ones(target, tmp_path):
    fill(target, "users", 100)
    with db.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id INT PRIMARY KEY, user_id INT, "
                     "CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id))")
        conn.execute("INSERT INTO orders VALUES (1, 3), (2, 4)")  # 3 matches `where`, 4 does not
    migration = make_migration(tmp_path, target, {"op": "delete_rows", "where": WHERE})
    with pytest.raises(PreflightError) as refused:
        preflight.preflight(target, migration)
    text = str(refused.value)
    assert f"1 row(s) of {target.dbname}.orders" in text and "orders_user" in text and "RESTRICT" in text
    assert scalar(target, "SELECT COUNT(*) FROM users") == 100
