"""/metrics: Prometheus text for holders of metrics:read, counted from the audit trail."""

from __future__ import annotations

import re
from typing import Any

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.audit.events import Event, EventType
from wakedock.cluster.edges import EdgeRegistry
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role


def value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"{series} missing from:\n{text}"
    return float(match.group(1))


def test_metrics_need_the_permission_and_count_the_trail(make_harness: Any) -> None:
    h: Harness = make_harness(runtime=FakeRuntime())
    assert h.client.get("/metrics").status_code == 401
    viewer = h.bearer(h.token_for(Role.VIEWER))
    assert h.client.get("/metrics", headers=viewer).status_code == 403
    operator = h.bearer(h.token_for(Role.OPERATOR))
    before = h.client.get("/metrics", headers=operator)
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    failures = value(before.text, 'wakedock_logins_total{outcome="failure"}')
    for _ in range(3):
        h.client.post("/api/v1/auth/login", json={"username": "nobody", "password": "x" * 12})
    h.components.auditor.record(Event(EventType.MFA_FAILURE), RequestContext())
    after = h.client.get("/metrics", headers=operator).text
    assert value(after, 'wakedock_logins_total{outcome="failure"}') == failures + 3
    assert value(after, "wakedock_mfa_failures_total") == 1
    assert value(after, 'wakedock_audit_events_total{type="login_failure"}') == failures + 3
    assert value(after, "wakedock_services_running") == 0
    # Every line is a comment or a well-formed sample.
    for line in after.splitlines():
        assert line.startswith("# ") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? \d+(\.\d+)?", line)


def test_metrics_say_how_many_edges_are_attached(make_harness: Any) -> None:
    h: Harness = make_harness(runtime=FakeRuntime())
    operator = h.bearer(h.token_for(Role.OPERATOR))
    assert value(h.client.get("/metrics", headers=operator).text, "wakedock_edges_attached") == 0
    EdgeRegistry(h.components.db, h.components.clock).register("edge-host:1")
    assert value(h.client.get("/metrics", headers=operator).text, "wakedock_edges_attached") == 1
    off: Harness = make_harness(runtime=FakeRuntime(), edge={"direct_routes": False})
    text = off.client.get("/metrics", headers=off.bearer(off.token_for(Role.OPERATOR))).text
    assert "wakedock_edges_attached" not in text
