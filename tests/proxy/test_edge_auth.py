"""`<PREFIX>/edge-auth`, the edge's access check (nginx `auth_request`): exactly the decision the
proxy makes for the caller's own service host cookie (204, 401, 403), with no body, and never a
wake."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service, database_url, runtime, upstream_port  # noqa: F401 - fixtures
from wakedock.app import create_asgi
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security
CHECK = "/_wakedock/edge-auth"


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    harness = make_harness(runtime=runtime, proxy={"admin_hosts": ["localhost"]})
    add_service(harness, "app", access={"policy": "authenticated"})
    add_service(harness, "other", access={"policy": "authenticated"})
    add_service(harness, "admins", access={"policy": "roles", "roles": ["admin"]})
    add_service(harness, "open")
    return harness


@pytest.fixture
def client(h: Harness) -> Iterator[TestClient]:
    with TestClient(create_asgi(h.components), base_url="https://app.localhost") as client:
        yield client


def _cookie_for(h: Harness, client: TestClient, host: str, user: str) -> str:
    """A signed-in viewer's service host cookie for `host` (sign-in, hand-off, ticket)."""
    name, password = h.create_user(user, Role.VIEWER)
    login = client.post(
        "https://localhost/api/v1/auth/login",
        json={"username": name, "password": password, "mode": "cookie"},
        headers={"Origin": "https://localhost"},
    )
    assert login.status_code == 200, login.text
    handoff = client.get(
        "https://localhost/auth/proxy", params={"next": f"https://{host}/"}, follow_redirects=False
    )
    assert handoff.status_code == 303, handoff.text
    redeemed = client.get(handoff.headers["location"], follow_redirects=False)
    assert redeemed.status_code == 303, redeemed.text
    client.cookies.clear()
    return str(redeemed.headers["set-cookie"].split(";")[0])


def _check(client: TestClient, host: str, cookie: str | None = None) -> int:
    headers = {"Cookie": cookie} if cookie else {}
    reply = client.get(f"https://{host}{CHECK}", headers=headers)
    assert reply.content == b""
    return reply.status_code


def test_the_check_answers_the_proxys_decision_for_the_callers_own_cookie(
    h: Harness, client: TestClient, runtime: FakeRuntime
) -> None:
    assert _check(client, "open.localhost") == 204  # public
    assert _check(client, "app.localhost") == 401  # no cookie: sign in
    assert _check(client, "app.localhost", "__Host-wakedock_proxy=forged") == 401
    cookie = _cookie_for(h, client, "app.localhost", "victor")
    assert _check(client, "app.localhost", cookie) == 204
    # Bound to its host: useless on another service, and a viewer may not use the admins'.
    assert _check(client, "other.localhost", cookie) == 401
    admins = _cookie_for(h, client, "admins.localhost", "vera")
    assert _check(client, "admins.localhost", admins) == 403
    # Asking never wakes anything.
    assert not any(call == "start" for call, _ in runtime.calls)
