"""Which worker ran which batch (issue 24): the name a batch records, and the report's table of it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from airmigrate import worker_name
from airmigrate.report.workers import by_worker, ranges


def test_the_name_is_the_setting_else_the_celery_node_else_the_host(monkeypatch):
    monkeypatch.delenv("AIRMIGRATE_WORKER_NAME", raising=False)
    monkeypatch.setattr(worker_name, "celery_hostname", lambda: None)
    assert worker_name.worker_name() == socket.gethostname()
    assert worker_name.batch_worker(3) == f"{socket.gethostname()}:{os.getpid()}:shard3"
    monkeypatch.setattr(worker_name, "celery_hostname", lambda: "celery@airflow-worker-1")
    assert worker_name.batch_worker(0).startswith("celery@airflow-worker-1:")
    monkeypatch.setenv("AIRMIGRATE_WORKER_NAME", "blue")
    assert worker_name.worker_name() == "blue"


def test_the_celery_node_name_of_the_running_task():
    """Inside a Celery task (run eagerly here) the task request's node name is found; outside one, or in a process
    without Celery, there is none. tests/test_celery.py sees it through real workers."""
    code = """
import sys
from airmigrate import worker_name
assert worker_name.celery_hostname() is None and "celery" not in sys.modules
from celery import Celery
app = Celery("t", broker="memory://")

@app.task(bind=True)
def name(self):
    return worker_name.celery_hostname() == self.request.hostname != None

print(name.apply().get())
print(worker_name.celery_hostname())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "None"]


def test_batches_grouped_by_worker():
    batches = [{"batch_no": n, "status": st, "rows": 10, "worker": w} for n, st, w in [
        (0, "succeeded", "a:1:shard0"), (1, "succeeded", "a:1:shard0"), (2, "succeeded", "b:2:shard1"),
        (3, "split", "b:2:shard1"), (4, "failed", "b:2:shard1"), (5, "succeeded", "a:1:shard0"),
        (6, "pending", None)]]
    assert by_worker(batches) == [
        {"worker": "a:1:shard0", "batches": 3, "rows": 30, "failed": 0, "batch_nos": "0-1, 5"},
        {"worker": "b:2:shard1", "batches": 2, "rows": 20, "failed": 1, "batch_nos": "2, 4"}]
    assert ranges([]) == "" and ranges([7]) == "7" and ranges([1, 2, 3, 9]) == "1-3, 9"
