"""The console in a real browser (issue 12, section 5): Playwright driving Debian's chromium against a real
Airflow (api-server, scheduler, dag-processor, triggerer). A logged-out visit lands on Airflow's login page;
logged in, the Migrations page sits in Airflow's navigation; a triggered migration's progress moves; Pause
stops it and Resume goes on; a batch that fails is retried with the console's one button and the run ends
applied. Skipped, saying so, when no chromium (or no playwright) is installed."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
import yaml

from airmigrate import devdb, state
from airmigrate.airflow.local import LocalAirflow
from airmigrate.db import connect

pytestmark = [pytest.mark.airflow_server, pytest.mark.xdist_group("airflow_server")]

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")
MIGRATION = "0901_console_backfill"
# Deadlines for conditions, not for speed: on a loaded 2-core machine a DAG run takes minutes.
REGISTERED_S, MOVING_S, FINISHED_S, UI_S = 300, 600, 900, 120


def chromium() -> str:
    wanted = os.environ.get("AIRMIGRATE_CHROMIUM")
    if wanted:
        path = wanted if os.access(wanted, os.X_OK) else None
    else:
        path = next((p for p in CHROMIUM_CANDIDATES if os.access(p, os.X_OK)), None) or shutil.which("chromium")
    if not path:
        pytest.skip("no chromium found (/usr/bin/chromium): the browser tests need it; install it with "
                    "`apt-get install -y chromium` (or set AIRMIGRATE_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no playwright in this environment: the browser tests need the PyPI package `playwright` "
                    "(pip install playwright; its own browser download is not needed, chromium is used)")
    with sync_playwright() as pw:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=args)
        yield browser
        browser.close()


def write_migration(folder: Path) -> None:
    """~2 s per 1,000-row batch (time to watch, pause and resume); the batch holding id 12345 fails until a
    table `cure` exists (the retry button's case)."""
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text("ALTER TABLE users ADD COLUMN IF NOT EXISTS console_verified boolean;\n")
    (folder / "down.sql").write_text("ALTER TABLE users DROP COLUMN IF EXISTS console_verified;\n")
    (folder / "backfill.sql").write_text(
        "WITH slow AS (SELECT pg_sleep(2)) UPDATE users SET console_verified = CASE\n"
        "    WHEN id = 12345 AND to_regclass('cure') IS NULL THEN (1 / (id - 12345))::int = 1\n"
        "    ELSE email_confirmed_at IS NOT NULL END FROM slow\n"
        "WHERE id BETWEEN %(lo)s AND %(hi)s;\n")
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": "Console test: slow batches, one fails until a table `cure` exists.",
        "table": "users", "batch_size": 1000, "shards": 1, "out_of_order": True,
        "backfill": {"sql": "backfill.sql", "columns": ["console_verified"], "max_attempts": 1,
                     "adaptive": False}}))


@pytest.fixture(scope="module")
def target(pg_server, template_db):
    name = f"amtest_console_{uuid.uuid4().hex[:8]}"
    yield devdb.recreate_database(pg_server, name, template=template_db)
    devdb.drop_database(pg_server, name)


@pytest.fixture(scope="module")
def airflow(browser, target, tmp_path_factory, airflow_metadata):
    migrations = tmp_path_factory.mktemp("migrations")
    write_migration(migrations / MIGRATION)
    server = LocalAirflow(tmp_path_factory.mktemp("airflow-console"), target.airflow_uri(),
                          components=("api-server", "scheduler", "dag-processor", "triggerer"),
                          extra_env={"AIRMIGRATE_MIGRATIONS_DIR": str(migrations),
                                     "AIRMIGRATE_VAR_DIR": str(tmp_path_factory.mktemp("var"))},
                          metadata_url=airflow_metadata())
    server.start(timeout=420)
    yield server
    server.stop()


def log_tail(airflow, lines=40):
    logs = sorted((airflow.home / "logs").rglob("*.log")) + sorted((airflow.home / "logs").glob("*.out"))
    return "\n".join(f"== {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) for p in logs[-6:])


def run_state(airflow, run_id):
    response = airflow.api("GET", f"/api/v2/dags/{MIGRATION}/dagRuns/{run_id}")
    return response.json()["state"] if response.status_code == 200 else None


def shard_state(airflow, run_id):
    response = airflow.api("GET", f"/api/v2/dags/{MIGRATION}/dagRuns/{run_id}/taskInstances")
    states = [t["state"] for t in response.json().get("task_instances", []) if t["task_id"] == "backfill.shard"] \
        if response.status_code == 200 else []
    return states[0] if states else None


def console(page):
    """The console's frame inside Airflow's page /plugin/migrations (a frame locator: it looks the frame up on
    every use, so it survives the frame navigating; the sync API pumps no events during time.sleep)."""
    return page.frame_locator('iframe[src*="/airmigrate/"]').first


def row_value(page, attribute: str) -> str | None:
    """An attribute of the migration's row on the Migrations page (the frame refreshes itself)."""
    try:
        row = console(page).locator(f'tr[data-migration="{MIGRATION}"]')
        if attribute == "percent":
            cell = row.locator("[data-percent]")
            return cell.get_attribute("data-percent", timeout=2000) if cell.count() else None
        return row.get_attribute(f"data-{attribute}", timeout=2000)
    except Exception:  # not there yet, or replaced mid-refresh: ask again
        return None


def click_action(page, action: str) -> None:
    """Click the row's button and wait for the console's answer (the flash line: the result, or the refusal)."""
    frame = console(page)
    flash = frame.locator("#flash")
    before = flash.inner_text()
    frame.locator(f'tr[data-migration="{MIGRATION}"] button[data-action="{action}"]').click(timeout=UI_S * 1000)
    deadline = time.monotonic() + UI_S
    while (text := flash.inner_text()) == before or text.endswith(" ..."):
        assert time.monotonic() < deadline, f"no answer to {action}: {text!r}"
        page.wait_for_timeout(250)
    assert "bad" not in (flash.get_attribute("class") or ""), text
    assert "(as admin)" in text, text


def login(page, airflow) -> None:
    page.goto(f"{airflow.url}/auth/login", timeout=UI_S * 1000)
    page.get_by_label(re.compile("user", re.I)).first.fill("admin")
    page.get_by_label(re.compile("password", re.I)).first.fill(airflow.password)
    page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).first.click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=UI_S * 1000)


def trigger_in_the_ui(page, airflow) -> str:
    """Airflow's Trigger button and its dialog, as a user does; returns the new run's id."""
    page.goto(f"{airflow.url}/dags/{MIGRATION}")
    page.get_by_role("button", name=re.compile("^trigger", re.I)).first.click()
    page.get_by_role("dialog").get_by_role("button", name=re.compile("^trigger$", re.I)).last.click()

    def new_run():
        runs = airflow.api("GET", f"/api/v2/dags/{MIGRATION}/dagRuns").json().get("dag_runs", [])
        return runs[-1]["dag_run_id"] if runs else None

    return airflow.wait_for(new_run, UI_S, "the Trigger dialog started no run")


def test_logged_out_visits_land_on_the_login_page(browser, airflow):
    context = browser.new_context()
    page = context.new_page()
    for path in ("/airmigrate/", f"/airmigrate/migrations/{MIGRATION}", "/airmigrate/docs", "/plugin/migrations"):
        page.goto(f"{airflow.url}{path}", timeout=UI_S * 1000)
        page.wait_for_url(re.compile(r"/auth/login"), timeout=UI_S * 1000)
    context.close()


def test_console_progress_pause_resume_and_retry_failed_batches(browser, airflow, target):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_S * 1000)
    try:
        login(page, airflow)
        airflow.wait_for(lambda: airflow.api("GET", f"/api/v2/dags/{MIGRATION}").status_code == 200, REGISTERED_S,
                         f"the dag-processor did not register {MIGRATION}")
        assert airflow.api("PATCH", f"/api/v2/dags/{MIGRATION}", json={"is_paused": False}).status_code == 200

        # the console is a page of Airflow's UI: its nav entry opens /plugin/migrations with our frame
        page.goto(f"{airflow.url}/plugin/migrations")
        airflow.wait_for(lambda: row_value(page, "state"), UI_S, "the Migrations page did not show")
        assert row_value(page, "state") == "never run"

        run_id = trigger_in_the_ui(page, airflow)
        page.goto(f"{airflow.url}/plugin/migrations")
        percents = []

        def moved():
            value = row_value(page, "percent")
            if value is not None and (not percents or float(value) != percents[-1]):
                percents.append(float(value))
            return len(percents) >= 3 and percents[-1] > percents[0]

        airflow.wait_for(moved, MOVING_S, f"progress did not move on the page ({percents}): " + log_tail(airflow))
        assert row_value(page, "state") == "running"

        click_action(page, "pause")
        airflow.wait_for(lambda: row_value(page, "state") == "paused", UI_S, "the page never said paused")
        airflow.wait_for(lambda: shard_state(airflow, run_id) == "up_for_reschedule", MOVING_S,
                         "the paused shard still holds its worker slot: " + log_tail(airflow))
        with connect(target) as conn:  # what the page will show once it refreshes
            paused_at = round(float(state.backfill_progress(conn, state.latest_run(conn, MIGRATION)["run_id"])
                                    ["percent"]), 1)

        click_action(page, "resume")
        airflow.wait_for(lambda: float(row_value(page, "percent") or 0) > paused_at, MOVING_S,
                         "progress did not move after resume: " + log_tail(airflow))

        # the batch holding 12345 fails; at the end the shard (and the run) fail naming it
        airflow.wait_for(lambda: run_state(airflow, run_id) == "failed", FINISHED_S,
                         "the run did not fail on its bad batch: " + log_tail(airflow))
        airflow.wait_for(lambda: row_value(page, "state") == "failed"
                         and row_value(page, "failed") == "1", UI_S, "the page did not show the failure")
        frame = console(page)
        assert "failed" in frame.locator(f'tr[data-migration="{MIGRATION}"]').inner_text()

        with connect(target, autocommit=True) as conn:
            conn.execute("CREATE TABLE cure ()")
        click_action(page, "retry_failed")
        airflow.wait_for(lambda: run_state(airflow, run_id) == "success", FINISHED_S,
                         "the retried run did not succeed: " + log_tail(airflow))
        airflow.wait_for(lambda: row_value(page, "state") == "applied", UI_S,
                         "the page did not show applied")
        assert row_value(page, "failed") == "0"

        with connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM users WHERE console_verified IS DISTINCT FROM "
                                "(email_confirmed_at IS NOT NULL)").fetchone()[0] == 0
            assert [r[0] for r in conn.execute(
                "SELECT actor || ':' || action FROM airmigrate.actions WHERE migration_id = %s ORDER BY id",
                (MIGRATION,))] == ["admin:pause", "admin:resume", "admin:retry_failed"]

        # the one-migration page: stages, chart, batches, plan, rollback link
        console(page).locator("a.mid", has_text=MIGRATION).click()
        frame = console(page)
        frame.locator("#stages").wait_for()
        for selector in ("#batches", "svg.chart", "pre.plan", f'a[href="/dags/{MIGRATION}__rollback"]'):
            assert frame.locator(selector).count() >= 1, selector
        assert "admin" in frame.locator("#recent-actions").inner_text()
    except Exception:
        page.screenshot(path=str(airflow.home / "console-failure.png"), full_page=True)
        raise
    finally:
        context.close()
