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

pytestmark = [pytest.mark.airflow_server, pytest.mark.xdist_group("console_browser")]  # one worker, one Airflow

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")
MIGRATION = "0901_console_backfill"
CANCELLED = "0902_console_cancel"  # adaptive, paced: batch size, pacing target, cancel, then a rollback
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


def write_cancel_migration(folder: Path) -> None:
    """4 ms a key (two minutes for the 30,000 rows), adaptive and paced (the default throttle): time to set a
    batch size and a pacing target, then cancel; its rollback drops the column, so it waits for an approval."""
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text("ALTER TABLE users ADD COLUMN IF NOT EXISTS cancel_verified boolean;\n")
    (folder / "down.sql").write_text("ALTER TABLE users DROP COLUMN IF EXISTS cancel_verified;\n")
    (folder / "backfill.sql").write_text(  # 4 ms a key: the adaptive sizer settles near 750 keys (3 s)
        "WITH slow AS (SELECT pg_sleep((%(hi)s::bigint - %(lo)s::bigint + 1) * 0.004)) UPDATE users SET "
        "cancel_verified = email_confirmed_at IS NOT NULL FROM slow WHERE id BETWEEN %(lo)s AND %(hi)s;\n")
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": "Console test: cancelled half-way, then rolled back.", "table": "users",
        "batch_size": 1000, "shards": 1, "out_of_order": True,
        "backfill": {"sql": "backfill.sql", "columns": ["cancel_verified"], "max_attempts": 1,
                     "min_batch_size": 100, "target_batch_seconds": 3}}))


def write_migration(folder: Path) -> None:
    """~2 s per 2,000-row batch, 15 of them (time to watch, pause and resume: the page, refreshed every 5 s, shows
    three steps of progress before the pause and batches are left after it; 30 batches of 1,000 made the run twice
    as long, proving nothing more); the batch holding id 12345 fails until a table `cure` exists (the retry
    button's case)."""
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
        "table": "users", "batch_size": 2000, "shards": 1, "out_of_order": True,
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
    write_cancel_migration(migrations / CANCELLED)
    server = LocalAirflow(tmp_path_factory.mktemp("airflow-console"), target.airflow_uri(),
                          components=("api-server", "scheduler", "dag-processor", "triggerer"),
                          extra_env={"AIRMIGRATE_MIGRATIONS_DIR": str(migrations),
                                     "AIRMIGRATE_VAR_DIR": str(tmp_path_factory.mktemp("var"))},
                          metadata_url=airflow_metadata(), users={"viewer": "viewer"})
    server.start(timeout=420, migrate=False)  # airflow_metadata() is migrated already
    yield server
    server.stop()


def log_tail(airflow, lines=40):
    logs = sorted((airflow.home / "logs").rglob("*.log")) + sorted((airflow.home / "logs").glob("*.out"))
    return "\n".join(f"== {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) for p in logs[-6:])


def run_state(airflow, run_id, dag_id=MIGRATION):
    response = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
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


def open_migration(page, migration_id: str, ready: str = "#read-only, #stages, #runs, pre.plan") -> None:
    """Click the migration's link on the Migrations page, as a person would, until its page shows: the list
    refreshes itself, and a click that lands while it is being replaced goes nowhere (a person clicks again)."""
    for attempt in range(3):
        console(page).locator("a.mid", has_text=migration_id).click()
        try:
            console(page).locator(ready).first.wait_for(timeout=40_000)
            return
        except Exception:
            if attempt == 2:
                raise
            print(f"open_migration {migration_id}: attempt {attempt + 1} did not show {ready}; the page says: "
                  + page.frame_locator('iframe[src*="/airmigrate/"]').first.locator("body").inner_text()[:1500])


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


def login(page, airflow, user: str = "admin") -> None:
    page.goto(f"{airflow.url}/auth/login", timeout=UI_S * 1000)
    page.get_by_label(re.compile("user", re.I)).first.fill(user)
    page.get_by_label(re.compile("password", re.I)).first.fill(airflow.passwords[user])
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
            paused_at = round(float(state.progress_now(conn, state.latest_run(conn, MIGRATION)["run_id"])
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
        open_migration(page, MIGRATION, "#stages")
        frame = console(page)
        for selector in ("#batches", "svg.chart", "pre.plan", f'a[href="/dags/{MIGRATION}__rollback"]'):
            assert frame.locator(selector).count() >= 1, selector
        assert "admin" in frame.locator("#recent-actions").inner_text()
    except Exception:
        page.screenshot(path=str(airflow.home / "console-failure.png"), full_page=True)
        raise
    finally:
        context.close()


def detail_text(page, selector: str) -> str:
    try:
        return console(page).locator(selector).first.inner_text(timeout=2000)
    except Exception:  # not there yet, or replaced mid-refresh
        return ""


def submit_setting(page, action: str, value: str) -> None:
    """Type a value into the migration page's form and submit it, as a person does; wait for the answer."""
    frame = console(page)
    flash = frame.locator("#flash")
    before = flash.inner_text()
    form = frame.locator(f'form[data-action="{action}"]')
    form.locator("input[name=value]").fill(value)
    form.locator("button").click()
    deadline = time.monotonic() + UI_S
    while (text := flash.inner_text()) == before or text.endswith(" ..."):
        assert time.monotonic() < deadline, f"no answer to {action}: {text!r}"
        page.wait_for_timeout(250)
    assert "bad" not in (flash.get_attribute("class") or "") and "(as admin)" in text, text


def test_batch_size_pacing_target_cancel_and_a_rollback_waiting_for_approval(browser, airflow, target):
    """Issue 18: what a person sees. The batch size set is the one shown (a ceiling); a new pacing target shows;
    Cancel reads "cancelled", by whom, with resume or roll back; the rollback waiting for its approval shows the
    link to answer it; once approved, the runs list both runs with the approval."""
    context = browser.new_context(viewport={"width": 1500, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(UI_S * 1000)
    try:
        login(page, airflow)
        for dag_id in (CANCELLED, f"{CANCELLED}__rollback"):
            airflow.wait_for(lambda: airflow.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200,
                             REGISTERED_S, f"the dag-processor did not register {dag_id}")
            assert airflow.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        up = airflow.trigger(CANCELLED)
        page.goto(f"{airflow.url}/plugin/migrations")
        open_migration(page, CANCELLED)
        airflow.wait_for(lambda: console(page).locator("form[data-action=batch_size]").count() > 0
                         # the first batch's size: the spec's 1,000 scaled to lock_hold_s while pacing
                         and "adaptive, started at " in detail_text(page, "#batch-size"), MOVING_S,
                         "the backfill did not start on the page: " + log_tail(airflow))

        submit_setting(page, "batch_size", "700")
        airflow.wait_for(lambda: "at most 700 rows" in detail_text(page, "#batch-size"), UI_S,
                         "the page does not show the batch size set")
        submit_setting(page, "app_latency_ratio", "2.5")
        airflow.wait_for(lambda: "pacing target 2.5x" in detail_text(page, "section.cards"), UI_S,
                         "the page does not show the new pacing target")
        with connect(target) as conn:  # what the shards obey: no batch past the ceiling once it was set
            run_id = state.latest_run(conn, CANCELLED)["run_id"]
            airflow.wait_for(lambda: conn.execute("SELECT count(*) FROM airmigrate.batches WHERE run_id = %s AND "
                                                  "size = 700", (run_id,)).fetchone()[0] >= 1, MOVING_S,
                             "no batch of the new size")
            assert conn.execute("SELECT target_ratio FROM airmigrate.pacing WHERE run_id = %s",
                                (run_id,)).fetchone()[0] == 2.5

        console(page).locator('button[data-action="cancel"]').first.click()
        # asked on the page (Airflow's frame has no allow-modals: window.confirm would say no without asking)
        console(page).locator("#flash button.btn-confirm").click()
        airflow.wait_for(lambda: console(page).locator('h1 [data-state="cancelled"]').count() == 1, MOVING_S,
                         "the page never said cancelled: " + log_tail(airflow))
        offer = detail_text(page, "#rollback-offer")
        assert "Cancelled by admin" in offer and "resume" in offer and "roll back" in offer, offer
        with connect(target) as conn:
            assert conn.execute("SELECT max(size) FROM airmigrate.batches WHERE run_id = %s AND batch_no >= ("
                                "SELECT min(batch_no) FROM airmigrate.batches WHERE run_id = %s AND size = 700)",
                                (run_id, run_id)).fetchone()[0] <= 700, "a batch grew past the console's size"

        # the page says cancelled once the cancel is recorded; the shard stops after its batch (~3 s) and only then
        # lets go of the migration: a rollback started before its DAG run ended is refused (LeaseHeld), and this
        # test then waited MOVING_S for a page that could never come (seen in make test)
        airflow.wait_for(lambda: run_state(airflow, up, CANCELLED) == "failed", MOVING_S,
                         "the cancelled run did not end: " + log_tail(airflow))
        back = airflow.trigger(f"{CANCELLED}__rollback")
        airflow.wait_for(lambda: console(page).locator('h1 [data-state="rollback waiting for approval"]').count(),
                         MOVING_S, "the page never showed the rollback waiting: " + log_tail(airflow))
        link = console(page).locator("a.btn-approve").first
        assert "rollback" in link.inner_text()
        assert link.get_attribute("href") == (f"/dags/{CANCELLED}__rollback/runs/{back}/tasks/approve_rollback/"
                                              "required_actions")
        time.sleep(6)  # answering right after the task parks races the scheduler
        answer = airflow.api("PATCH", f"/api/v2/dags/{CANCELLED}__rollback/dagRuns/{back}/taskInstances/"
                                      "approve_rollback/-1/hitlDetails",
                             json={"chosen_options": ["Approve"], "params_input": {}})
        assert answer.status_code == 200, answer.text
        airflow.wait_for(lambda: console(page).locator('h1 [data-state="rolled_back"]').count(), FINISHED_S,
                         "the page never said rolled back: " + log_tail(airflow))
        runs = detail_text(page, "#runs")
        assert runs.index("rollback") < runs.index("up"), runs  # newest first
        assert "approve rollback by admin" in runs, runs
    except Exception:
        page.screenshot(path=str(airflow.home / "console-cancel-failure.png"), full_page=True)
        raise
    finally:
        context.close()


def test_a_viewer_sees_the_console_but_no_button(browser, airflow):
    """Issue 18 §12: a role that may not trigger the DAGs (Airflow's Viewer) is shown no button it could not use;
    the page tells it why."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_S * 1000)
    try:
        login(page, airflow, "viewer")
        page.goto(f"{airflow.url}/plugin/migrations")
        airflow.wait_for(lambda: row_value(page, "state"), UI_S, "the Migrations page did not show")
        frame = console(page)
        assert frame.locator("button[data-action]").count() == 0
        open_migration(page, CANCELLED)
        assert frame.locator("button[data-action], form[data-action], a.btn-approve").count() == 0
    finally:
        context.close()
