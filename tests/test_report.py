"""Issue 11 §2: a report for every run. A real migration and its rollback through `airmigrate run`, then the two
reports' contents: plan, batch figures, schema diff, rollback procedure, no remote assets, no credentials."""

from __future__ import annotations

import dataclasses
import re
import stat
from pathlib import Path

from airmigrate import state
from airmigrate.airflow.runner import run_dag
from airmigrate.db import connect
from airmigrate.report import render, svg, write_report
from airmigrate.schemadocs.shape import diff
from airmigrate.spec import load_migration
from test_cli import airmigrate

ROOT = Path(__file__).resolve().parent.parent
MIGRATION = "0001_add_user_email_verified"
SECRET = "s3cret-report-pw"


def report_of(done, root: Path) -> tuple[Path, str, str]:
    named = re.search(r"report: (\S+\.html)", done.stdout)
    assert named, done.stdout + done.stderr[-3000:]
    path = Path(named.group(1))
    path = path if path.is_absolute() else ROOT / path
    assert path.parent == root / "reports" / MIGRATION
    md = path.with_suffix(".md")
    for file in (path, md):
        assert file.is_file() and stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    return path, path.read_text(), md.read_text()


def no_remote_assets_nor_secrets(*texts: str) -> None:
    for text in texts:
        assert "http://" not in text and "https://" not in text
        assert SECRET not in text and "password=" not in text.lower()


def test_run_and_rollback_write_complete_reports(fresh_db, tmp_path, monkeypatch):
    var = tmp_path / "var"
    # trust authentication ignores the password: it only has to stay out of the reports
    target = dataclasses.replace(fresh_db, password=SECRET) if not fresh_db.host.startswith("/") else fresh_db
    done = airmigrate(target, "run", MIGRATION, "--param", "batch_size=3000", AIRMIGRATE_VAR_DIR=str(var))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    path, html, md = report_of(done, var)
    assert re.fullmatch(r"\d{8}T\d{6}Z-up-run\d+\.html", path.name)
    with connect(fresh_db) as conn:
        run = state.latest_run(conn, MIGRATION)
        batches = state.batch_summary(conn, run["run_id"])
    assert batches["rows"] > 0 and batches["total"] >= 4

    for text in (html, md):
        # purpose, plan, breaking changes
        assert "Add users.email_verified" in text
        assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_email_verified" in text
        assert "SHARE UPDATE EXCLUSIVE" in text and "own transaction (autocommit)" in text
        assert "old and new" in text
        # stages and the backfill's figures, as the state tables have them
        assert "schema_change" in text and "validate" in text and "cleanup" in text
        assert f"{batches['rows']:,}" in text
        assert f"{batches['total']} ({batches['succeeded']} succeeded, 0 failed" in text
        # validation, backup, rollback procedure
        assert "expect_column_values_to_not_be_null" in text and "passed" in text
        assert "airmigrate run 0001_add_user_email_verified --rollback" in text
        # the backup: what the policy took and why (a table dump, a snapshot, or nothing), where
        assert run["facts"]["backup_reason"] in text.replace("\\", "")
        assert (run["facts"]["backup_path"] or "none") in text
        assert "0001_add_user_email_verified__rollback" in text
        assert "DROP INDEX CONCURRENTLY IF EXISTS idx_users_email_verified" in text
    # the schema side by side: the new column and index marked added, the rest unchanged
    assert re.search(r'<tr class="added"><td>columns</td><td><code>email_verified</code></td><td class="before">'
                     r'</td><td class="after">boolean DEFAULT false COMMENT &#39;0001_add_user_email_verified: ', html), html
    assert re.search(r'<tr class="added"><td>indexes</td><td><code>idx_users_email_verified</code>', html)
    assert re.search(r'<tr class=""><td>columns</td><td><code>email</code></td>', html)
    assert re.search(r"\| columns \| email_verified \|  \| boolean DEFAULT false COMMENT '0001_add_user_email_verified: "
                     r"[^|]*\| \*\*added\*\* \|", md), md
    # the inline charts: rows/s over time and the tables before/after
    assert html.count("<svg") == 3 and 'aria-label="rows per second over time"' in html
    assert "<link" not in html and "<script" not in html and "src=" not in html
    # the Data Docs of this run kept next to the report, linked relatively
    docs = re.search(r'href="([^"]+\.data-docs/[^"]+)"', html)
    assert docs and (path.parent / docs.group(1)).is_file()
    no_remote_assets_nor_secrets(html, md)

    # the rollback in this process (as the scheduler would run it): its finishing task writes the report
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(var))
    back = run_dag(f"{MIGRATION}__rollback", {"approve_rollback": True})
    assert str(back.state) == "success"
    rpath = max((var / "reports" / MIGRATION).glob("*-rollback-run*.html"))
    rhtml, rmd = rpath.read_text(), rpath.with_suffix(".md").read_text()
    assert stat.S_IMODE(rpath.stat().st_mode) == 0o600
    assert "-rollback-run" in rpath.name and rpath != path and path.is_file()  # the up run's report stays
    assert "rollback run" in rhtml and "succeeded" in rhtml
    assert re.search(r'<tr class="removed"><td>columns</td><td><code>email_verified</code></td>'
                     r'<td class="before">boolean DEFAULT false COMMENT &#39;0001_add_user_email_verified: [^<]*</td>'
                     r'<td class="after"></td>', rhtml), rhtml
    assert "Copy-back" in rhtml
    no_remote_assets_nor_secrets(rhtml, rmd)


def test_everything_is_escaped_and_secrets_masked(fresh_db, tmp_path, monkeypatch):
    """A description with markup and a failed run's error with a connection URL: escaped in the HTML, inert in
    the Markdown, the password masked."""
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path / "var"))
    migration = load_migration(ROOT / "migrations" / MIGRATION, ROOT / "expectations")
    evil = "<script>alert(1)</script> | `x` <img src=x>"
    migration = dataclasses.replace(migration, spec=migration.spec.model_copy(update={"description": evil}))
    with connect(fresh_db, autocommit=True) as conn:
        state.ensure_schema(conn)
        run_id, _ = state.begin_run(conn, migration.id, "up", "manual__x")
        state.finish_run(conn, run_id, "failed", f"boom at postgresql://u:{SECRET}@db/x <b>bold</b>")
    path = write_report(fresh_db, migration, "up", run_id)
    html, md = path.read_text(), path.with_suffix(".md").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "<b>bold</b>" not in html
    prose = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1$", "", md)  # inside a fenced code block markup is inert text
    assert "<script" not in prose and "<img" not in prose and "<b>" not in prose and "```text\n<script>" in md
    assert SECRET not in html and SECRET not in md and "postgresql://u:***@db/x" in html
    assert "not captured" in html  # no "before" for a run started without a preflight
    assert "failed" in html

    # served by the plugin behind Airflow's login: listed, by name and by DAG run; nothing outside var/reports
    from fastapi.testclient import TestClient

    from airmigrate.airflow import plugin

    assert TestClient(plugin.app).get("/reports/").status_code in (401, 403)  # no login, no report
    login = plugin.app.router.dependencies[0].dependency
    plugin.app.dependency_overrides[login] = lambda: None
    try:
        client = TestClient(plugin.app)
        listing = client.get("/reports/")
        assert listing.status_code == 200 and path.name in listing.text
        page = client.get(f"/reports/{MIGRATION}/{path.name}")
        assert page.status_code == 200 and page.text == html and page.headers["content-type"].startswith("text/html")
        assert client.get(f"/reports/{MIGRATION}/{path.with_suffix('.md').name}").text == md
        assert client.get(f"/reports/{MIGRATION}/..%2F..%2Fetc%2Fpasswd").status_code == 404
        assert client.get(f"/reports/{MIGRATION}/nope.html").status_code == 404
        by_run = client.get(f"/reports/dag-run/{MIGRATION}/manual__x", follow_redirects=False)
        assert by_run.status_code == 303 and by_run.headers["location"].endswith(f"/{MIGRATION}/{path.name}")
        assert client.get(f"/reports/dag-run/{MIGRATION}/manual__nope", follow_redirects=False).status_code == 404
    finally:
        plugin.app.dependency_overrides.clear()


def test_rate_series_and_schema_diff_units():
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    batches = [{"status": "succeeded", "rows": 100, "started_at": t0 + timedelta(seconds=i),
                "finished_at": t0 + timedelta(seconds=i + 1)} for i in range(10)]
    series = svg.rate_series(batches, bins=5)
    assert len(series) == 5 and abs(sum(r for _, r in series) * 2 - 1000) < 1e-6
    assert "<svg" in svg.rate_chart(series) and svg.rate_chart([]) == ""
    before = {"tables": {"public.t": {"columns": [{"name": "a", "type": "int", "nullable": True, "default": None}],
                                      "indexes": [], "constraints": [], "triggers": [], "foreign_keys": []}}}
    after = {"tables": {"public.t": {"columns": [{"name": "a", "type": "bigint", "nullable": True, "default": None},
                                                 {"name": "b", "type": "text", "nullable": False, "default": None}],
                                     "indexes": [], "constraints": [], "triggers": [], "foreign_keys": []}}}
    rows = {r["name"]: r["mark"] for r in diff(before, after)[0]["sections"][0]["rows"]}
    assert rows == {"a": "changed", "b": "added"}
    assert render.mask("x postgresql://a:b@h/d password=zz y") == "x postgresql://a:***@h/d password=*** y"
    assert render.md_fence("a ``` b").startswith("````")


def test_a_failed_run_has_its_report_with_the_failing_expectation(fresh_db, tmp_path, monkeypatch):
    """Validation stops the run: the failing task writes the report (status, error, each expectation's result,
    the Data Docs kept for this run), so the evidence outlives a later run."""
    fixtures = ROOT / "tests" / "fixtures"
    monkeypatch.setenv("AIRMIGRATE_MIGRATIONS_DIR", str(fixtures / "migrations"))
    monkeypatch.setenv("AIRMIGRATE_EXPECTATIONS_DIR", str(fixtures / "expectations"))
    monkeypatch.setenv("AIRMIGRATE_VAR_DIR", str(tmp_path / "var"))
    assert str(run_dag("0102_wrong_backfill").state) == "failed"
    [path] = (tmp_path / "var" / "reports" / "0102_wrong_backfill").glob("*-up-run*.html")
    html = path.read_text()
    assert "up run" in html and '<span class="status bad">failed</span>' in html
    assert "expectations failed" in html and "airmigrate run 0102_wrong_backfill --rollback" in html
    rows = re.findall(r"<tr><td><code>(\w+)</code></td><td>[^<]*</td><td><span class=\"status \w+\">(\w+)</span>", html)
    assert ("unexpected_rows_expectation", "failed") in rows
    assert ("expect_column_values_to_not_be_null", "passed") in rows
    assert "]: observed 12000</td>" in html  # what the validation found (12,000 rows wrongly marked verified)
    assert (path.parent / f"{path.stem}.data-docs" / "index.html").is_file()
