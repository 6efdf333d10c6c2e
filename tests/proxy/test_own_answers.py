"""Every answer WakeDock writes itself on a service host (loading page, sign-in refusal, its own
assets, status and pages, redirects, a failed wake, an unknown host) carries the full security
header set; clients that do not ask for HTML get JSON `{"detail", "code"}`. The service's own
answers are left as the service sent them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service, database_url, runtime, upstream_port  # noqa: F401 - fixtures
from wakedock.app import create_asgi
from wakedock.web.headers import _BASE_HEADERS

pytestmark = pytest.mark.security

HTML = {"Accept": "text/html,application/xhtml+xml"}
JSON = {"Accept": "application/json"}
EXPECTED = [name.decode() for name, _ in _BASE_HEADERS] + [
    "strict-transport-security",
    "x-request-id",
    "cache-control",
]


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    return make_harness(
        runtime=runtime,
        proxy={"admin_hosts": ["localhost"], "reaper_interval_seconds": 60},
    )


@pytest.fixture
def client(h: Harness) -> Iterator[TestClient]:
    with TestClient(create_asgi(h.components), base_url="https://app.localhost") as client:
        yield client


def hardened(reply: Response) -> list[str]:
    """The security headers missing from an answer (none, when all is well)."""
    missing = [name for name in EXPECTED if name not in reply.headers]
    csp = reply.headers.get("content-security-policy", "")
    if "unsafe-inline" in csp or "frame-ancestors 'none'" not in csp:
        missing.append("a strict content-security-policy")
    if "server" in reply.headers:
        missing.append("(no Server header)")
    return missing


def is_json_error(reply: Response, code: str) -> bool:
    body = reply.json()
    return (
        reply.headers["content-type"] == "application/json"
        and set(body) == {"detail", "code"}
        and body["code"] == code
    )


@pytest.mark.parametrize("accept", [JSON, {"Accept": "*/*"}, {}])
def test_a_sign_in_refusal_is_hardened_json_for_api_clients(
    h: Harness, client: TestClient, accept: dict[str, str]
) -> None:
    add_service(h, access={"policy": "authenticated"})
    reply = client.get("/", headers=accept)
    assert reply.status_code == 401
    assert hardened(reply) == []
    assert is_json_error(reply, "not_authenticated")


def test_a_sign_in_refusal_sends_a_browser_to_login_hardened(
    h: Harness, client: TestClient
) -> None:
    add_service(h, access={"policy": "authenticated"})
    reply = client.get("/", headers=HTML, follow_redirects=False)
    assert reply.status_code == 303
    assert hardened(reply) == []


def test_a_refused_ticket_gets_a_hardened_page_or_json(h: Harness, client: TestClient) -> None:
    add_service(h, access={"policy": "roles", "roles": ["admin"]})
    for headers, html in ((HTML, True), (JSON, False)):
        reply = client.get("/_wakedock/auth?ticket=forged", headers=headers)
        assert reply.status_code == 401
        assert hardened(reply) == []
        if html:
            assert reply.headers["content-type"].startswith("text/html")
            assert "Sign-in failed" in reply.text
        else:
            assert is_json_error(reply, "not_authenticated")


def test_own_pages_and_assets_are_hardened(h: Harness, client: TestClient) -> None:
    add_service(h)
    for path in ("/_wakedock/loading.js", "/_wakedock/loading.css", "/_wakedock/status"):
        reply = client.get(path)
        assert reply.status_code == 200, path
        assert hardened(reply) == [], path
    missing = client.get("/_wakedock/nothing", headers=JSON)
    assert missing.status_code == 404 and is_json_error(missing, "not_found")
    assert hardened(missing) == []
    page = client.get("/_wakedock/nothing", headers=HTML)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert hardened(page) == []


def test_the_loading_page_is_hardened(h: Harness, client: TestClient) -> None:
    add_service(h)
    page = client.get("/", headers=HTML)
    assert page.status_code == 200 and "Starting app" in page.text
    assert hardened(page) == []


def test_a_failed_wake_is_hardened_json_for_api_clients(
    h: Harness, client: TestClient, runtime: FakeRuntime
) -> None:
    add_service(h)
    runtime.fail_start = True
    reply = client.get("/", headers=JSON)
    assert reply.status_code == 502
    assert hardened(reply) == []
    assert is_json_error(reply, "bad_gateway")


def test_the_services_own_answers_are_left_alone(h: Harness, client: TestClient) -> None:
    add_service(h)
    reply = client.get("/", headers={"Accept": "*/*"})
    assert reply.status_code == 200 and reply.text == "hello from upstream\n"
    # WakeDock's CSP would break the service's own pages: it is not added to them.
    assert "content-security-policy" not in reply.headers
