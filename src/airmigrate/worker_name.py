"""Which worker runs a batch: the name written into ``airmigrate.batches.worker`` (and ``batch_attempts``), shown
by the console's batch view and the report.

- ``AIRMIGRATE_WORKER_NAME`` when set (a deployment that names its workers itself);
- else the Celery worker's node name when the task runs under the CeleryExecutor (``celery@<host>`` by default,
  or what ``airflow celery worker --celery-hostname`` gave it): Airflow's Celery task forks the task runner, so
  the current Celery task's request is still in the process;
- else this machine's host name (a container's or pod's name in Compose or Kubernetes).

:func:`batch_worker` adds the process id and the shard (``<name>:<pid>:shard<n>``), so two shards on one
worker stay apart. No Celery import: a process that has not loaded Celery is not a Celery worker.
"""

from __future__ import annotations

import os
import socket
import sys


def celery_hostname() -> str | None:
    """The node name of the Celery worker running the current task, else None (not under Celery)."""
    if "celery" not in sys.modules:
        return None
    try:
        from celery import current_task

        request = current_task.request if current_task else None
        name = getattr(request, "hostname", None) if request is not None else None
    except Exception:  # an older or newer Celery without these: fall back to the host name
        return None
    return name if isinstance(name, str) and name else None


def worker_name() -> str:
    return os.environ.get("AIRMIGRATE_WORKER_NAME") or celery_hostname() or socket.gethostname()


def batch_worker(shard: int) -> str:
    return f"{worker_name()}:{os.getpid()}:shard{shard}"
