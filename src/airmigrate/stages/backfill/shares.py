"""Why one shard did every batch (issue 16: "with shards: 2 every run did all its batches on one shard").

The shards share the batches through `FOR UPDATE SKIP LOCKED` when they run at once, as a scheduler runs
mapped tasks (`make airflow`, LocalExecutor or Celery). `airmigrate run` and `make demo` go through Airflow's
`dag.test()`, which runs mapped task instances one after another in one process: the first shard finds every
batch free and takes them all, the next ones find none left. Nothing is wrong and nothing is lost, but a
user who asked for 2 shards deserves to be told why they saw one: this says so, in the shard's log and in
the run's summary.
"""

from __future__ import annotations

from airmigrate import engines
from airmigrate.spec import Migration


def one_shard_note(conn, run_id: int, shards: int) -> str | None:
    """The explanation when more than one shard was asked for and a single worker ran every batch; else None."""
    if shards <= 1:
        return None
    rows = conn.execute("SELECT worker, count(*) FROM airmigrate.batches WHERE run_id = %s AND status = 'succeeded' "
                        "AND worker IS NOT NULL GROUP BY worker", (run_id,)).fetchall()
    if len(rows) != 1 or rows[0][1] < 2:
        return None
    worker, batches = rows[0]
    return (f"shards: {shards} asked, and {worker.rsplit(':', 1)[-1]} ran all {batches} batches: the others had not "
            "started yet. `airmigrate run` runs the DAG with Airflow's dag.test(), which runs mapped tasks one after "
            "another, so the first shard to start takes every batch; a scheduler (`make airflow`, Celery) runs the shards at "
            "once and they share the batches")


def run_note(conn, migration: Migration, dag_run_id: str) -> str | None:
    """The note for the forward run of that Airflow run (the CLI's summary), when it applies."""
    if not engines.of(conn).state_sql().state_table_exists(conn, "runs"):
        return None
    row = conn.execute("SELECT run_id FROM airmigrate.runs WHERE migration_id = %s AND direction = 'up' "
                       "AND dag_run_id = %s", (migration.id, dag_run_id)).fetchone()
    return one_shard_note(conn, row[0], migration.spec.shards) if row else None
