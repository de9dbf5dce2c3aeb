"""move_rows, rename_table, rename_index and rename_constraint through Airflow: the real DAGs (dag.test()) forward,
then their rollback DAG, the database checked after each."""

from __future__ import annotations

import json

import yaml

from airmigrate.airflow.runner import run_dag
from conftest import table_checksum
from test_operations import q


def write_migration(root, migration_id: str, operations: list[dict], suite_query: str | None = None) -> None:
    """A migrations folder (and an expectations folder, with a suite when `suite_query` names unexpected rows)."""
    (root / "migrations" / migration_id).mkdir(parents=True)
    (root / "expectations").mkdir(exist_ok=True)
    spec = {"description": migration_id.replace("_", " "), "table": "users", "batch_size": 3000,
            "operations": operations}
    (root / "migrations" / migration_id / "migration.yaml").write_text(yaml.safe_dump(spec))
    if suite_query:
        suite = {"name": migration_id, "expectations": [
            {"type": "unexpected_rows_expectation",
             "kwargs": {"unexpected_rows_query": suite_query, "description": "no row matches `where` any more"}}]}
        (root / "expectations" / f"{migration_id}.json").write_text(json.dumps(suite))


def use_folder(monkeypatch, root) -> None:
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(root / "migrations"))
    monkeypatch.setenv("AIRMIGRATE_EXPECTATIONS_DIR", str(root / "expectations"))


def run(dag_id: str, **conf) -> None:
    """The DAG must succeed; at full speed unless `conf` says otherwise: these tests are about the operations'
    DAGs, not pacing (a paced run starts at a twentieth of the ceiling and probes after 2 s)."""
    dagrun = run_dag(dag_id, {"app_latency_ratio": None, **conf})
    assert str(dagrun.state) == "success", f"{dag_id} ended {dagrun.state}"


def history(target) -> str:
    return q(target, "SELECT status FROM airmigrate.history")[0][0]


def test_move_rows_dag_then_its_rollback_dag_then_the_whole_way(fresh_db, tmp_path, monkeypatch):
    use_folder(monkeypatch, tmp_path)
    write_migration(tmp_path, "0001_archive_every_third_user",
                    [{"op": "move_rows", "to": "users_archive", "where": "id % 3 = 0", "create": True,
                      "keep_archive_days": 0}], "SELECT id FROM {batch} WHERE id % 3 = 0")
    before = table_checksum(fresh_db)
    archive = 'airmigrate."archive_0001_archive_every_third_user"'

    run("0001_archive_every_third_user", until="expand")
    assert q(fresh_db, "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM users_archive), "
                       f"(SELECT count(*) FROM {archive})")[0] == (20000, 10000, 10000)
    assert q(fresh_db, "SELECT count(*) FROM users WHERE id %% 3 = 0")[0][0] == 0
    assert history(fresh_db) == "expanded"

    run("0001_archive_every_third_user__rollback", approve_rollback=True)
    assert table_checksum(fresh_db) == before
    assert q(fresh_db, f"SELECT to_regclass('users_archive'), to_regclass('{archive}')")[0] == (None, None)

    run("0001_archive_every_third_user", approve_contract=True)  # keep_archive_days 0: the contract drops it
    assert q(fresh_db, "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM users_archive)")[0] == \
        (20000, 10000)
    assert q(fresh_db, f"SELECT to_regclass('{archive}')")[0][0] is None
    assert history(fresh_db) == "applied"


def relkinds(target) -> dict[str, str]:
    return dict(q(target, "SELECT relname, relkind::text FROM pg_class WHERE relname IN ('users', 'accounts') "
                          "AND relnamespace = 'public'::regnamespace"))


def test_rename_table_dags_expand_rollback_then_contract_rollback(fresh_db, tmp_path, monkeypatch):
    use_folder(monkeypatch, tmp_path)
    write_migration(tmp_path, "0001_rename_users_to_accounts", [{"op": "rename_table", "to": "accounts"}])
    before = table_checksum(fresh_db)

    run("0001_rename_users_to_accounts", until="expand")
    assert relkinds(fresh_db) == {"accounts": "r", "users": "v"}  # the old name is a view of the table
    assert table_checksum(fresh_db, "accounts") == before
    run("0001_rename_users_to_accounts__rollback", approve_rollback=True)
    assert relkinds(fresh_db) == {"users": "r"}
    assert table_checksum(fresh_db) == before

    run("0001_rename_users_to_accounts", approve_contract=True)
    assert relkinds(fresh_db) == {"accounts": "r"}
    assert history(fresh_db) == "applied"
    run("0001_rename_users_to_accounts__rollback", approve_rollback=True)
    assert relkinds(fresh_db) == {"users": "r"}
    assert table_checksum(fresh_db) == before
    assert history(fresh_db) == "rolled_back"


def test_rename_index_and_constraint_dag_then_rollback_dag(fresh_db, tmp_path, monkeypatch):
    use_folder(monkeypatch, tmp_path)
    write_migration(tmp_path, "0001_rename_email_key_and_pkey",
                    [{"op": "rename_index", "name": "users_email_key", "to": "users_email_uq"},
                     {"op": "rename_constraint", "name": "users_pkey", "to": "users_pk"}])
    names = ("SELECT to_regclass('users_email_key') IS NOT NULL, to_regclass('users_email_uq') IS NOT NULL, "
             "(SELECT array_agg(conname::text ORDER BY conname) FROM pg_constraint "
             "WHERE conrelid = 'users'::regclass)")

    run("0001_rename_email_key_and_pkey", approve_contract=True)
    assert q(fresh_db, names)[0] == (False, True, ["users_email_uq", "users_pk"])  # the index names its constraint
    assert history(fresh_db) == "applied"
    run("0001_rename_email_key_and_pkey__rollback", approve_rollback=True)
    assert q(fresh_db, names)[0] == (True, False, ["users_email_key", "users_pkey"])
    assert history(fresh_db) == "rolled_back"
