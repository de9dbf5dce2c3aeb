"""Distributed backfill: Airflow with the CeleryExecutor and two Celery workers (separate processes, each with its
own home, temp folder and Airflow home, like two machines or containers) running the shards of one backfill; no
batch is done twice; and what the deployment shares (issue 24): only the var folder.

One deployment for the module (:func:`deployment`): starting Airflow and its two workers is most of each test's
time, and the two tests' runs are of two migrations on columns of their own, each test reading only its own run's
batches.

The broker is the Redis at 127.0.0.1:6379 when it answers (as on CI here), else kombu's SQLAlchemy
transport on the test PostgreSQL, so a machine without Redis runs the same topology. The metadata
database and the Celery result backend are PostgreSQL databases made for this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from airmigrate import devdb
from airmigrate.airflow.local import LocalAirflow, sqlalchemy_url
from airmigrate.db import connect
from test_airflow_server import trigger, wait_finished

pytestmark = [pytest.mark.airflow_server, pytest.mark.xdist_group("celery")]  # its Airflows run beside the others
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


SHARED_ID, SHARED_COLUMN = "0104_shared_evidence", "email_checked"  # 0103 on a column of its own


@pytest.fixture(scope="module")
def databases(pg_server, template_db):
    suffix = uuid.uuid4().hex[:8]
    made = {"target": devdb.recreate_database(pg_server, f"amtest_celery_{suffix}", template=template_db),
            "metadata": devdb.recreate_database(pg_server, f"amtest_celery_meta_{suffix}"),
            "results": devdb.recreate_database(pg_server, f"amtest_celery_res_{suffix}")}
    yield made
    for target in made.values():
        devdb.drop_database(pg_server, target.dbname)


def _migrations(root: Path) -> tuple[Path, Path]:
    """0103's slow backfill as it is, and a copy (0104) on a column of its own (email_checked: the two runs touch
    different columns) with a table dump (backup: table) and an expectation suite (Data Docs)."""
    migrations, expectations = root / "migrations", root / "expectations"
    shutil.copytree(FIXTURES / "migrations" / DAG_ID, migrations / DAG_ID)
    folder = migrations / SHARED_ID
    shutil.copytree(FIXTURES / "migrations" / DAG_ID, folder)
    for path in folder.iterdir():
        path.write_text(path.read_text().replace("email_verified", SHARED_COLUMN))
    spec = (folder / "migration.yaml").read_text().replace("shards: 1\n", "shards: 2\nbackup: table\n")
    (folder / "migration.yaml").write_text(spec.replace("kill the worker in the middle of the backfill",
                                                        "run its shards on two Celery workers"))
    expectations.mkdir()
    (expectations / f"{SHARED_ID}.json").write_text(json.dumps({"name": SHARED_ID, "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": SHARED_COLUMN}}]}))
    return migrations, expectations


@pytest.fixture(scope="module")
def deployment(databases, tmp_path_factory):
    """Two Celery workers, each with its own home, temp folder and Airflow home (like two containers), and an
    api-server with its own: the one thing they share is the var folder (the Compose file's airmigrate-var
    volume, the Helm values' ReadWriteMany claim). worker-a is named by its deployment (AIRMIGRATE_WORKER_NAME),
    worker-b by nothing set by hand: its batches name its Celery node (:data:`NAMES`). Yields (airflow, the shared
    folder, each one's own folder)."""
    root = tmp_path_factory.mktemp("celery-shared")
    shared = root / "shared-var"  # the volume
    shared.mkdir()
    migrations, expectations = _migrations(root)
    broker = (f"redis://127.0.0.1:6379/{int(uuid.uuid4().int % 15) + 1}" if redis_answers()
              else "sqla+" + sqlalchemy_url(databases["results"]))
    queue = f"airmigrate-shared-{uuid.uuid4().hex[:8]}"  # no other test's worker takes these tasks
    settings = {"AIRMIGRATE_VAR_DIR": str(shared), "AIRMIGRATE_DOCS_DIR": str(shared / "docs" / "schema"),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(shared / "logs"),
                "AIRMIGRATE_BACKUP_DIR": str(shared / "backups"),
                "AIRMIGRATE_DATA_DOCS_DIR": str(shared / "data_docs"),
                "AIRMIGRATE_MIGRATIONS_DIR": str(migrations), "AIRMIGRATE_EXPECTATIONS_DIR": str(expectations)}
    own = {name: root / name for name in ("api-home", "worker-a", "worker-b")}
    for path in own.values():
        (path / "tmp").mkdir(parents=True)
    airflow = LocalAirflow(own["api-home"] / "airflow", databases["target"].airflow_uri(),
                           components=("api-server", "scheduler", "dag-processor"),
                           extra_env={**settings, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                                      "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(databases["metadata"]),
                                      "AIRFLOW__CELERY__BROKER_URL": broker,
                                      "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url(databases["results"]),
                                      "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
                                      "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
                                      "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                                      "AIRMIGRATE_HOME": str(own["api-home"]), "HOME": str(own["api-home"]),
                                      "TMPDIR": str(own["api-home"] / "tmp")})
    airflow.env.pop("AIRMIGRATE_WORKER_NAME", None)
    try:
        airflow.start(timeout=420)
        for name in ("worker-a", "worker-b"):
            home = own[name]
            airflow.spawn(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "1",
                                 "--queues", queue, "--skip-serve-logs"],
                          env={"AIRFLOW_HOME": str(home / "airflow"), "AIRMIGRATE_HOME": str(home), "HOME": str(home),
                               "TMPDIR": str(home / "tmp"), **({"AIRMIGRATE_WORKER_NAME": "worker-a"}
                                                               if name == "worker-a" else {})})
        # both workers connected to the broker, or one could take every batch before the other starts
        airflow.wait_for(lambda: all(" ready." in (airflow.home / "logs" / f"{name}.out").read_text(errors="replace")
                                     for name in ("worker-a", "worker-b")), 300, "the Celery workers did not start")
        yield airflow, shared, own
    finally:
        airflow.stop()


# the names the batches record (worker_name.batch_worker: "<name>:<pid>:shard<n>"): worker-a's setting, worker-b's
# Celery node name (its --celery-hostname worker-b@%h)
NAMES = {"worker-a", f"worker-b@{socket.gethostname()}"}


def names(workers: set[str]) -> set[str]:
    return {w.rsplit(":", 2)[0] for w in workers}


def batch_workers(target, migration_id: str) -> set[str]:
    """The workers that ran the batches of `migration_id`'s runs (the other test's run is on the same target)."""
    with connect(target) as conn:
        return {row[0] for row in conn.execute("SELECT DISTINCT b.worker FROM airmigrate.batches b JOIN "
                                               "airmigrate.runs r ON r.run_id = b.run_id WHERE r.migration_id = %s",
                                               (migration_id,))}


def test_two_celery_workers_share_one_backfill(databases, deployment):
    airflow = deployment[0]
    run_id = trigger(airflow, DAG_ID, {"batch_size": 500, "shards": 2})
    assert wait_finished(airflow, DAG_ID, run_id) == "success", _tail(airflow)
    with connect(databases["target"]) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE email_verified IS DISTINCT FROM "
                            "(email_confirmed_at IS NOT NULL)").fetchone()[0] == 0
        attempts = conn.execute("SELECT max(b.attempts), count(*) FILTER (WHERE b.status <> 'succeeded') "
                                "FROM airmigrate.batches b JOIN airmigrate.runs r ON r.run_id = b.run_id "
                                "WHERE r.migration_id = %s", (DAG_ID,)).fetchone()
    workers = batch_workers(databases["target"], DAG_ID)
    assert names(workers) == NAMES, f"batches ran on {workers}"  # both took part, each under its name
    assert attempts == (1, 0), "every batch exactly once"


def _tail(airflow, lines=40):
    logs = sorted((airflow.home / "logs").glob("*.out"))
    return "\n".join(f"== {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) for p in logs)


# --- issue 24: what the deployment shares ------------------------------------------------------------------

def test_workers_and_the_api_server_share_only_the_var_folder(databases, deployment):
    """The batches name the Celery worker that ran them (worker-b: its node name, nothing set by hand); the report one
    worker wrote, its Data Docs and the backup another may have taken are read through the api-server afterwards
    (which never ran a task); nothing a run leaves behind is on a worker's own disk."""
    airflow, shared, own = deployment
    run_id = trigger(airflow, SHARED_ID, {"batch_size": 500, "shards": 2})
    assert wait_finished(airflow, SHARED_ID, run_id) == "success", _tail(airflow)

    workers = batch_workers(databases["target"], SHARED_ID)
    assert names(workers) == NAMES, f"batches ran on {workers}"  # worker-b's the Celery node name

    # the report, through the api-server (it reads the shared folder; it never ran a task)
    page = airflow.api("GET", f"/airmigrate/reports/dag-run/{SHARED_ID}/{run_id}")
    assert page.status_code == 200 and page.url.endswith(".html"), page.text[:500]
    html = page.text
    for worker in workers:
        assert worker.split(":", 1)[0] in html  # which worker ran which batch
    assert "(file not found)" not in html  # the worker that wrote the report saw the dump
    markdown = airflow.api("GET", page.url.split(airflow.url, 1)[1].removesuffix(".html") + ".md")
    assert markdown.status_code == 200 and "Which worker ran which batch" in markdown.text
    assert all(name in markdown.text for name in NAMES), markdown.text[-2000:]
    docs = re.findall(r'href="([^"]+\.data-docs/[^"]+)"', html)
    assert docs, "no Data Docs link in the report"
    base = page.url.rsplit("/", 1)[0]
    data_docs = airflow.api("GET", (base + "/" + docs[0]).split(airflow.url, 1)[1])
    assert data_docs.status_code == 200 and "Data Docs created by Great Expectations" in data_docs.text
    pages = list((shared / "reports" / SHARED_ID).glob("*.data-docs/validations/**/*.html"))
    assert pages and SHARED_COLUMN in pages[0].read_text()  # the run's validation, kept beside its report
    dump = re.search(r"<code>([^<]+\.dump)</code>", html)
    assert dump, "no table dump named in the report"
    path = Path(dump.group(1))
    assert shared in path.parents and path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:5] == b"PGDMP"  # a pg_dump custom-format archive
    # nothing a run leaves behind is on a worker's own disk
    for name in ("worker-a", "worker-b"):
        left = [p for p in own[name].rglob("*") if p.is_file() and p.suffix in (".html", ".md", ".dump")]
        assert not left, left
