"""The wake-on-demand proxy through ASGI, against a real local upstream app: host routing, wake,
loading page, header handling, streaming, WebSocket, wake authorization and limits. The engine is
the in-memory runtime here; tests/integration/ runs the same paths on the real engine."""

from __future__ import annotations

import gzip
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service, database_url, runtime, upstream_port  # noqa: F401 - fixtures
from wakedock.app import create_asgi
from wakedock.audit.models import AuditEvent
from wakedock.db import transaction
from wakedock.rbac.permissions import Role
from wakedock.services.snapshots import Actor

ADMIN = Actor(name="test", role=Role.ADMIN)
HTML = {"Accept": "text/html,application/xhtml+xml"}
VISITOR = "203.0.113.9"


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    return make_harness(
        runtime=runtime,
        proxy={"admin_hosts": ["localhost", "testserver"], "reaper_interval_seconds": 60},
    )


@pytest.fixture
def client(h: Harness) -> Iterator[TestClient]:
    asgi = create_asgi(h.components)
    with TestClient(asgi, base_url="https://app.localhost", client=(VISITOR, 40000)) as client:
        yield client


add = add_service


def starts(runtime: FakeRuntime) -> int:
    return sum(1 for call, _ in runtime.calls if call == "start")


def test_hosts_route_to_admin_service_or_nowhere(h: Harness, client: TestClient) -> None:
    add(h)
    admin = client.get("https://localhost/api/v1/health")
    assert admin.status_code == 200
    unknown = client.get("https://other.localhost/api/v1/health")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "detail": "Unknown host. No service answers at this address.",
        "code": "unknown_host",
    }
    spoofed = client.get("https://app.localhost/api/v1/health", headers={"Host": "evil.example"})
    assert spoofed.status_code == 404
    assert client.get("https://app.localhost/").text == "hello from upstream\n"


def test_first_request_wakes_the_service_once(
    h: Harness, client: TestClient, runtime: FakeRuntime
) -> None:
    add(h)
    assert starts(runtime) == 0
    for _ in range(3):
        reply = client.get("/", headers={"Accept": "application/json"})
        assert reply.status_code == 200 and reply.text == "hello from upstream\n"
    assert starts(runtime) == 1
    status = h.client.get(
        "/api/v1/services/1/status", headers=h.bearer(h.token_for(Role.OPERATOR))
    ).json()
    assert status["wake_phase"] == "ready" and status["time_to_ready_s"] is not None
    assert status["last_activity"] is not None and status["open_connections"] == 0
    [event] = [e for e in audit(h) if e.type == "service_start"]
    assert '"trigger": "wake"' in event.details


def test_browsers_get_the_loading_page_at_once_with_the_name_escaped(
    h: Harness, client: TestClient
) -> None:
    add(h, display_name="<script>alert('x')</script> & Co")
    page = client.get("/", headers=HTML)
    assert page.status_code == 200
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co" in page.text
    assert "<script>alert" not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # The only script is external; no inline handler or style attribute.
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/_wakedock/loading.js" defer>']
    assert "onload=" not in page.text and "style=" not in page.text
    for internal in ("wakedock-app", "busybox", "127.0.0.1", "8080"):
        assert internal not in page.text
    script = client.get("/_wakedock/loading.js")
    assert script.headers["content-type"].startswith("text/javascript")
    state = client.get("/_wakedock/status").json()
    assert state["state"] in ("waking", "ready")
    # The app answers once ready (the wake goes on without the browser).
    for _ in range(100):
        if client.get("/_wakedock/status").json()["state"] == "ready":
            break
    assert client.get("/", headers=HTML).text == "hello from upstream\n"


def test_forwarded_headers_set_untrusted_ones_dropped_hop_by_hop_stripped(
    h: Harness, client: TestClient
) -> None:
    add(h)
    seen = client.get(
        "/headers",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "gopher",
            "Forwarded": "for=6.6.6.6",
            "Connection": "keep-alive, X-Private",
            "X-Private": "hop-only",
            "Proxy-Authorization": "Basic c2VjcmV0",
            "X-Kept": "end-to-end",
        },
    ).json()
    assert seen["x-forwarded-for"] == VISITOR
    assert seen["x-forwarded-host"] == "app.localhost"
    assert seen["x-forwarded-proto"] == "https"
    assert "forwarded" not in seen
    assert "x-private" not in seen and "proxy-authorization" not in seen
    assert seen["x-kept"] == "end-to-end"
    assert seen["host"] == "app.localhost"


def test_a_trusted_proxys_chain_is_kept_and_extended(
    make_harness: Callable[..., Harness], runtime: FakeRuntime
) -> None:
    h = make_harness(
        runtime=runtime,
        proxy={"admin_hosts": ["localhost"]},
        http={"trusted_proxies": ["10.0.0.0/8"]},
    )
    add(h)
    asgi = create_asgi(h.components)
    with TestClient(asgi, base_url="https://app.localhost", client=("10.1.2.3", 1)) as client:
        seen = client.get("/headers", headers={"X-Forwarded-For": "198.51.100.7"}).json()
    assert seen["x-forwarded-for"] == "198.51.100.7, 10.1.2.3"


def test_cookies_and_content_encoding_pass_untouched(h: Harness, client: TestClient) -> None:
    add(h)
    cookies = client.get("/cookie")
    assert cookies.headers.get_list("set-cookie") == [
        "a=1; Path=/; Secure; HttpOnly",
        "b=2; Path=/",
    ]
    with client.stream("GET", "/gzip", headers={"Accept-Encoding": "gzip"}) as reply:
        assert reply.headers["content-encoding"] == "gzip"
        raw = b"".join(reply.iter_raw())
    assert gzip.decompress(raw) == b"compressed payload " * 50


def test_bodies_stream_both_ways(h: Harness, client: TestClient) -> None:
    add(h)
    body = bytes(range(256)) * 4096 * 5  # 5 MiB
    reply = client.post(
        "/echo", content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    )
    assert reply.text == f"got {len(body)} bytes: {hashlib.sha256(body).hexdigest()}"
    with client.stream("GET", "/big?mb=8") as big:
        assert sum(len(chunk) for chunk in big.iter_raw()) == 8 * 1024 * 1024


@pytest.mark.parametrize("size", [0, 64 * 1024, 4 * 2**20])
def test_an_upstream_answering_before_reading_the_body_is_passed_through(
    h: Harness, client: TestClient, size: int
) -> None:
    """The upstream answers 501 to a POST without reading its body and closes: the visitor
    gets that answer, not the proxy's 502 page, however much body was still on its way."""
    add(h)
    body = b"x" * size
    reply = client.post(
        "/unsupported", content=iter([body[i : i + 65536] for i in range(0, size, 65536)])
    )
    assert reply.status_code == 501, reply.text
    assert "POST is not implemented by this app" in reply.text
    # The connection it closed is not reused: the next request is answered normally.
    assert client.get("/").text == "hello from upstream\n"


def test_websocket_passes_through(h: Harness, client: TestClient) -> None:
    add(h)
    client.get("/")  # wake
    with client.websocket_connect("wss://app.localhost/ws") as socket:
        socket.send_text("ping")
        assert socket.receive_text() == "ping"
        socket.send_bytes(b"\x00\x01")
        assert socket.receive_bytes() == b"\x00\x01"
        assert h.components.activity.of("app").open_connections == 1
    for _ in range(100):
        if h.components.activity.of("app").open_connections == 0:
            break
        time.sleep(0.02)
    assert h.components.activity.of("app").open_connections == 0


def test_server_sent_events_stream(h: Harness, client: TestClient) -> None:
    add(h)
    with client.stream("GET", "/sse?n=3") as events:
        assert events.headers["content-type"] == "text/event-stream"
        lines = [line for line in events.iter_lines() if line]
    assert lines == ["data: event 0", "data: event 1", "data: event 2"]


def audit(h: Harness) -> list[AuditEvent]:
    with transaction(h.components.db) as db:
        rows = list(db.scalars(select(AuditEvent)))
        db.expunge_all()
        return rows


def test_failed_start_shows_an_error_is_audited_and_can_retry(
    h: Harness, client: TestClient, runtime: FakeRuntime
) -> None:
    add(h)
    runtime.fail_start = True
    failed = client.get("/", headers={"Accept": "*/*"})
    assert failed.status_code == 502
    assert "could not be started" in failed.text
    [event] = [e for e in audit(h) if e.type == "service_start" and e.outcome == "failure"]
    assert event.target == "app"
    runtime.fail_start = False
    assert client.get("/").text == "hello from upstream\n"


def test_wake_rate_limit_per_ip_and_awake_cap(
    make_harness: Callable[..., Harness], runtime: FakeRuntime
) -> None:
    h = make_harness(
        runtime=runtime,
        proxy={"admin_hosts": ["localhost"], "wake_per_ip": "2/minute", "max_awake": 2},
    )
    for name in ("a", "b", "c"):
        add(h, name)
    with TestClient(create_asgi(h.components), base_url="https://a.localhost") as client:
        assert client.get("https://a.localhost/").status_code == 200
        assert client.get("https://b.localhost/").status_code == 200
        full = client.get("https://c.localhost/", headers=HTML)
        assert full.status_code == 429 and "Retry-After" in full.headers
    h2 = make_harness(runtime=runtime, proxy={"admin_hosts": ["localhost"], "max_awake": 1})
    with TestClient(create_asgi(h2.components), base_url="https://a.localhost") as client:
        assert client.get("https://a.localhost/").status_code == 200
        busy = client.get("https://b.localhost/")
        assert busy.status_code == 503 and busy.headers["retry-after"]


def _login_cookie(h: Harness, client: TestClient, role: Role) -> None:
    name, password = h.create_user(f"u-{role.value}", role)
    reply = client.post(
        "https://localhost/api/v1/auth/login",
        json={"username": name, "password": password, "mode": "cookie"},
        headers={"Origin": "https://localhost"},
    )
    assert reply.status_code == 200, reply.text


def _follow_to_service(client: TestClient, start: str) -> Any:
    reply = client.get(start, headers=HTML, follow_redirects=False)
    for _ in range(5):
        if reply.status_code not in (302, 303):
            return reply
        location = urljoin(str(reply.url), reply.headers["location"])
        reply = client.get(location, headers=HTML, follow_redirects=False)
    return reply


def test_protected_service_is_not_woken_for_anonymous_visitors(
    h: Harness, client: TestClient, runtime: FakeRuntime
) -> None:
    add(h, access={"policy": "authenticated"})
    browser = client.get("/", headers=HTML, follow_redirects=False)
    assert browser.status_code == 303
    location = urlsplit(browser.headers["location"])
    assert location.path == "/auth/proxy"
    assert parse_qs(location.query)["next"] == ["https://app.localhost/"]
    api = client.get("/", headers={"Accept": "application/json"})
    assert api.status_code == 401
    forged = client.get("/", headers={"Cookie": "__Host-wakedock_proxy=eyJhbGciOiJub25lIn0.e30."})
    assert forged.status_code == 401
    assert starts(runtime) == 0


def test_signed_in_user_wakes_a_protected_service_through_the_ticket_handoff(
    h: Harness, client: TestClient, runtime: FakeRuntime
) -> None:
    add(h, access={"policy": "authenticated"})
    _login_cookie(h, client, Role.VIEWER)
    reached = _follow_to_service(client, "https://app.localhost/headers")
    # Back on the service host, signed in: the browser sees the loading page while it wakes.
    assert reached.status_code == 200 and "Starting app" in reached.text
    for _ in range(200):
        if client.get("/_wakedock/status").json()["state"] == "ready":
            break
    assert client.get("/headers", headers=HTML).json()["host"] == "app.localhost"
    assert starts(runtime) == 1
    # The service host's own cookie now works without the hand-off.
    assert client.get("/", headers={"Accept": "*/*"}).text == "hello from upstream\n"


def test_tickets_are_single_use_and_bound_to_their_host(h: Harness, client: TestClient) -> None:
    add(h, access={"policy": "authenticated"})
    add(h, "other", access={"policy": "authenticated"})
    _login_cookie(h, client, Role.VIEWER)
    handoff = client.get(
        "https://localhost/auth/proxy?next=https%3A%2F%2Fapp.localhost%2F", follow_redirects=False
    )
    ticket_url = handoff.headers["location"]
    assert ticket_url.startswith("https://app.localhost/_wakedock/auth?ticket=")
    ticket = parse_qs(urlsplit(ticket_url).query)["ticket"][0]
    elsewhere = client.get(f"https://other.localhost/_wakedock/auth?ticket={ticket}&next=/")
    assert elsewhere.status_code == 401
    client.cookies.clear()
    first = client.get(ticket_url, follow_redirects=False)
    assert first.status_code == 303 and "__Host-wakedock_proxy=" in first.headers["set-cookie"]
    assert "HttpOnly" in first.headers["set-cookie"] and "Secure" in first.headers["set-cookie"]
    client.cookies.clear()
    replay = client.get(ticket_url, follow_redirects=False)
    assert replay.status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "javascript:alert(1)",
        "https://localhost.evil.example/",
        "//evil",
        "https://[app.localhost/",  # unparseable: a 500 once
    ],
)
def test_handoff_refuses_foreign_targets(h: Harness, client: TestClient, target: str) -> None:
    add(h, access={"policy": "authenticated"})
    reply = client.get(
        "https://localhost/auth/proxy", params={"next": target}, follow_redirects=False
    )
    assert reply.status_code == 400


def test_roles_policy_refuses_other_roles(
    h: Harness, client: TestClient, runtime: FakeRuntime
) -> None:
    add(h, access={"policy": "roles", "roles": ["operator"]})
    _login_cookie(h, client, Role.VIEWER)
    reply = _follow_to_service(client, "https://app.localhost/")
    assert reply.status_code == 403
    assert starts(runtime) == 0
