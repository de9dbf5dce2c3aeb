"""`airmigrate` as a user runs it: a subprocess against a fresh database, exit codes and report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airmigrate.cli.run import _params
from airmigrate.db import connect
from airmigrate.errors import AirmigrateError

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "airmigrate.cli"]


def test_param_values_are_json_scalars_or_strings():
    """`--param app_latency_ratio=null` is full speed and `=1.5` a ratio: as the strings "null" and "1.5" the DAG's
    params refused them (a number or null)."""
    conf = _params(["app_latency_ratio=null", "batch_size=7000", "dry_run=True", "sample=2.5", "until=expand",
                    "note=0001", "ratio=1.5"])
    assert conf == {"app_latency_ratio": None, "batch_size": 7000, "dry_run": True, "sample": 2.5,
                    "until": "expand", "note": "0001", "ratio": 1.5}
    assert _params(["list=[1, 2]"]) == {"list": "[1, 2]"}, "only scalars are parsed"
    assert _params(["app_latency_ratio=NaN"]) == {"app_latency_ratio": "NaN"}, "not a number the DAG would take"
    with pytest.raises(AirmigrateError, match="expected KEY=VALUE"):
        _params(["batch_size"])


def airmigrate(target, *args, **extra_env):
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": target.url(), **extra_env}
    env.pop("AIRFLOW_CONN_AIRMIGRATE_TARGET", None)
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_run_rollback_status_and_exit_codes(fresh_db):
    done = airmigrate(fresh_db, "run", "0001_add_user_email_verified", "--param", "batch_size=7000",
                      "--param", "app_latency_ratio=null")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "0001_add_user_email_verified on" in done.stdout and ": success" in done.stdout
    with connect(fresh_db) as conn:  # null: full speed, so the run never started a pacer (the spec asks 1.25)
        assert conn.execute("SELECT count(*) FROM airmigrate.pacing").fetchone()[0] == 0
    assert re.search(r"backfill: 18,000 rows written in \d+ batches \(0 failed, 0 pending\)", done.stdout)
    # shards: 2, but dag.test runs mapped tasks one by one: the summary says why one shard did every batch
    assert re.search(r"shards: 2 asked, and shard\d ran all \d+ batches: .*dag\.test\(\)", done.stdout), done.stdout

    again = airmigrate(fresh_db, "run", "0001_add_user_email_verified")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]  # applied means done: a green no-op
    assert "this run changed nothing in the target (already applied: nothing to do" in again.stdout
    assert "validation: passed" not in again.stdout  # the earlier run's results are not this one's

    status = airmigrate(fresh_db, "status", "0001_add_user_email_verified")
    assert status.returncode == 0 and "applied" in status.stdout
    assert re.search(r"batches: (\d+)/\1 done, 0 failed, 0 pending; 18,000 rows written", status.stdout)

    refused = airmigrate(fresh_db, "run", "0001_add_user_email_verified", "--rollback")
    assert refused.returncode == 2 and "drops a column or a table" in refused.stderr and "--approve" in refused.stderr

    dry = airmigrate(fresh_db, "run", "0001_add_user_email_verified", "--rollback", "--param", "dry_run=true")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "history: applied" in dry.stdout  # nothing rolled back

    back = airmigrate(fresh_db, "run", "0001_add_user_email_verified", "--rollback", "--approve")
    assert back.returncode == 0 and "history: rolled_back" in back.stdout


def test_unknown_migration_and_missing_target_are_clear_errors(fresh_db):
    unknown = airmigrate(fresh_db, "run", "0999_nope")
    assert unknown.returncode != 0
    assert "no migration '0999_nope'" in unknown.stderr and "0001_add_user_email_verified" in unknown.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("AIRFLOW_CONN_AIRMIGRATE_TARGET", "AIRMIGRATE_TARGET_URL")}
    missing = subprocess.run([*CLI, "run", "0001_add_user_email_verified"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "AIRFLOW_CONN_AIRMIGRATE_TARGET" in missing.stderr


def test_status_before_any_run_and_of_an_unknown_name(fresh_db):
    never = airmigrate(fresh_db, "status", "0001_add_user_email_verified")
    assert never.returncode == 0 and "never run on" in never.stdout, never.stderr
    unknown = airmigrate(fresh_db, "status", "0999_nope")
    assert unknown.returncode == 2 and "0001_add_user_email_verified" in unknown.stderr


def test_run_of_a_migration_awaiting_approval_needs_approve_up_front(fresh_db):
    """dag.test() has no UI to answer the approval: refuse at once (changing nothing) instead of waiting forever."""
    fixtures = str(Path(__file__).resolve().parent / "fixtures" / "migrations")
    refused = airmigrate(fresh_db, "run", "0110_drop_last_login", AIRMIGRATE_MIGRATIONS_DIR=fixtures)
    assert refused.returncode == 2 and "re-run with --approve" in refused.stderr
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT to_regclass('airmigrate.runs')").fetchone()[0] is None
