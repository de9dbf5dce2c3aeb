"""Distributed backfill: Airflow with the CeleryExecutor and two Celery workers (separate processes, like
two machines) running the shards of one backfill; no batch is done twice.

The broker is the Redis at 127.0.0.1:6379 when it answers (as on CI here), else kombu's SQLAlchemy
transport on the test PostgreSQL, so a machine without Redis runs the same topology. The metadata
database and the Celery result backend are PostgreSQL databases made for this test.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from airmigrate import devdb
from airmigrate.airflow.local import LocalAirflow, sqlalchemy_url
from airmigrate.db import connect
from test_airflow_server import trigger, wait_finished

pytestmark = [pytest.mark.airflow_server, pytest.mark.xdist_group("airflow_server")]
DAG_ID = "0103_slow_backfill"  # 0.25 s per batch: long enough for both workers to take part
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def redis_answers() -> bool:
    if os.environ.get("AIRMIGRATE_TEST_CELERY_BROKER") == "sqlalchemy":  # what a machine without Redis does
        return False
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def databases(pg_server, template_db):
    suffix = uuid.uuid4().hex[:8]
    made = {"target": devdb.recreate_database(pg_server, f"amtest_celery_{suffix}", template=template_db),
            "metadata": devdb.recreate_database(pg_server, f"amtest_celery_meta_{suffix}"),
            "results": devdb.recreate_database(pg_server, f"amtest_celery_res_{suffix}")}
    yield made
    for target in made.values():
        devdb.drop_database(pg_server, target.dbname)


def test_two_celery_workers_share_one_backfill(databases, tmp_path_factory):
    broker = (f"redis://127.0.0.1:6379/{int(uuid.uuid4().int % 15) + 1}" if redis_answers()
              else "sqla+" + sqlalchemy_url(databases["results"]))
    airflow = LocalAirflow(tmp_path_factory.mktemp("airflow-celery"), databases["target"].airflow_uri(),
                           components=("api-server", "scheduler", "dag-processor"),
                           extra_env={"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                                      "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(databases["metadata"]),
                                      "AIRFLOW__CELERY__BROKER_URL": broker,
                                      "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url(databases["results"]),
                                      "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
                                      "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                                      "AIRMIGRATE_MIGRATIONS_DIR": str(FIXTURES / "migrations"),
                                      "AIRMIGRATE_EXPECTATIONS_DIR": str(FIXTURES / "expectations")})
    try:
        airflow.start(timeout=420)
        for name in ("worker-a", "worker-b"):
            airflow.spawn(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "1"],
                          env={"AIRMIGRATE_WORKER_NAME": name})
        # both workers connected to the broker, or one could take every batch before the other starts
        airflow.wait_for(lambda: all(" ready." in (airflow.home / "logs" / f"{name}.out").read_text(errors="replace")
                                     for name in ("worker-a", "worker-b")), 300, "the Celery workers did not start")
        run_id = trigger(airflow, DAG_ID, {"batch_size": 500, "shards": 2})
        assert wait_finished(airflow, DAG_ID, run_id) == "success", _tail(airflow)
    finally:
        airflow.stop()
    with connect(databases["target"]) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE email_verified IS DISTINCT FROM "
                            "(email_confirmed_at IS NOT NULL)").fetchone()[0] == 0
        workers = {row[0] for row in conn.execute("SELECT DISTINCT split_part(worker, ':', 1) FROM airmigrate.batches")}
        attempts = conn.execute("SELECT max(attempts), count(*) FILTER (WHERE status <> 'succeeded') "
                                "FROM airmigrate.batches").fetchone()
    assert workers == {"worker-a", "worker-b"}, f"batches ran on {workers}"
    assert attempts == (1, 0), "every batch exactly once"


def _tail(airflow, lines=40):
    logs = sorted((airflow.home / "logs").glob("*.out"))
    return "\n".join(f"== {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) for p in logs)
