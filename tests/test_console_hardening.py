"""Issue 18 §8 and §12: the console's guard rails. Bad numbers (NaN, inf) refused with 400 and the reason; pages
and reports only framed by this server; an empty bearer header does not skip the CSRF check; X-Forwarded-Host
only trusted when a setting says a proxy sets it; a role that cannot act sees no button."""

from __future__ import annotations

import pytest

from airmigrate.console import actions
from test_console import FRAGILE, _post, client, fragile  # noqa: F401 (fixtures)


@pytest.mark.parametrize("raw", ["NaN", "nan", "inf", "-Infinity", "1e999", True])
def test_nan_and_infinite_values_are_refused_with_the_reason(raw):
    for action in ("batch_size", "app_latency_ratio"):
        with pytest.raises(actions.ActionRefused, match="not a (finite )?number"):
            actions.parse_value(action, raw)


def test_nan_batch_size_is_a_400_with_the_reason_not_a_500(fragile, client):  # noqa: F811
    for raw in ("NaN", "inf"):
        refused = _post(client, "batch_size", raw)
        assert refused.status_code == 400 and "not a finite number" in refused.json()["error"], refused.text
        assert "whole number of rows" in refused.json()["error"]
    refused = _post(client, "app_latency_ratio", "NaN")
    assert refused.status_code == 400 and "ratio above 1" in refused.json()["error"]


def test_pages_and_reports_are_only_framed_by_this_server(fragile, client):  # noqa: F811
    for path in ("/", f"/migrations/{FRAGILE}", "/static/console.js", "/reports/", "/api/migrations"):
        response = client.get(path)
        assert response.headers["x-frame-options"] == "SAMEORIGIN", path
        assert response.headers["content-security-policy"] == "frame-ancestors 'self'", path


def test_an_empty_bearer_header_does_not_skip_the_csrf_check(fragile, client):  # noqa: F811
    for header in ("Bearer", "Bearer ", "bearer    "):
        refused = client.post(f"/api/migrations/{FRAGILE}/actions/pause", json={},
                              headers={"Authorization": header, "Origin": "http://airflow.test"})
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"], header
    assert client.post(f"/api/migrations/{FRAGILE}/actions/pause", headers={"Authorization": "Bearer t0ken"}).json()["ok"]


def test_x_forwarded_host_is_trusted_only_when_a_setting_says_so(fragile, client, monkeypatch):  # noqa: F811
    def from_evil():
        client.get("/")
        return client.post(f"/api/migrations/{FRAGILE}/actions/pause", json={},
                           headers={"Origin": "http://evil.example", "X-Forwarded-Host": "evil.example",
                                    "X-Airmigrate-CSRF": client.cookies.get("airmigrate_csrf")})

    monkeypatch.delenv("AIRMIGRATE_TRUST_FORWARDED_HOST", raising=False)
    refused = from_evil()
    assert refused.status_code == 403 and "cross-site" in refused.json()["detail"]
    monkeypatch.setenv("AIRMIGRATE_TRUST_FORWARDED_HOST", "1")  # behind a proxy that sets it: its host counts
    assert from_evil().status_code == 200


def test_a_role_that_cannot_act_sees_no_buttons(fragile, client):  # noqa: F811
    client.users["who"] = "alice"
    page = client.get(f"/migrations/{FRAGILE}").text
    assert 'data-action="pause"' in page and 'data-action="batch_size"' in page and 'id="read-only"' not in page
    client.users["who"] = "viewer"
    for path in ("/", f"/migrations/{FRAGILE}", "/?fragment=1"):
        page = client.get(path).text
        assert "data-action=" not in page and "btn-approve" not in page, path
    assert 'id="read-only"' in client.get(f"/migrations/{FRAGILE}").text
