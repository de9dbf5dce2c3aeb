"""delete_rows on 1,000,000 users (30% matching) while an application inserts and updates; then its rollback.

Needs the test suite's million-row template (airmigrate_test_million, made by tests/test_rollback.py) on
127.0.0.1:5432. Prints the figures README.md quotes: `.venv/bin/python bench/delete_rows_bench.py`."""
import json
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path

import yaml
from airmigrate import devdb
from airmigrate.db import Target, connect
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, backup, preflight, rollback, schema_change

server = Target.from_url("postgresql://postgres@127.0.0.1:5432/postgres")
name = f"amtest_measure_{uuid.uuid4().hex[:6]}"
target = devdb.recreate_database(server, name, template="airmigrate_test_million")
out = {}
try:
    folder = Path(tempfile.mkdtemp()) / "0060_purge_thirty_percent"; folder.mkdir(parents=True)
    (folder / "migration.yaml").write_text(yaml.safe_dump({"description": "m", "table": "users", "shards": 2,
        "operations": [{"op": "delete_rows", "where": "id % 10 < 3"}]}))
    m = load_migration(folder)
    with connect(target) as c:
        c.execute("CREATE TABLE users_before AS SELECT * FROM users"); c.commit()
        expected = c.execute("SELECT count(*) FROM users WHERE id % 10 < 3").fetchone()[0]
    stop, waits, touched, errors, dead = threading.Event(), [], set(), [], [0]
    def app():
        rng = random.Random(1)
        with connect(target, autocommit=True) as c:
            n = 0
            while not stop.is_set():
                n += 1; t0 = time.monotonic()
                try:
                    if n % 4 == 0:
                        c.execute("INSERT INTO users (email, full_name, country) VALUES (%s, 'A', 'US')", (f"a{n}@x",))
                    else:
                        i = rng.randint(1, 1_000_000); touched.add(i)
                        c.execute("UPDATE users SET full_name = 'B' WHERE id = %s", (i,))
                except Exception as e:
                    errors.append(str(e)[:100])
                waits.append(time.monotonic() - t0); time.sleep(0.002)
    def watch():
        with connect(target, autocommit=True) as c:
            while not stop.is_set():
                dead[0] = max(dead[0], c.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname='users'").fetchone()[0])
                time.sleep(0.5)
    threads = [threading.Thread(target=app, daemon=True), threading.Thread(target=watch, daemon=True)]
    for t in threads: t.start()
    t0 = time.monotonic()
    run_id = preflight.preflight(target, m)["run_id"]
    backup.backup(target, m, run_id); schema_change.schema_change(target, m, run_id)
    backfill.start_backfill(target, m, run_id)
    shards = [threading.Thread(target=backfill.run_shard, args=(target, m, run_id, i)) for i in range(2)]
    for s in shards: s.start()
    for s in shards: s.join()
    out["delete_seconds"] = round(time.monotonic() - t0, 1)
    with connect(target) as c:
        out["matching_left_le_1M"] = c.execute("SELECT count(*) FROM users WHERE id % 10 < 3 AND id <= 1000000").fetchone()[0]
        out["archived"], out["archived_distinct"] = c.execute('SELECT count(*), count(DISTINCT id) FROM airmigrate."archive_0060_purge_thirty_percent"').fetchone()
        out["deleted_by_batches"] = c.execute("SELECT sum(rows) FROM airmigrate.batches WHERE run_id=%s AND status='succeeded'", (run_id,)).fetchone()[0]
        out["manual_vacuums"] = c.execute("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname='users'").fetchone()[0]
    out["expected"] = expected
    out["max_dead_tuples_seen"] = dead[0]
    out["app_max_wait_s_during_delete"] = round(max(waits), 3); out["app_statements_during_delete"] = len(waits)
    waits.clear(); t0 = time.monotonic()
    rid = rollback.preflight_rollback(target, m)["run_id"]; rollback.down(target, m, rid); rollback.restore(target, m, rid)
    out["rollback_seconds"] = round(time.monotonic() - t0, 1)
    stop.set()
    for t in threads: t.join(5)
    out["app_max_wait_s_during_rollback"] = round(max(waits), 3)
    out["app_errors"] = errors[:3]
    with connect(target) as c:
        q = "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {} t WHERE id <= 1000000 AND NOT id = ANY(%s)"
        a = c.execute(q.format("users"), (list(touched),)).fetchone()[0]
        b = c.execute(q.format("users_before"), (list(touched),)).fetchone()[0]
        out["rows_back_le_1M"] = c.execute("SELECT count(*) FROM users WHERE id <= 1000000").fetchone()[0]
    out["untouched_rows_md5_identical"] = a == b
    print(json.dumps(out, indent=1, default=str))
finally:
    devdb.drop_database(server, name)
