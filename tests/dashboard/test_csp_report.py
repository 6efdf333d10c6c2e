"""`POST /csp-report`: a browser's report of what the CSP refused is audited (low severity) and
counted in /metrics; a flood is cut by the address's budget, a huge body by the body limit."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.pages import events, page_client
from wakedock.app import create_asgi
from wakedock.dashboard.csp import MAX_CSP_REPORT_BYTES
from wakedock.rbac.permissions import Role

# What Chromium posts for an inline script a page tried to run (report-uri format).
REPORT = {
    "csp-report": {
        "document-uri": "https://localhost:8443/services?token=secret",
        "referrer": "",
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "original-policy": "default-src 'self'; report-uri /csp-report",
        "disposition": "enforce",
        "blocked-uri": "inline",
        "line-number": 1,
        "source-file": "https://localhost:8443/services",
        "status-code": 200,
        "script-sample": "",
    }
}
CSP_REPORT = {"Content-Type": "application/csp-report"}


def metric(h: Harness, name: str) -> str:
    token = h.token_for(Role.OPERATOR)
    text = h.client.get("/metrics", headers=h.bearer(token)).text
    [line] = [line for line in text.splitlines() if line.startswith(name + " ")]
    return line.split()[1]


def test_a_report_is_audited_and_counted(h: Harness) -> None:
    assert metric(h, "wakedock_csp_violations_total") == "0"
    answer = h.client.post("/csp-report", content=json.dumps(REPORT), headers=CSP_REPORT)
    assert answer.status_code == 204
    [event] = events(h, "csp_violation")
    assert event.severity == "low" and event.outcome == "denied"
    assert event.target == "/services"  # the page's path: no query (it may hold a token)
    assert json.loads(event.details or "{}") == {
        "directive": "script-src-elem",
        "blocked": "inline",
        "disposition": "enforce",
    }
    assert metric(h, "wakedock_csp_violations_total") == "1"


def test_the_reporting_api_format_is_read_too(h: Harness) -> None:
    batch = [
        {
            "type": "csp-violation",
            "url": "https://localhost/services",
            "body": {
                "documentURL": "https://localhost/services",
                "effectiveDirective": "style-src-elem",
                "blockedURL": "https://cdn.example/x.css?k=v",
                "disposition": "enforce",
            },
        }
    ]
    reports = {"Content-Type": "application/reports+json"}
    answer = h.client.post("/csp-report", content=json.dumps(batch), headers=reports)
    assert answer.status_code == 204
    [event] = events(h, "csp_violation")
    assert json.loads(event.details or "{}")["blocked"] == "https://cdn.example/x.css"


@pytest.mark.security
def test_a_flood_of_reports_is_rate_limited(h: Harness) -> None:
    flooder = page_client(h, 50030)
    answers = [
        flooder.post("/csp-report", content=json.dumps(REPORT), headers=CSP_REPORT).status_code
        for _ in range(40)
    ]
    assert answers[:30] == [204] * 30
    assert set(answers[30:]) == {429}
    assert len(events(h, "csp_violation")) == 30


@pytest.mark.security
def test_a_huge_report_is_refused_by_the_body_limit(h: Harness) -> None:
    huge = {"csp-report": {**REPORT["csp-report"], "script-sample": "x" * (1024 * 1024)}}
    answer = h.client.post("/csp-report", content=json.dumps(huge), headers=CSP_REPORT)
    assert answer.status_code == 413
    assert answer.json()["code"] == "payload_too_large"
    just_over = b"{" + b" " * MAX_CSP_REPORT_BYTES + b"}"
    chunks = iter([just_over[:4096], just_over[4096:]])  # no Content-Length: counted as read
    streamed = h.client.post("/csp-report", content=chunks, headers=CSP_REPORT)
    assert streamed.status_code == 413
    assert events(h, "csp_violation") == []


@pytest.mark.security
def test_what_is_not_a_report_is_refused(h: Harness) -> None:
    for body in (b"not json", b"{}", b'{"csp-report": {}}', b'[{"type": "deprecation"}]'):
        answer = h.client.post("/csp-report", content=body, headers=CSP_REPORT)
        assert answer.status_code == 400, body
    assert events(h, "csp_violation") == []


def test_only_the_admin_host_names_the_report_uri(h: Harness) -> None:
    """On a service host a relative report URI would reach the service: the proxy's own
    answers carry the same policy without it."""
    with TestClient(create_asgi(h.components), base_url="https://localhost") as client:
        policy = client.get("/login").headers["content-security-policy"]
        assert policy.endswith("; report-uri /csp-report")
        status = client.get("https://app.localhost/_wakedock/status").headers[
            "content-security-policy"
        ]
    assert "frame-ancestors 'none'" in status and "report-uri" not in status
