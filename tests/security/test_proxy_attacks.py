"""Attacks on the wake-on-demand proxy: host confusion, forged and replayed proxy credentials,
revoked sessions, open redirects, login CSRF. Each must neither wake the service nor reach it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service, database_url, runtime, upstream_port  # noqa: F401 - fixtures
from wakedock.app import create_asgi
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security
HTML = {"Accept": "text/html"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime, clock: FakeClock) -> Harness:
    harness = make_harness(runtime=runtime, clock=clock, proxy={"admin_hosts": ["localhost"]})
    for name in ("app", "other"):
        add_service(harness, name, access={"policy": "authenticated"})
    return harness


@pytest.fixture
def client(h: Harness) -> Iterator[TestClient]:
    with TestClient(create_asgi(h.components), base_url="https://app.localhost") as client:
        yield client


def not_woken(runtime: FakeRuntime) -> bool:
    return not any(call == "start" for call, _ in runtime.calls)


def sign_in(h: Harness, client: TestClient) -> None:
    name, password = h.create_user("mallory", Role.VIEWER)
    reply = client.post(
        "https://localhost/api/v1/auth/login",
        json={"username": name, "password": password, "mode": "cookie"},
        headers={"Origin": "https://localhost"},
    )
    assert reply.status_code == 200, reply.text


def ticket_url(client: TestClient, target: str = "https://app.localhost/") -> str:
    reply = client.get(
        "https://localhost/auth/proxy", params={"next": target}, follow_redirects=False
    )
    assert reply.status_code == 303, reply.text
    return str(reply.headers["location"])


def proxy_cookie(client: TestClient, url: str) -> str:
    redeemed = client.get(url, follow_redirects=False)
    assert redeemed.status_code == 303, redeemed.text
    return str(redeemed.headers["set-cookie"].split(";")[0].split("=", 1)[1])


@pytest.mark.parametrize(
    "host",
    [
        "app.localhost.evil.example",
        "evil.example",
        "localhost.evil.example",
        "app..localhost",
        "app.localhost:443@evil.example",
        "a" * 400,
        "",
    ],
)
def test_confusing_hosts_reach_neither_the_api_nor_a_service(
    client: TestClient, runtime: FakeRuntime, host: str
) -> None:
    reply = client.get("/api/v1/health", headers={"Host": host})
    assert reply.status_code == 404
    assert "status" not in reply.text
    assert not_woken(runtime)


def test_forwarded_host_cannot_reach_the_admin_api(client: TestClient) -> None:
    reply = client.get("/api/v1/users", headers={"X-Forwarded-Host": "localhost"})
    assert reply.status_code == 401  # the service's sign-in page, not the admin API
    assert "Sign-in required" in reply.text


@pytest.mark.parametrize(
    "cookie",
    [
        "garbage",
        jwt.encode({"sub": "1", "sid": "x", "typ": "proxy"}, "guessed-key-0123456789abcdef0123"),
        base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).decode() + ".e30.",
    ],
)
def test_forged_proxy_cookies_neither_wake_nor_reach(
    client: TestClient, runtime: FakeRuntime, cookie: str
) -> None:
    reply = client.get("/", headers={"Cookie": f"__Host-wakedock_proxy={cookie}"})
    assert reply.status_code == 401
    assert not_woken(runtime)


def test_the_admin_session_cookie_is_not_a_proxy_cookie(
    h: Harness, client: TestClient, runtime: FakeRuntime
) -> None:
    sign_in(h, client)
    session = client.cookies.get("__Host-wakedock_session")
    assert session
    reply = client.get("/", headers={"Cookie": f"__Host-wakedock_proxy={session}"})
    assert reply.status_code == 401
    assert not_woken(runtime)


def test_a_proxy_cookie_of_one_service_does_not_open_another(
    h: Harness, client: TestClient, runtime: FakeRuntime
) -> None:
    sign_in(h, client)
    cookie = proxy_cookie(client, ticket_url(client))
    client.cookies.clear()
    reply = client.get(
        "https://other.localhost/", headers={"Cookie": f"__Host-wakedock_proxy={cookie}"}
    )
    assert reply.status_code == 401
    assert not_woken(runtime)


def test_the_proxy_cookie_is_never_handed_to_the_app(h: Harness, client: TestClient) -> None:
    sign_in(h, client)
    cookie = proxy_cookie(client, ticket_url(client))
    client.cookies.clear()
    seen = client.get(
        "/headers", headers={"Cookie": f"theme=dark; __Host-wakedock_proxy={cookie}; lang=fr"}
    ).json()
    assert seen["cookie"] == "theme=dark; lang=fr"
    assert cookie not in str(seen)


def test_an_expired_ticket_is_refused(h: Harness, client: TestClient, clock: FakeClock) -> None:
    sign_in(h, client)
    url = ticket_url(client)
    clock.advance(61)
    assert client.get(url, follow_redirects=False).status_code == 401


def test_logout_ends_service_access_too(
    h: Harness, client: TestClient, runtime: FakeRuntime
) -> None:
    sign_in(h, client)
    csrf = client.get("https://localhost/api/v1/auth/csrf").json()["csrf_token"]
    cookie = proxy_cookie(client, ticket_url(client))
    assert client.get("/", headers={"Cookie": f"__Host-wakedock_proxy={cookie}"}).status_code == 200
    out = client.post(
        "https://localhost/api/v1/auth/logout",
        headers={"X-CSRF-Token": csrf, "Origin": "https://localhost"},
    )
    assert out.status_code == 204, out.text
    h.components.sessions.forget()  # no wait for the revocation cache
    again = client.get("/", headers={"Cookie": f"__Host-wakedock_proxy={cookie}"})
    assert again.status_code == 401


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
def test_no_open_redirect_after_sign_in_or_ticket(
    h: Harness, client: TestClient, target: str
) -> None:
    name, password = h.create_user("victim", Role.VIEWER)
    form = client.post(
        "https://localhost/login",
        content=f"username={name}&password={password}&next={target}".encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://localhost",
        },
        follow_redirects=False,
    )
    assert form.status_code == 303
    assert form.headers["location"] == "/"
    url = ticket_url(client)
    query = parse_qs(urlsplit(url).query)
    redeemed = client.get(
        "/_wakedock/auth",
        params={"ticket": query["ticket"][0], "next": target},
        follow_redirects=False,
    )
    assert redeemed.headers["location"] == "/"


def test_login_form_from_a_foreign_origin_is_refused(h: Harness, client: TestClient) -> None:
    name, password = h.create_user("target", Role.VIEWER)
    reply = client.post(
        "https://localhost/login",
        content=f"username={name}&password={password}".encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://evil.example",
        },
        follow_redirects=False,
    )
    assert reply.status_code == 403
    assert "__Host-wakedock_session" not in reply.headers.get("set-cookie", "")
