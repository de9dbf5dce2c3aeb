"""A MariaDB run as a user sees it (issue 22: "the report and the console show a MariaDB run like a PostgreSQL
one"), against the real server (AIRMIGRATE_TEST_MYSQL_URL, else MariaDB at 127.0.0.1:3306 as root; without one
this module skips with one line):

- the console's numbers from the state tables under MySQL's clock (UTC_TIMESTAMP, never the session's NOW()), the
  baseline, and the commands MySQL cannot run refusing with the reason and the fix, changing nothing;
- the two example migrations run by a real Airflow (scheduler, LocalExecutor) on a MariaDB target, then the
  operations console in Debian's chromium (runs list, a run's page, its numbers) and the run's report (the plan
  as it was before the run, MySQL's statements with their algorithm and lock; the same bytes when opened again).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mysql_support import URL, drop_database, fresh_database, skip_without_server

from airmigrate import control, devdb, engines, plan, state
from airmigrate.console import data
from airmigrate.console.pool import close_all, pooled
from airmigrate.db import connect
from airmigrate.engines.target import Target
from airmigrate.errors import AirmigrateError
from airmigrate.lifecycle.migrate import baseline
from airmigrate.spec import load_migration

pytestmark = pytest.mark.server
skip_without_server()

ROOT = Path(__file__).resolve().parent.parent
TAG = uuid.uuid4().hex[:6]
# the state is server-wide on MySQL: ids of this module's own
EMAIL, PHONE, FAKE = f"0001_myconsole_email_{TAG}", f"0002_myconsole_phone_{TAG}", f"0003_myconsole_fake_{TAG}"
REGISTERED_S, FINISHED_S, UI_S = 300, 900, 120


@pytest.fixture(scope="module")
def mariadb():
    """A database with the demo's users table (fewer rows); the module's migrations forgotten at the end."""
    target = fresh_database("myconsole")
    devdb.seed_users(target, 5000, forget=())
    yield target
    with connect(target, autocommit=True) as conn:
        engines.of(conn).forget_state(conn, (EMAIL, PHONE, FAKE))
    drop_database(target)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict[str, Path]:
    """The two example migrations under this module's ids, with their expectation suites."""
    root = tmp_path_factory.mktemp("mysql-project")
    migrations, expectations = root / "migrations", root / "expectations"
    expectations.mkdir()
    for source, name in (("0001_add_user_email_verified", EMAIL), ("0002_normalize_user_phone", PHONE),
                         ("0001_add_user_email_verified", FAKE)):
        shutil.copytree(ROOT / "migrations" / source, migrations / name)
        shutil.copy(ROOT / "expectations" / f"{source}.json", expectations / f"{name}.json")
    return {"migrations": migrations, "expectations": expectations, "var": root / "var"}


@pytest.fixture
def configured(monkeypatch, mariadb, project):
    monkeypatch.delenv("AIRFLOW_CONN_AIRMIGRATE_TARGET", raising=False)
    monkeypatch.setenv("AIRMIGRATE_TARGET_URL", mariadb.url())
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(project["migrations"]))
    monkeypatch.setenv("AIRMIGRATE_EXPECTATIONS_DIR", str(project["expectations"]))
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(project["var"]))
    return mariadb


# -- the console's numbers and actions under MySQL's clock ---------------------------------------------------------

def _fake_run(conn, migration_id: str) -> int:
    """A running backfill as the stages leave it: a run with a lease holder, its cursor, one batch finished 2 s ago
    (300 rows in 1.5 s) and one running for 3 s."""
    state.ensure_schema(conn)
    run_id, _ = state.begin_run(conn, migration_id, "up", f"manual__{migration_id}")
    conn.execute("UPDATE airmigrate.runs SET holder = 'worker-a', heartbeat_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND "
                 "WHERE run_id = %s", (run_id,))
    conn.execute(engines.of(conn).state_sql().OPEN_CURSOR, (run_id, 300, 1200))
    conn.execute("INSERT INTO airmigrate.batches (run_id, batch_no, lo, hi, status, size, `rows`, attempts, worker, "
                 "started_at, finished_at) VALUES (%s, 0, '1', '300', 'succeeded', 300, 300, 1, 'w', "
                 "UTC_TIMESTAMP(6) - INTERVAL 3500000 MICROSECOND, UTC_TIMESTAMP(6) - INTERVAL 2 SECOND), "
                 "(%s, 1, '301', '600', 'running', 300, NULL, 0, 'w', UTC_TIMESTAMP(6) - INTERVAL 3 SECOND, NULL)",
                 (run_id, run_id))
    return run_id


def test_console_numbers_use_the_state_tables_utc_clock_whatever_the_session_time_zone(configured):
    """rows/s now, the heartbeat's age, the batches' seconds, the chart's slots and a pause's time read the same as
    on PostgreSQL with the session in another time zone (NOW() would be 5 hours off there)."""
    migration_id = FAKE  # a folder the console lists, never run: its state is made here
    with connect(configured, autocommit=True) as conn:
        conn.execute("SET time_zone = '+05:00'")
        run_id = _fake_run(conn, migration_id)
        assert data.rows_per_s_now(conn, run_id) == pytest.approx(300 / data.RATE_WINDOW_S)
        owner = data.owner_of(conn, run_id)
        assert owner.startswith("worker-a, heartbeat ") and 0 <= int(owner.split()[2]) <= 60, owner
        batches = {b["batch_no"]: b for b in data.batches_table(conn, run_id)}
        assert batches[0]["seconds"] == pytest.approx(1.5, abs=0.01) and batches[0]["rows"] == 300
        assert 2.5 <= batches[1]["seconds"] < 60 and batches[1]["status"] == "running"
        assert batches[0]["started_at"].tzinfo is not None
        assert abs((datetime.now(timezone.utc) - batches[0]["finished_at"]).total_seconds()) < 60
        series = data.pacing_series(conn, run_id)
        assert len(series) == 1 and series[0]["rows_per_s"] == 30.0 and series[0]["at"].tzinfo is not None
        assert abs((datetime.now(timezone.utc) - series[0]["at"]).total_seconds()) < 70
        assert {"runs", "batches", "history"} <= data.state_tables(conn)

        assert "paused" in control.act(conn, migration_id, "pause", "ops-alice")
        paused = conn.execute("SELECT paused, TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) FROM "
                              "airmigrate.controls WHERE run_id = %s", (run_id,)).fetchone()
        assert paused[0] == 1 and abs(paused[1]) < 60, paused  # stamped in UTC, not the session's +05:00
        run = state.latest_run(conn, migration_id, None)
        card = data.throttle(conn, None, run)
        assert card["state"] == "paused" and card["detail"].startswith("by ops-alice at "), card
        assert 0 <= data.paused_seconds(conn, run_id) < 60
        entry = data.summary(load_migration(configured_folder(FAKE)), None, conn)
        assert entry["state"] == "paused" and entry["progress"]["covered"] == 300
        assert entry["actions"] == ["resume", "cancel", "batch_size", "app_latency_ratio"]
        assert [r["state"] for r in data.runs_list(migration_id, state.runs_of(conn, migration_id), None)] == [
            "paused"]
        state.finish_run(conn, run_id, "failed", "the test's run, never a real one")


def configured_folder(name: str) -> Path:
    return Path(os.environ["AIRMIGRATE_MIGRATIONS_DIR"]) / name


def test_the_console_keeps_one_connection_to_a_mariadb_target_across_an_error(configured):
    """console.pool on PyMySQL: the kept connection is handed out again after a failed read (no transaction left
    open in autocommit), replaced once the server ended it."""
    try:
        with pooled(configured) as first:
            first.execute("SELECT 1")
        with pytest.raises(Exception, match="nowhere"):
            with pooled(configured) as again:
                again.execute("SELECT nope FROM nowhere")
        with pooled(configured) as kept:
            assert kept is first
            first.close()  # gone, as when the server ends it
        with pooled(configured) as fresh:
            assert fresh is not first and fresh.execute("SELECT 2").fetchone()[0] == 2
    finally:
        close_all()


# -- lifecycle commands -------------------------------------------------------------------------------------------

def test_baseline_records_on_mariadb_and_refuses_a_second_time_changing_nothing(configured):
    recorded = baseline(configured, EMAIL)
    assert recorded == [EMAIL]
    with connect(configured, autocommit=True) as conn:
        hist = state.history(conn, EMAIL)
        assert hist["status"] == "applied" and hist["applied_by"].startswith("baseline by ")
        assert abs((datetime.now(timezone.utc) - hist["applied_at"]).total_seconds()) < 120
        before = conn.execute("SELECT * FROM airmigrate.history WHERE migration_id = %s", (EMAIL,)).fetchall()
    with pytest.raises(AirmigrateError, match=rf"{EMAIL} \(applied\) already in the history .* Nothing was recorded"):
        baseline(configured, EMAIL)
    with connect(configured, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM airmigrate.history WHERE migration_id = %s", (EMAIL,)).fetchall() == before
        conn.execute("UPDATE airmigrate.history SET status = 'rolled_back' WHERE migration_id = %s", (EMAIL,))
    assert baseline(configured, EMAIL) == [EMAIL]  # a rolled-back migration may be baselined again
    with connect(configured, autocommit=True) as conn:
        assert state.history(conn, EMAIL)["status"] == "applied"
        conn.execute("DELETE FROM airmigrate.history WHERE migration_id = %s", (EMAIL,))  # the Airflow run's turn


@pytest.mark.parametrize("command", ["rehearse", "docs"])
def test_commands_mysql_cannot_run_refuse_with_the_reason_and_the_fix(configured, command, tmp_path):
    """Exit 2 with a sentence naming the command, the target, why and the fix; no database or file made."""
    import subprocess
    import sys

    args = {"rehearse": ["rehearse", EMAIL], "docs": ["docs", "--out", str(tmp_path / "docs")]}[command]
    env = {**os.environ}
    done = subprocess.run([sys.executable, "-m", "airmigrate.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    said = done.stdout + done.stderr
    assert done.returncode == 2, said  # the CLI's exit for a refusal (AirmigrateError)
    assert f"`airmigrate {command}` cannot run on root@" in said and "(mysql)" in said, said
    assert "Fix: " in said and "Nothing was changed" in said, said
    assert not (tmp_path / "docs").exists()
    with connect(Target.from_url(URL), autocommit=True) as conn:
        assert not conn.execute("SHOW DATABASES LIKE %s", (f"{configured.dbname}__rehearse%",)).fetchall()


def test_plan_sql_shows_mysql_session_limits_and_the_pandas_write(configured):
    """`plan --sql` and the pandas path's statements are MySQL's own (what engines.mysql runs), not PostgreSQL's."""
    phone = load_migration(configured_folder(PHONE))
    text = plan.render_sql(phone)
    assert "SET SESSION lock_wait_timeout = 1;" in text and "SET SESSION max_statement_time = 600;" in text
    assert "lock_timeout = '" not in text and "COPY" not in text and "ON COMMIT DELETE ROWS" not in text
    assert "CREATE TEMPORARY TABLE IF NOT EXISTS `airmigrate_batch` ENGINE = InnoDB" in text
    assert "UPDATE `" in text and "JOIN `airmigrate_batch` AS s" in text
    rows = plan.static_plan(phone)
    temp = next(p for p in rows if "CREATE TEMPORARY TABLE" in p.sql)
    assert temp.transactional  # MySQL does not commit around a temporary table: it stays in the batch's transaction
    update = next(p for p in rows if p.sql.startswith("UPDATE"))
    assert not any("another table" in a for a in update.also), update.also


# -- a real Airflow on a MariaDB target, the console in a browser, the run's report ----------------------------------

@pytest.fixture(scope="module")
def airflow(mariadb, project, tmp_path_factory, airflow_metadata):
    from airmigrate.airflow.local import LocalAirflow

    port = int(os.environ["AIRMIGRATE_AIRFLOW_PORT"]) if os.environ.get("AIRMIGRATE_AIRFLOW_PORT") else None
    server = LocalAirflow(tmp_path_factory.mktemp("airflow-mysql"), mariadb.airflow_uri(), port=port,
                          components=("api-server", "scheduler", "dag-processor", "triggerer"),
                          extra_env={"AIRMIGRATE_MIGRATIONS_DIR": str(project["migrations"]),
                                     "AIRMIGRATE_EXPECTATIONS_DIR": str(project["expectations"]),
                                     "AIRMIGRATE_VAR_DIR": str(project["var"])},
                          metadata_url=airflow_metadata())
    server.start(timeout=420, migrate=False)  # airflow_metadata() is migrated already
    yield server
    server.stop()


def _run_to_the_end(airflow, dag_id: str) -> str:
    airflow.wait_for(lambda: airflow.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200, REGISTERED_S,
                     f"the dag-processor did not register {dag_id}")
    assert airflow.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    started = airflow.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert started.status_code in (200, 201), started.text
    run_id = started.json()["dag_run_id"]

    def ended():
        found = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return found.json()["state"] if found.status_code == 200 and found.json()["state"] in (
            "success", "failed") else None

    outcome = airflow.wait_for(ended, FINISHED_S, f"{dag_id} did not finish")
    assert outcome == "success", _logs(airflow)
    return run_id


def open_report(context, airflow, frame, migration_id: str):
    """The run's report from the console's link, opened in a tab of its own as a person opens a link in a new tab
    (the console refreshes itself: the link is read again until it is there)."""
    link = frame.locator("#runs a", has_text="report").first
    href = airflow.wait_for(lambda: link.get_attribute("href", timeout=5000), UI_S, "no report link on the page")
    tab = context.new_page()
    tab.goto(f"{airflow.url}{href}", timeout=UI_S * 1000)
    assert re.search(rf"/airmigrate/reports/{migration_id}/[^/]+\.html$", tab.url), tab.url
    return tab


def _logs(airflow) -> str:
    logs = sorted((airflow.home / "logs").rglob("*.log"))[-6:]
    return "\n".join(f"== {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:]) for p in logs)


@pytest.mark.airflow_server
@pytest.mark.xdist_group("console_mysql_airflow")  # its module-scoped Airflow and browser: one worker
def test_mariadb_runs_in_the_console_and_their_reports_like_postgresql_ones(browser, airflow, mariadb, project):
    from test_console_browser import console, login

    email_run, phone_run = _run_to_the_end(airflow, EMAIL), _run_to_the_end(airflow, PHONE)
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_S * 1000)
    try:
        login(page, airflow)
        page.goto(f"{airflow.url}/plugin/migrations")
        frame = console(page)
        for migration_id in (EMAIL, PHONE):
            row = frame.locator(f'tr[data-migration="{migration_id}"]')
            row.wait_for(timeout=UI_S * 1000)
            assert row.get_attribute("data-state") == "applied", row.inner_text()
            assert row.get_attribute("data-failed") == "0"
            assert row.locator("[data-percent]").get_attribute("data-percent") == "100.0", row.inner_text()
        assert "unreachable" not in frame.locator("body").inner_text()

        frame.locator("a.mid", has_text=PHONE).click()
        frame.locator("#runs").wait_for(timeout=UI_S * 1000)
        runs = frame.locator("#runs tbody tr")
        assert runs.count() == 1 and runs.first.get_attribute("data-state") == "succeeded", runs.first.inner_text()
        assert phone_run in runs.first.inner_text()
        stages = frame.locator("#stages").inner_text()
        for stage in ("preflight", "backup", "schema_change", "backfill", "validate", "cleanup"):
            assert stage in stages, stages
        batches = frame.locator("#batches tbody tr")
        assert batches.count() >= 1 and "succeeded" in batches.first.inner_text()
        plan_text = frame.locator("pre.plan").inner_text()
        assert "ALGORITHM=INSTANT" in plan_text and "CREATE TEMPORARY TABLE" in plan_text, plan_text
        assert "COPY" not in plan_text and "ON COMMIT DELETE ROWS" not in plan_text
        page.screenshot(path=str(project["var"] / "console-mysql-run.png"), full_page=True)

        # the run's report from the console's link: the plan from before the run, the same bytes when opened again
        report_tab = open_report(context, airflow, frame, PHONE)
        first = report_tab.content()
        report_tab.screenshot(path=str(project["var"] / "report-mysql-run.png"), full_page=True)
        assert "ALGORITHM=INSTANT (the server&#39;s answer on an empty copy)" in first \
            or "ALGORITHM=INSTANT (the server's answer on an empty copy)" in first, first[:3000]
        assert "Duplicate column name" not in first and "planned after the run" not in first
        assert "table dump (mysqldump --single-transaction)" in first
        assert "SET SESSION lock_wait_timeout" in first and "lock_timeout = '" not in first
        for section in ("Purpose", "Breaking changes", "Plan", "Stages", "Backfill", "Validation", "Backup",
                        "Rollback procedure", "Schema before and after"):
            assert f">{section}<" in first or f">{section} " in first, section
        report_url = report_tab.url
        response = context.request.get(report_url)
        again = context.request.get(report_url)
        assert response.ok and response.body() == again.body()
        files = sorted((project["var"] / "reports" / PHONE).glob("*.html"))
        assert len(files) == 1 and files[0].read_bytes() == again.body()
        email_report = sorted((project["var"] / "reports" / EMAIL).glob("*.md"))[0].read_text()
        assert "CREATE INDEX idx_users_email_verified ON users (email_verified) ALGORITHM=" in email_report
        assert email_run
    finally:
        context.close()


@pytest.fixture(scope="module")
def browser():
    from test_console_browser import chromium

    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no playwright in this environment: the browser tests need the PyPI package `playwright`")
    with sync_playwright() as pw:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = pw.chromium.launch(executable_path=executable, headless=True, args=args)
        yield launched
        launched.close()

