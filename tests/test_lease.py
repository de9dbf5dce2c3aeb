"""One runner per migration (issue 17) and Ctrl-C (issue 16): real PostgreSQL, real Airflow (`airmigrate run` as
subprocesses, each with an Airflow metadata database of its own, as two CI pipelines or two operators would)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from airmigrate import control, devdb, lease, state
from airmigrate.db import connect
from airmigrate.spec import load_migration
from airmigrate.stages import backfill, preflight, schema_change
from conftest import table_checksum
from polling import wait_for

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SLOW = "0103_slow_backfill"
CLI = [sys.executable, "-m", "airmigrate.cli"]

pytestmark = pytest.mark.xdist_group("lease")  # heavy subprocesses: one worker takes them all


@pytest.fixture
def slow_migrations(tmp_path) -> Path:
    """The slow-backfill fixture with a plain (not idempotent) ADD COLUMN, and smaller batches so the backfill
    takes ~15 s: a second runner that ran the DDL again would fail with DuplicateColumn. At full speed: these
    tests are about who runs the migration, not pacing, and a paced run of batches that only sleep starts at a
    twentieth of the ceiling and probes after 2 s (the kill -9 test alone: see the commit)."""
    folder = tmp_path / "migrations" / SLOW
    shutil.copytree(FIXTURES / "migrations" / SLOW, folder)
    (folder / "up.sql").write_text("ALTER TABLE users ADD COLUMN email_verified BOOLEAN DEFAULT FALSE;\n")
    spec = folder / "migration.yaml"
    spec.write_text(spec.read_text().replace("batch_size: 2000", "batch_size: 500")
                    .replace("  adaptive: false", "  throttle: {app_latency_ratio: null}\n  adaptive: false"))
    return tmp_path / "migrations"


BATCHES = 30  # in killable_migrations: 30,000 rows in batches of 1,000
GATE = 4217  # the advisory lock key the batches of killable_migrations and gated_migrations look at


@pytest.fixture
def killable_migrations(slow_migrations) -> Path:
    """1,000-row batches (30 of them), each sleeping a quarter of a second while the test holds the gate (~10 s):
    the kill -9 and Ctrl-C tests stop the first runner after three, open the gate, and a second runner does the
    rest at full speed; 60 made the second run twice as long, proving nothing more."""
    spec = slow_migrations / SLOW / "migration.yaml"
    spec.write_text(spec.read_text().replace("batch_size: 500", "batch_size: 1000"))
    backfill = slow_migrations / SLOW / "backfill.sql"
    backfill.write_text(backfill.read_text().replace(
        "pg_sleep(0.25)", f"pg_sleep(CASE WHEN pg_try_advisory_xact_lock_shared({GATE}) THEN 0 ELSE 0.25 END)"))
    return slow_migrations


@pytest.fixture
def gated_migrations(slow_migrations) -> Path:
    """Batches that wait at a gate instead of sleeping: each takes an advisory lock shared, and the test holds it
    exclusive (:func:`gate`) for as long as it needs other runners started beside the first, however slow the
    machine; then the backfill runs at full speed. (Half a second a batch, ~30 s of backfill, was the margin
    before: it made these the suite's slowest tests, and a slow enough machine could still outrun it.) The
    spec's lock_timeout, which a batch's own lock waits obey, is raised so the wait at the gate is not a failure."""
    folder = slow_migrations / SLOW
    backfill = folder / "backfill.sql"
    backfill.write_text(backfill.read_text().replace("pg_sleep(0.25)", f"pg_advisory_xact_lock_shared({GATE})"))
    spec = folder / "migration.yaml"
    spec.write_text(spec.read_text() + "lock_timeout_ms: 600000\n")
    return slow_migrations


@contextlib.contextmanager
def gate(target):
    """Hold the gate shut: gated batches wait for it (see gated_migrations)."""
    with connect(target, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (GATE,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (GATE,))


def at_gate(target) -> int:
    """How many batches wait at the gate."""
    with connect(target) as conn:
        return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                            "AND classid = 0 AND objid = %s AND database = (SELECT oid FROM pg_database "
                            "WHERE datname = current_database())", (GATE,)).fetchone()[0]


@pytest.fixture
def own_metadata(airflow_metadata):
    """An Airflow metadata database of its own for a second runner (its own Airflow home, as on another machine)."""
    def make(home: Path) -> dict:
        env = {**os.environ, "AIRFLOW_HOME": str(home),
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_metadata()}
        home.mkdir(parents=True, exist_ok=True)  # the database: a copy of a migrated one already
        return {"AIRFLOW_HOME": env["AIRFLOW_HOME"],
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]}
    return make


def start(target, migrations: Path, *args, **env) -> subprocess.Popen:
    full = {**os.environ, "AIRMIGRATE_TARGET_URL": target.url(), "AIRMIGRATE_MIGRATIONS_DIR": str(migrations),
            "AIRMIGRATE_EXPECTATIONS_DIR": str(FIXTURES / "expectations"), **env}
    full.pop("AIRFLOW_CONN_AIRMIGRATE_TARGET", None)
    return subprocess.Popen([*CLI, *args], env=full, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out[-5000:] + err[-5000:]


class Watched:
    """A runner whose output is read as it comes, so a test can wait on a line it prints (a Popen's pipes are
    read by communicate() only at the end)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.out, self.err = proc, [], []
        self.readers = [threading.Thread(target=lambda s=stream, into=into: into.extend(s), daemon=True)
                        for stream, into in ((proc.stdout, self.out), (proc.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    def said(self, text: str) -> bool:
        return any(text in line for line in [*self.out, *self.err])

    def finish(self) -> tuple[int, str]:
        self.proc.wait(timeout=600)
        for reader in self.readers:
            reader.join(timeout=60)
        return self.proc.returncode, "".join(self.out)[-5000:] + "".join(self.err)[-5000:]


def batches(target, status: str = "succeeded") -> dict[int, object]:
    with connect(target) as conn:
        if conn.execute("SELECT to_regclass('airmigrate.batches')").fetchone()[0] is None:
            return {}
        return dict(conn.execute("SELECT batch_no, finished_at FROM airmigrate.batches WHERE status = %s",
                                 (status,)).fetchall())


def runs(target) -> list[tuple]:
    with connect(target) as conn:
        return conn.execute("SELECT run_id, direction, status FROM airmigrate.runs ORDER BY run_id").fetchall()


def reference_checksum(pg_server, template_db, name: str, migrations: Path) -> str:
    """The same migration by a single runner with nothing in its way (the stages called directly, at full speed:
    pacing changes when batches run, not what they write)."""
    target = devdb.recreate_database(pg_server, name, template=template_db)
    try:
        migration = load_migration(migrations / SLOW)
        run_id = preflight.preflight(target, migration)["run_id"]
        schema_change.schema_change(target, migration, run_id)
        backfill.start_backfill(target, migration, run_id, 50_000)
        backfill.run_shard(target, migration, run_id, app_latency_ratio=None)
        return table_checksum(target)
    finally:
        devdb.drop_database(pg_server, name)


def test_a_second_run_refuses_naming_the_first_and_a_waiting_migrate_does_nothing_twice(
        fresh_db, gated_migrations, own_metadata, tmp_path, pg_server, template_db):
    second_home, third_home = own_metadata(tmp_path / "second"), own_metadata(tmp_path / "third")
    with gate(fresh_db):
        first = Watched(start(fresh_db, gated_migrations, "run", SLOW))
        wait_for(lambda: at_gate(fresh_db) or first.proc.poll() is not None, 300, "the first runner's first batch")
        second = start(fresh_db, gated_migrations, "run", SLOW, **second_home)
        third = Watched(start(fresh_db, gated_migrations, "migrate", "--wait", "600", **third_home))
        code2, out2 = finish(second)
        wait_for(lambda: third.said("waiting up to 600 s") or third.proc.poll() is not None, 300,
                 "the waiting migrate to say it waits")
    code1, out1 = first.finish()
    code3, out3 = third.finish()
    assert code1 == 0, out1
    assert code2 == lease.EXIT_BUSY, out2
    assert f"{SLOW} is being run by airmigrate run" in out2 and "refused at once" in out2, out2
    assert "--wait" in out2
    assert code3 == 0, out3
    assert "waiting up to 600 s" in out3 and "already applied" in out3, out3
    assert "already applied" in out3 and "meanwhile" in out3.split("migrate on")[-1], out3
    assert runs(fresh_db) == [(1, "up", "succeeded")]  # one run: nobody joined it
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT status FROM airmigrate.history").fetchall() == [("applied",)]
        assert conn.execute("SELECT max(attempts) FROM airmigrate.batches").fetchone()[0] == 1
    assert table_checksum(fresh_db) == reference_checksum(pg_server, template_db, f"{fresh_db.dbname}_ref",
                                                          gated_migrations)


def test_a_dag_run_and_a_cli_run_at_once(fresh_db, gated_migrations, own_metadata, tmp_path):
    """An Airflow DAG run (tasks holding the lease shared, with a heartbeat) against a CLI run."""
    cli_home = own_metadata(tmp_path / "cli")
    env = {**os.environ, "AIRMIGRATE_TARGET_URL": fresh_db.url(), "AIRMIGRATE_MIGRATIONS_DIR": str(gated_migrations),
           "AIRMIGRATE_EXPECTATIONS_DIR": str(FIXTURES / "expectations"),
           "AIRFLOW_CONN_AIRMIGRATE_TARGET": fresh_db.airflow_uri()}
    code = ("from airmigrate.airflow.runner import run_dag\n"
            f"dagrun = run_dag({SLOW!r})\n"
            "raise SystemExit(0 if str(dagrun.state) == 'success' else 1)\n")
    with gate(fresh_db):
        dag_run = Watched(subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True))  # read as it logs: a full pipe stops it
        wait_for(lambda: at_gate(fresh_db) or dag_run.proc.poll() is not None, 300, "the DAG run's first batch")
        if not at_gate(fresh_db):
            pytest.fail(f"the DAG run ended before its first batch: {dag_run.finish()}")
        code_cli, out_cli = finish(start(fresh_db, gated_migrations, "run", SLOW, **cli_home))
    code_dag, out_dag = dag_run.finish()
    assert code_dag == 0, out_dag
    assert code_cli == lease.EXIT_BUSY, out_cli
    assert "Airflow DAG run" in out_cli or "airmigrate task" in out_cli, out_cli
    assert runs(fresh_db) == [(1, "up", "succeeded")]
    with connect(fresh_db) as conn:
        owner, kind, beat = conn.execute("SELECT owner, owner_kind, heartbeat_at FROM airmigrate.runs").fetchone()
        assert owner.startswith("manual__") and kind == lease.AIRFLOW and beat is not None


def test_a_rollback_begun_while_a_cancelled_run_finishes_its_batch_waits_for_it(fresh_db):
    """The console offers the rollback as soon as the cancel is recorded, while the shards still finish their batch
    and hold the migration (a prompt click was refused with LeaseHeld): the rollback waits for the cancelled run to
    let go. A live run that was not cancelled is still refused at once."""
    with connect(fresh_db, autocommit=True) as conn:
        state.ensure_schema(conn)
        up, _ = state.begin_run(conn, "0001_x", "up", "manual__up")  # a DAG run's: its lease is live
        started = time.monotonic()
        with pytest.raises(lease.LeaseHeld, match="manual__up|is running"):
            state.begin_run(conn, "0001_x", "down", "manual__down")
        assert time.monotonic() - started < state.CANCELLED_WAIT_S / 2, "not cancelled: refused without waiting"
        control.act(conn, "0001_x", "cancel", "tester")
        let_go = threading.Event()

        def shard_finishes_its_batch_then_the_dag_run_fails():
            time.sleep(2)
            with connect(fresh_db, autocommit=True) as other:
                other.execute("UPDATE airmigrate.runs SET status = 'failed' WHERE run_id = %s", (up,))
            let_go.set()

        threading.Thread(target=shard_finishes_its_batch_then_the_dag_run_fails, daemon=True).start()
        down, resumed = state.begin_run(conn, "0001_x", "down", "manual__down")
        assert let_go.is_set() and down != up and not resumed


def test_a_cancelled_run_that_never_lets_go_is_refused_after_the_wait_saying_so(fresh_db, monkeypatch):
    monkeypatch.setattr(state, "CANCELLED_WAIT_S", 2.0)
    with connect(fresh_db, autocommit=True) as conn:
        state.ensure_schema(conn)
        state.begin_run(conn, "0001_x", "up", "manual__up")
        control.act(conn, "0001_x", "cancel", "tester")
        with pytest.raises(lease.LeaseHeld, match=r"refused after waiting [23] s rather than join it"):
            state.begin_run(conn, "0001_x", "down", "manual__down")


def test_kill_9_of_the_owner_then_a_second_runner_takes_over_and_redoes_nothing(fresh_db, killable_migrations):
    slow_migrations = killable_migrations
    with gate(fresh_db):
        first = start(fresh_db, slow_migrations, "run", SLOW)
        wait_for(lambda: len(batches(fresh_db)) >= 3, 300, "three batches")
        os.kill(first.pid, signal.SIGKILL)
        first.communicate()
    before = batches(fresh_db)
    assert 3 <= len(before) < BATCHES, "the kill must land in the middle of the backfill"
    code, out = finish(start(fresh_db, slow_migrations, "run", SLOW))
    assert code == 0, out
    assert "applied" in out
    after = batches(fresh_db)
    assert {b: after[b] for b in before} == before, "committed batches were not redone"
    assert runs(fresh_db) == [(1, "up", "succeeded")]
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT max(attempts) FROM airmigrate.batches").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM users WHERE email_verified IS DISTINCT FROM "
                            "(email_confirmed_at IS NOT NULL)").fetchone()[0] == 0


def test_ctrl_c_stops_at_a_batch_boundary_leaves_it_resumable_and_exits_130(fresh_db, killable_migrations):
    slow_migrations = killable_migrations
    with gate(fresh_db):
        first = start(fresh_db, slow_migrations, "run", SLOW, "--approve")
        wait_for(lambda: len(batches(fresh_db)) >= 3, 300, "three batches")
        first.send_signal(signal.SIGINT)
        code, out = finish(first)
    assert code == 130, out
    assert "interrupted by SIGINT" in out and f"Resume: `airmigrate run {SLOW}`" in out, out
    assert f"airmigrate run {SLOW} --rollback" in out
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT status FROM airmigrate.runs").fetchall() == [("paused",)]
        status, error = conn.execute("SELECT status, error FROM airmigrate.history").fetchone()
        assert status == "failed" and "interrupted (SIGINT" in error
        assert conn.execute("SELECT count(*) FROM airmigrate.batches WHERE status = 'running'").fetchone()[0] == 0
    done = batches(fresh_db)
    assert len(done) < BATCHES, "the run stopped before the end of the backfill"
    code, out = finish(start(fresh_db, slow_migrations, "run", SLOW))
    assert code == 0, out
    after = batches(fresh_db)
    assert {b: after[b] for b in done} == done, "committed batches were not redone"
    assert runs(fresh_db) == [(1, "up", "succeeded")]


def test_migrate_refuses_while_an_applied_folder_is_missing_and_goes_on_with_the_flag(fresh_db, tmp_path):
    migrations = tmp_path / "migrations"
    for name in ("0001_add_user_email_verified", "0002_normalize_user_phone"):
        shutil.copytree(ROOT / "migrations" / name, migrations / name)
    env = {"AIRMIGRATE_EXPECTATIONS_DIR": str(ROOT / "expectations")}
    code, out = finish(start(fresh_db, migrations, "baseline", "--to", "0001_add_user_email_verified", **env))
    assert code == 0, out
    shutil.rmtree(migrations / "0001_add_user_email_verified")
    with connect(fresh_db) as conn:
        before = conn.execute("SELECT migration_id, status FROM airmigrate.history").fetchall()
    code, out = finish(start(fresh_db, migrations, "migrate", **env))
    assert code == 2, out
    assert "0001_add_user_email_verified (applied" in out and "folder is missing" in out and "--ignore-missing" in out
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT migration_id, status FROM airmigrate.history").fetchall() == before
        assert conn.execute("SELECT count(*) FROM airmigrate.runs").fetchone()[0] == 0
    code, out = finish(start(fresh_db, migrations, "migrate", "--ignore-missing", **env))
    assert code == 0, out
    with connect(fresh_db) as conn:
        assert dict(conn.execute("SELECT migration_id, status FROM airmigrate.history").fetchall()) == {
            "0001_add_user_email_verified": "applied", "0002_normalize_user_phone": "applied"}
        action, detail = conn.execute("SELECT action, detail FROM airmigrate.actions").fetchone()
        assert action == "migrate_ignore_missing" and "0001_add_user_email_verified" in detail


def test_begin_run_refuses_a_live_foreign_owner_and_takes_over_a_gone_one(fresh_db):
    """The claim itself, without Airflow: a DAG run with a fresh lease keeps its run (either direction); one
    whose lease expired is taken over; a task of the runner that lost is told so and writes nothing."""
    with connect(fresh_db, autocommit=True) as conn:
        state.ensure_schema(conn)
        airflow = lease.Owner("manual__a", "Airflow DAG run manual__a", lease.AIRFLOW)
        run_id, resumed = state.begin_run(conn, SLOW, "up", "manual__a", airflow)
        assert not resumed
        for direction in ("up", "down"):
            with pytest.raises(lease.LeaseHeld, match="Airflow DAG run manual__a"):
                state.begin_run(conn, SLOW, direction, "manual__b", lease.Owner("manual__b", "b", lease.AIRFLOW))
        assert state.owned_run(conn, SLOW, "up", "manual__a") == run_id
        conn.execute("UPDATE airmigrate.runs SET lease_until = now() - interval '1 second'")
        taken, resumed = state.begin_run(conn, SLOW, "up", "manual__b", lease.Owner("manual__b", "b", lease.AIRFLOW))
        assert (taken, resumed) == (run_id, True)
        with pytest.raises(lease.LeaseLost, match="owned by b now"):
            state.owned_run(conn, SLOW, "up", "manual__a")


def test_on_a_target_never_migrated_the_second_runner_refuses_instead_of_crashing(empty_db):
    """The first deploy: the winner holds the lease but has not created the state tables yet."""
    with connect(empty_db, autocommit=True, application_name="airmigrate migrate on ci-1 pid 4242") as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", lease.lock_key(SLOW))
        with pytest.raises(lease.LeaseHeld) as refused:
            with lease.hold_for_cli(empty_db, SLOW, "migrate", wait_s=0.5, say=lambda text: None):
                pass
    message = str(refused.value)
    assert "airmigrate migrate on ci-1 pid 4242" in message and "its run is not recorded yet" in message, message
    assert "refused after waiting 0.5 s" in message


def test_a_waiting_owner_extends_its_lease_until_it_wakes_and_says_why(fresh_db):
    """A task waiting for its window or an approval keeps its run: extend_until moves lease_until past the wake-up
    and records why (this failed on PostgreSQL with "could not determine data type of parameter" and the task's
    heartbeat only logged it, so another runner could take a waiting run over)."""
    from datetime import datetime, timedelta, timezone

    with connect(fresh_db, autocommit=True) as conn:
        state.ensure_schema(conn)
        run_id, _ = state.begin_run(conn, "0900_waits", "up", "manual__1")
        until = datetime.now(timezone.utc) + timedelta(hours=3)
        lease.extend_until(conn, "0900_waits", "manual__1", until, "window opens at 02:00")
        lease_until, waiting = conn.execute("SELECT lease_until, facts->>'waiting' FROM airmigrate.runs "
                                            "WHERE run_id = %s", (run_id,)).fetchone()
    assert lease_until >= until and waiting == "window opens at 02:00"


def test_a_process_holding_a_migration_on_one_target_does_not_hold_it_on_another(fresh_db, empty_db):
    """One process, two targets, one migration id (a demo on two databases, migrate against two targets): the
    lease on the first is not the second's. Before, the process's leases were keyed by the migration id alone, so
    the second `hold_for_cli` re-entered the first's and no lock was taken on the second target: another runner
    got in beside it."""
    with lease.hold_for_cli(fresh_db, SLOW, "run first", say=lambda text: None) as first:
        assert lease.held_here(fresh_db, SLOW) == first and lease.held_here(empty_db, SLOW) is None
        with lease.hold_for_cli(empty_db, SLOW, "run second", say=lambda text: None) as second:
            assert lease.held_here(empty_db, SLOW) == second
            with connect(empty_db, autocommit=True) as other:  # another runner on the second target: kept out
                assert other.execute("SELECT pg_try_advisory_lock(%s, %s)", lease.lock_key(SLOW)).fetchone()[0] \
                    is False
        assert lease.held_here(empty_db, SLOW) is None and lease.held_here(fresh_db, SLOW) == first
