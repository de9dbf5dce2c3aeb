"""The final sweep of delete_rows and move_rows on a real PostgreSQL: rows that start matching `where` behind the
batch cursor (inserted with a lower key, or updated to match after their range was done) are still deleted or
moved, each once, by batches over the matching keys when the walk reaches the end."""

from __future__ import annotations

import pytest
from test_operations import make_migration, q

from airmigrate.db import connect
from airmigrate.stages import backfill, backup, preflight, schema_change
from airmigrate.stages.backfill import sweep

WHERE = "id % 3 = 0 AND full_name <> 'keep'"
MATCHING = "SELECT count(*) FROM users WHERE id %% 3 = 0 AND full_name <> 'keep'"

OPS = {
    "delete_rows": ({"op": "delete_rows", "where": WHERE}, 'airmigrate."archive_0050_delete_rows"'),
    "move_rows": ({"op": "move_rows", "to": "users_archive", "where": WHERE, "create": True}, "users_archive"),
}


def start(target, migration) -> int:
    run_id = preflight.preflight(target, migration)["run_id"]
    backup.backup(target, migration, run_id)
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id)
    return run_id


def succeeded(target, run_id) -> int:
    return q(target, "SELECT count(*) FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded'",
             (run_id,))[0][0]


@pytest.mark.parametrize("op", sorted(OPS))
def test_rows_matching_behind_the_cursor_are_swept(fresh_db, tmp_path, op):
    operation, kept_in = OPS[op]
    with connect(fresh_db) as conn:  # 100 rows that do not match yet, at the start of the table
        conn.execute("UPDATE users SET full_name = 'keep' WHERE id <= 300 AND id % 3 = 0")
        conn.commit()
    migration = make_migration(tmp_path, operation, batch_size=2000)
    run_id = start(fresh_db, migration)
    backfill.run_shard(fresh_db, migration, run_id, should_stop=lambda: succeeded(fresh_db, run_id) >= 3)
    position = q(fresh_db, "SELECT position::bigint FROM airmigrate.cursors WHERE run_id = %s", (run_id,))[0][0]
    assert 2000 <= position < 30000, "the run stopped part-way"
    with connect(fresh_db) as conn:  # the application, behind the cursor: 100 rows start matching, one is new
        conn.execute("UPDATE users SET full_name = 'changed' WHERE id <= 300 AND full_name = 'keep'")
        conn.execute("INSERT INTO users (id, email, full_name, country) VALUES (-3, 'behind@x', 'B', 'US')")
        conn.commit()

    backfill.run_shard(fresh_db, migration, run_id)
    assert q(fresh_db, MATCHING)[0][0] == 0, "rows matching `where` were left behind the cursor"
    assert q(fresh_db, f"SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE id = -3 OR id <= 300) "
                       f"FROM {kept_in}")[0] == (10001, 10001, 101)
    facts = q(fresh_db, "SELECT facts FROM airmigrate.runs WHERE run_id = %s", (run_id,))[0][0]
    assert facts["sweeps"] == 1 and "sweep_left" not in facts
    assert q(fresh_db, "SELECT sum(rows) FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded'",
             (run_id,))[0][0] == 10001
    assert q(fresh_db, "SELECT exhausted FROM airmigrate.cursors WHERE run_id = %s", (run_id,))[0][0] is True


def test_sweeps_stop_after_max_sweeps_naming_the_rows_left(fresh_db, tmp_path, monkeypatch):
    """An application that makes a row match behind the cursor after every sweep: the run still ends, after
    MAX_SWEEPS sweeps, with the rows left in the run's facts."""
    monkeypatch.setattr(sweep, "MAX_SWEEPS", 2)
    with connect(fresh_db) as conn:
        conn.execute("UPDATE users SET full_name = 'keep' WHERE id <= 30 AND id % 3 = 0")
        # each batch the sweep runs makes the next kept row match (the next sweep's work), like a busy application
        conn.execute("CREATE FUNCTION next_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "UPDATE users SET full_name = 'changed' WHERE id = (SELECT min(id) FROM users "
                     "WHERE full_name = 'keep'); RETURN NULL; END $$")
        conn.commit()
    migration = make_migration(tmp_path, OPS["delete_rows"][0], batch_size=5000)
    run_id = start(fresh_db, migration)
    backfill.run_shard(fresh_db, migration, run_id)  # the walk itself: nothing kept matches
    with connect(fresh_db) as conn:
        conn.execute("UPDATE airmigrate.cursors SET exhausted = false WHERE run_id = %s", (run_id,))
        conn.execute("UPDATE users SET full_name = 'changed' WHERE id = 3")
        conn.execute("CREATE TRIGGER next_one AFTER INSERT ON airmigrate.\"archive_0050_delete_rows\" "
                     "FOR EACH STATEMENT EXECUTE FUNCTION next_one()")
        conn.commit()
    backfill.run_shard(fresh_db, migration, run_id)
    facts = q(fresh_db, "SELECT facts FROM airmigrate.runs WHERE run_id = %s", (run_id,))[0][0]
    assert facts["sweeps"] == 2 and facts["sweep_left"] == 1
    assert q(fresh_db, MATCHING)[0][0] == 1
    assert q(fresh_db, "SELECT exhausted FROM airmigrate.cursors WHERE run_id = %s", (run_id,))[0][0] is True
