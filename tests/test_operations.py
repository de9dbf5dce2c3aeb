"""Every declared operation on a real PostgreSQL while an application keeps writing.

Each case runs expand -> backfill -> contract -> rollback through the stage functions (the same
code the Airflow tasks call) while an application thread updates and inserts rows. Checks:
zero application errors, no write lost, old and new shapes agree row for row, and no application
statement waited longer than the lock timeout (plus scheduling slack on this 2-core machine).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest
import yaml

from airmigrate.db import connect
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, backup, cleanup, preflight, rollback, schema_change

LOCK_TIMEOUT_MS = 500
SLACK_S = 0.75


@dataclass
class Application:
    """Updates and inserts rows, recording every write. `columns` are the extra columns this release writes
    (name -> SQL expression over %(name)s, the full_name it writes); a test swaps them to ship a new release."""

    target: object
    columns: dict = field(default_factory=lambda: {"phone": "'+1 555 0100'", "last_login_at": "now()"})
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list = field(default_factory=list)
    max_wait: float = 0.0
    writes: dict = field(default_factory=dict)  # id -> full_name written last
    inserted: list = field(default_factory=list)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def write(self, conn, n: int, row_id: int) -> None:
        columns = dict(self.columns)  # one release per statement
        names = "".join(f", {c}" for c in columns)
        values = "".join(f", {v}" for v in columns.values())
        if n % 5 == 0:
            name = f"App User {n}"
            new_id = conn.execute(
                f"INSERT INTO users (email, full_name, country, email_confirmed_at{names}) "
                f"VALUES (%(email)s, %(name)s, 'US', now(){values}) RETURNING id",
                {"email": f"app{n}.{self.tag}@example.com", "name": name}).fetchone()[0]
            self.inserted.append(new_id)
            self.writes[new_id] = name
        else:
            name = f"Name {n}"
            sets = "".join(f", {c} = {v}" for c, v in columns.items())
            conn.execute(f"UPDATE users SET full_name = %(name)s{sets} WHERE id = %(id)s", {"name": name, "id": row_id})
            self.writes[row_id] = name

    def run(self):
        rng = random.Random(7)
        with connect(self.target, autocommit=True) as conn:
            n = 0
            while not self.stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    self.write(conn, n, rng.randint(1, 30_000))
                except psycopg.Error as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                self.max_wait = max(self.max_wait, time.monotonic() - started)
                time.sleep(0.002)

    def __enter__(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def make_migration(tmp_path, operation: dict, **extra):
    folder = tmp_path / f"0050_{operation['op']}"
    folder.mkdir()
    spec = {"description": f"test {operation['op']}", "table": "users", "batch_size": 3000, "shards": 2,
            "lock_timeout_ms": LOCK_TIMEOUT_MS, "operations": [operation], **extra}
    (folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    return load_migration(folder)


def apply_all(target, migration):
    """The up DAG's stages in order, with two shards claiming batches concurrently, at full speed: the subject is
    the operations under a writing application, not pacing (tests/test_pacing.py)."""
    run_id = preflight.preflight(target, migration)["run_id"]
    backup.backup(target, migration, run_id)
    schema_change.schema_change(target, migration, run_id)
    backfill.start_backfill(target, migration, run_id)
    shards = [threading.Thread(target=backfill.run_shard, args=(target, migration, run_id, i),
                               kwargs={"app_latency_ratio": None}) for i in range(2)]
    for shard in shards:
        shard.start()
    for shard in shards:
        shard.join()
    return run_id


def roll_back(target, migration):
    run_id = rollback.preflight_rollback(target, migration)["run_id"]
    rollback.down(target, migration, run_id)
    rollback.restore(target, migration, run_id)


def q(target, query, params=()):
    with connect(target) as conn:
        return conn.execute(query, params).fetchall()


def columns(target, table="users"):
    return {r[0]: r[1] for r in q(target, "SELECT column_name, data_type FROM information_schema.columns "
                                          "WHERE table_schema = 'public' AND table_name = %s", (table,))}


def assert_app_healthy(app: Application):
    assert app.errors == []
    assert app.max_wait < LOCK_TIMEOUT_MS / 1000 + SLACK_S, f"an application statement waited {app.max_wait:.2f}s"
    assert len(app.writes) > 20, "the application must have been writing during the migration"


def assert_writes_kept(target, app: Application):
    names = dict(q(target, "SELECT id, full_name FROM users WHERE id = ANY(%s)", (list(app.writes),)))
    assert {i: names.get(i) for i in app.writes} == app.writes


def lifecycle(target, migration, after_backfill=None, new_release=None) -> Application:
    """Under a writing application: expand + backfill, check, roll back (before the contract: the usual
    rollback), apply again, ship the new release (if the contract needs one), contract."""
    with Application(target) as app:
        apply_all(target, migration)
        time.sleep(0.3)  # writes after the backfill: the sync triggers keep them right
        if after_backfill:
            after_backfill()
        roll_back(target, migration)
        run_id = apply_all(target, migration)
        time.sleep(0.2)
        if after_backfill:
            after_backfill()
        if new_release:
            app.columns = new_release
            time.sleep(0.2)
        cleanup.cleanup(target, migration, run_id)
        time.sleep(0.2)
    assert_app_healthy(app)
    assert_writes_kept(target, app)
    return app


def test_add_column_with_backfill_trigger_and_not_null(fresh_db, tmp_path):
    migration = make_migration(tmp_path, {"op": "add_column", "column": "name_length", "type": "integer",
                                          "backfill": "length(full_name)", "not_null": True})
    stale = "SELECT count(*) FROM users WHERE name_length IS DISTINCT FROM length(full_name)"
    lifecycle(fresh_db, migration, after_backfill=lambda: assertions(fresh_db, {stale: 0}),
              new_release={"phone": "'+1 555 0100'", "name_length": "length(%(name)s)"})
    assertions(fresh_db, {stale: 0, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'am_sync_%%'": 0})
    assert q(fresh_db, "SELECT is_nullable FROM information_schema.columns WHERE column_name = 'name_length'") \
        == [("NO",)]
    roll_back(fresh_db, migration)  # after the contract: back to the old release's schema
    assert "name_length" not in columns(fresh_db)


def test_rename_column_keeps_both_names_in_sync_then_contracts(fresh_db, tmp_path):
    migration = make_migration(tmp_path, {"op": "rename_column", "column": "phone", "to": "phone_number"})
    in_sync = {"SELECT count(*) FROM users WHERE phone IS DISTINCT FROM phone_number": 0}
    lifecycle(fresh_db, migration, after_backfill=lambda: assertions(fresh_db, in_sync),
              new_release={"phone_number": "'+44 20 0000'"})
    cols = columns(fresh_db)
    assert "phone" not in cols and "phone_number" in cols
    latest = dict(q(fresh_db, "SELECT id, phone_number FROM users"))
    roll_back(fresh_db, migration)
    cols = columns(fresh_db)
    assert "phone" in cols and "phone_number" not in cols
    assert dict(q(fresh_db, "SELECT id, phone FROM users")) == latest


def test_change_column_type_converts_and_swaps(fresh_db, tmp_path):
    migration = make_migration(tmp_path, {"op": "change_column_type", "column": "country", "type": "varchar(8)",
                                          "using": "lower(country)"})
    converted = {"SELECT count(*) FROM users WHERE country__new IS DISTINCT FROM lower(country)": 0}
    lifecycle(fresh_db, migration, after_backfill=lambda: assertions(fresh_db, converted))
    assert columns(fresh_db)["country"] == "character varying"
    assertions(fresh_db, {"SELECT count(*) FROM users WHERE id <= 30000 AND country <> lower(country)": 0})
    roll_back(fresh_db, migration)
    assert columns(fresh_db)["country"] == "character"


def test_split_table_mirrors_inserts_updates_deletes(fresh_db, tmp_path):
    migration = make_migration(tmp_path, {"op": "split_table", "new_table": "user_logins",
                                          "columns": ["last_login_at"]}, approval=False)
    mirrored = {"SELECT count(*) FROM users u FULL JOIN user_logins l USING (id) WHERE u.id IS NULL "
                "OR l.id IS NULL OR u.last_login_at IS DISTINCT FROM l.last_login_at": 0}

    def delete_then_compare():
        with connect(fresh_db, autocommit=True) as conn:
            conn.execute("DELETE FROM users WHERE id = (SELECT min(id) FROM users WHERE id > 100)")
        assertions(fresh_db, mirrored)

    lifecycle(fresh_db, migration, after_backfill=delete_then_compare, new_release={"phone": "'+1 555 0100'"})
    assert "last_login_at" not in columns(fresh_db)
    expected = dict(q(fresh_db, "SELECT id, last_login_at FROM user_logins"))
    roll_back(fresh_db, migration)
    restored = dict(q(fresh_db, "SELECT id, last_login_at FROM users"))
    assert {i: restored[i] for i in expected} == expected
    assert all(value is None for i, value in restored.items() if i not in expected)  # the new release's rows
    assert q(fresh_db, "SELECT to_regclass('public.user_logins')") == [(None,)]


def test_split_table_rollback_before_the_contract_keeps_a_write_made_after_the_mirror_went(fresh_db, tmp_path):
    """Before the contract the old table is the record. The rollback used to drop the mirroring trigger, then copy
    the new table back over the old: an application write in between (here: right after the down DDL) was
    overwritten with the mirror's older value."""
    migration = make_migration(tmp_path, {"op": "split_table", "new_table": "user_logins",
                                          "columns": ["last_login_at"]}, approval=False)
    apply_all(fresh_db, migration)
    before = dict(q(fresh_db, "SELECT id, last_login_at FROM users"))
    run_id = rollback.preflight_rollback(fresh_db, migration)["run_id"]
    rollback.down(fresh_db, migration, run_id)
    with connect(fresh_db, autocommit=True) as conn:  # the old release writes its table, as it always did
        conn.execute("UPDATE users SET last_login_at = '2001-02-03' WHERE id = 5")
    rollback.restore(fresh_db, migration, run_id)
    after = dict(q(fresh_db, "SELECT id, last_login_at FROM users"))
    assert str(after.pop(5)).startswith("2001-02-03")
    assert after == {i: v for i, v in before.items() if i != 5}
    assert q(fresh_db, "SELECT to_regclass('public.user_logins')") == [(None,)]


@pytest.mark.parametrize("operation, check", [
    ({"op": "add_index", "name": "idx_users_country", "columns": ["country"]},
     "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.idx_users_country')"),
    ({"op": "add_check", "name": "chk_country", "expression": "length(country) = 2"},
     "SELECT convalidated FROM pg_constraint WHERE conname = 'chk_country'"),
    ({"op": "add_unique", "name": "uq_users_email", "columns": ["email"]},
     "SELECT convalidated FROM pg_constraint WHERE conname = 'uq_users_email' AND contype = 'u'"),
    ({"op": "add_foreign_key", "name": "fk_users_country", "columns": ["country"],
      "references_table": "countries", "references_columns": ["code"]},
     "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_users_country' AND contype = 'f'"),
])
def test_index_and_constraints_are_built_without_blocking(fresh_db, tmp_path, operation, check):
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE countries (code char(2) PRIMARY KEY)")
        conn.execute("INSERT INTO countries SELECT DISTINCT country FROM users")
    migration = make_migration(tmp_path, operation)
    lifecycle(fresh_db, migration)
    assert q(fresh_db, check) == [(True,)]
    with Application(fresh_db) as app:
        roll_back(fresh_db, migration)
    assert_app_healthy(app)
    assert q(fresh_db, check) == []


def test_drop_column_only_in_contract_and_restored_by_rollback(fresh_db, tmp_path):
    before = dict(q(fresh_db, "SELECT id, created_at FROM users"))
    migration = make_migration(tmp_path, {"op": "drop_column", "column": "created_at"}, approval=False)
    with Application(fresh_db) as app:
        run_id = apply_all(fresh_db, migration)
        assert "created_at" in columns(fresh_db), "expand must not drop"
        cleanup.cleanup(fresh_db, migration, run_id)
        assert "created_at" not in columns(fresh_db)
        roll_back(fresh_db, migration)
    assert_app_healthy(app)
    after = dict(q(fresh_db, "SELECT id, created_at FROM users"))
    assert {i: after[i] for i in before} == before


def test_drop_table_is_retired_and_restored(fresh_db, tmp_path):
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE legacy_sessions (id bigint PRIMARY KEY, token text)")
        conn.execute("INSERT INTO legacy_sessions SELECT g, md5(g::text) FROM generate_series(1, 100) g")
    migration = make_migration(tmp_path, {"op": "drop_table", "table": "legacy_sessions"}, approval=False)
    with Application(fresh_db) as app:
        run_id = apply_all(fresh_db, migration)
        cleanup.cleanup(fresh_db, migration, run_id)
        assert q(fresh_db, "SELECT to_regclass('public.legacy_sessions')") == [(None,)]
        roll_back(fresh_db, migration)
    assert_app_healthy(app)
    assert q(fresh_db, "SELECT count(*) FROM legacy_sessions") == [(100,)]


def assertions(target, expected: dict) -> None:
    for query, value in expected.items():
        assert q(target, query) == [(value,)], query


def test_rename_column_keeps_the_indexes_of_the_old_column(fresh_db, tmp_path):
    """A contract dropping the old column would drop its indexes (another migration's, say): they are built again
    on the new column, concurrently, and keep their names; expression and partial indexes too."""
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE INDEX users_phone ON users (phone)")
        conn.execute("CREATE INDEX users_phone_digits ON users (lower(phone)) WHERE phone IS NOT NULL")
    migration = make_migration(tmp_path, {"op": "rename_column", "column": "phone", "to": "phone_number"})
    lifecycle(fresh_db, migration, new_release={"phone_number": "'+44 20 0000'"})
    indexes = dict(q(fresh_db, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'users' "
                               "AND indexname ~ '^users_phone'"))
    assert indexes == {
        "users_phone": "CREATE INDEX users_phone ON public.users USING btree (phone_number)",
        "users_phone_digits": "CREATE INDEX users_phone_digits ON public.users USING btree (lower(phone_number)) "
                              "WHERE (phone_number IS NOT NULL)"}
    assert q(fresh_db, "SELECT count(*) FROM pg_index WHERE indrelid = 'users'::regclass AND NOT indisvalid") == [(0,)]
