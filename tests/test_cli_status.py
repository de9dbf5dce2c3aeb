"""`airmigrate status`: failed batches are never reported as 100% / complete, and its output may go into a
pipe that closes early (`airmigrate status <id> | head -4`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airmigrate import state
from airmigrate.cli import EXIT_BROKEN_PIPE
from airmigrate.cli.status import progress_line
from airmigrate.db import connect

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "airmigrate.cli"]
MIGRATION = "0001_add_user_email_verified"


def cli_env(target) -> dict:
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": target.url()}
    env.pop("AIRFLOW_CONN_AIRMIGRATE_TARGET", None)
    return env


def record_run(target, batches: int, failed: int, pending: int = 0, size: int = 1000) -> None:
    """The state a backfill leaves: every range handed out, ``failed`` batches out of attempts."""
    with connect(target) as conn:
        state.ensure_schema(conn)
        conn.execute("INSERT INTO airmigrate.history (migration_id, checksum, status) VALUES (%s, 'x', 'failed')",
                     (MIGRATION,))
        run_id = conn.execute("INSERT INTO airmigrate.runs (migration_id, direction, status, error) "
                              "VALUES (%s, 'up', 'failed', 'batches failed') RETURNING run_id", (MIGRATION,)).fetchone()[0]
        conn.execute("INSERT INTO airmigrate.cursors (run_id, exhausted, next_batch_no, batch_size, estimated_rows, "
                     "started_at) VALUES (%s, true, %s, %s, %s, now() - interval '60 seconds')",
                     (run_id, batches, size, batches * size))
        for no in range(batches):
            status = "failed" if no < failed else "pending" if no < failed + pending else "succeeded"
            conn.execute(
                "INSERT INTO airmigrate.batches (run_id, batch_no, lo, hi, status, size, rows, attempts, last_error, "
                "started_at, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now() - interval '30 seconds', "
                "CASE WHEN %s <> 'pending' THEN now() END)",
                (run_id, no, no * size + 1, (no + 1) * size, status, size, size if status == "succeeded" else None,
                 3 if status == "failed" else 1, "division by zero" if status == "failed" else None, status))
        conn.commit()


def test_failed_batches_are_not_reported_as_complete(empty_db):
    record_run(empty_db, batches=43, failed=4)
    result = subprocess.run([*CLI, "status", MIGRATION], env=cli_env(empty_db), cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "39/43 done, 4 failed, 0 pending" in out
    backfill = next(line for line in out.splitlines() if line.strip().startswith("backfill:"))
    assert "100%" not in backfill and "90% of ~43,000 rows covered" in backfill, backfill
    assert "NOT complete: 4 failed batches to retry" in backfill, backfill
    assert out.count("failed batch ") == 4 and "after 3 attempts: division by zero" in out
    assert "retry_failed=true" in out


@pytest.mark.parametrize("summary, progress, expected", [
    # everything done: 100%, none pending
    ({"failed": 0, "pending": 0}, {"percent": 100.0, "estimated": 1000, "covered": 1000, "rate": 50.0,
                                   "exhausted": True, "eta_s": 0.0}, "100% of ~1,000 rows covered"),
    # 995 of 1000 with a failed batch: never rounded up to "100%"
    ({"failed": 1, "pending": 0}, {"percent": 100.0, "estimated": 1000, "covered": 999, "rate": 50.0,
                                   "exhausted": True, "eta_s": 0.0}, "99% of ~1,000 rows covered"),
    # more covered than the estimate said, but a batch failed: still below 100%
    ({"failed": 2, "pending": 0}, {"percent": 100.0, "estimated": 1000, "covered": 1500, "rate": 50.0,
                                   "exhausted": True, "eta_s": 0.0}, "99% of ~1,000 rows covered"),
    # still running, one failed so far
    ({"failed": 1, "pending": 3}, {"percent": 50.0, "estimated": 1000, "covered": 500, "rate": 10.0,
                                   "exhausted": False, "eta_s": 50.0}, "50% of ~1,000 rows covered"),
])
def test_progress_line(summary, progress, expected):
    line = progress_line(progress, summary)
    assert line.startswith(expected), line
    if summary["failed"]:
        assert "failed batch" in line and "to retry" in line
    else:
        assert "none pending" in line and "failed" not in line
    assert ("ETA" in line) == bool(summary["pending"])


def test_output_into_a_closed_pipe_ends_quietly(empty_db):
    """`airmigrate status <id> | head -4`: the reader is gone before we write; no BrokenPipeError traceback."""
    record_run(empty_db, batches=43, failed=40)  # plenty of lines
    process = subprocess.Popen([*CLI, "status", MIGRATION], env=cli_env(empty_db), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # like `head` that has read enough
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == EXIT_BROKEN_PIPE, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr, stderr


def test_head_of_the_output_through_a_shell_pipe(empty_db):
    record_run(empty_db, batches=43, failed=40)
    result = subprocess.run(["bash", "-c", f"{' '.join(CLI)} status {MIGRATION} | head -2"], env=cli_env(empty_db),
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
