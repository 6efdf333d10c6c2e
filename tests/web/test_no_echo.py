"""Error answers never repeat what a client sent (no reflected payloads, no secrets read back).

A distinctive marker goes into each field of the main request bodies, each query filter and each
free path segment, in turn; whatever the status, an error answer must not contain it. The
markers are shaped to reach the messages most likely to echo: a valid DNS label (duplicates,
unknown names), markup, and an e-mail whose domain is an address literal (the e-mail checker's
own messages quote such parts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import Harness, strong_password
from support.fake_runtime import FakeRuntime
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security

CORE = "zqmarker"
MARKERS = ("zqmarker7", "/zqmarker7", "ZQMARKER<b>'\"7", "x@[zqmarker7]", "x@zqmarker7.example")

SERVICE = {
    "name": "app",
    "display_name": "App",
    "image": "wakedock-test/busybox:1",
    "command": ["httpd", "-f"],
    "env": {"MODE": "demo", "TOKEN": "secret:services/app/api#token"},
    "ports": [{"container_port": 8080, "host_port": 18080, "protocol": "tcp"}],
    "volumes": [{"name": "data", "target": "/data"}, {"source": "/srv/app", "target": "/srv"}],
    "limits": {"memory_mb": 128, "cpus": 0.5, "pids": 64},
    "readiness": {"type": "http", "path": "/", "port": 8080},
    "wake_timeout_s": 30,
    "idle_timeout_s": 300,
    "stop_method": "stop",
    "hosts": ["app.example.com"],
    "access": {"policy": "roles", "roles": ["developer"]},
    "depends_on": ["db"],
    "privileged": False,
    "cap_add": ["NET_ADMIN"],
    "network_mode": "bridge",
    "pid_mode": "host",
    "ipc_mode": None,
    "uts_mode": None,
    "devices": ["/dev/fuse"],
    "read_only_root": True,
    "tmpfs": ["/tmp"],
}


def variants(value: Any) -> Iterator[Any]:
    """`value` with one part replaced by each marker in turn: every leaf, list and object."""
    yield from MARKERS
    if isinstance(value, dict):
        for key, item in value.items():
            for changed in variants(item):
                yield {**value, key: changed}
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for changed in variants(item):
                yield [*value[:index], changed, *value[index + 1 :]]


@pytest.fixture
def h(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(runtime=FakeRuntime(), auth={"registration_enabled": True})


@pytest.fixture
def admin(h: Harness) -> dict[str, str]:
    name, password = h.create_user("admin", Role.ADMIN, email="admin@example.com")
    return h.bearer(h.login(name, password)["access_token"])


def _echoes(reply: Any) -> bool:
    return reply.status_code >= 400 and CORE in reply.text.lower()


def _check(h: Harness, method: str, url: str, bodies: Iterator[Any], **kw: Any) -> list[str]:
    found = []
    for body in bodies:
        reply = h.client.request(method, url, json=body, **kw)
        if _echoes(reply):
            found.append(f"{method} {url} -> {reply.status_code} {reply.text[:300]}")
    return found


def test_request_bodies_are_never_echoed(h: Harness, admin: dict[str, str]) -> None:
    viewer_name, _ = h.create_user("victor", Role.VIEWER)
    viewer = next(
        u for u in h.client.get("/api/v1/users", headers=admin).json() if u["username"] == "victor"
    )
    # The dependency exists, so that a body gets as far as the launch policy.
    for name in ("db", "base"):
        created = h.client.post("/api/v1/services", headers=admin, json={"name": name, **_plain()})
        assert created.status_code == 201, created.text
    password = strong_password()
    cases: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
        (
            "POST",
            "/api/v1/auth/login",
            {"username": "admin", "password": password, "code": "1"},
            {},
        ),
        ("POST", "/api/v1/auth/refresh", {"refresh_token": "abc"}, {}),
        (
            "POST",
            "/api/v1/auth/setup",
            {"token": "t", "username": "neo", "password": password, "email": "n@example.com"},
            {},
        ),
        (
            "POST",
            "/api/v1/auth/register",
            {"username": "neo", "password": password, "email": "n@example.com"},
            {},
        ),
        ("POST", "/api/v1/auth/mfa/verify", {"challenge_token": "c", "code": "1"}, {}),
        ("POST", "/api/v1/auth/password", {"current_password": "a", "new_password": "b"}, admin),
        ("POST", "/api/v1/auth/mfa/confirm", {"code": "123456"}, admin),
        ("POST", "/api/v1/auth/mfa/step-up", {"code": "123456"}, admin),
        ("POST", "/api/v1/auth/mfa/backup-codes", {"code": "123456"}, admin),
        ("POST", "/api/v1/auth/mfa/disable", {"password": "p", "code": "123456"}, admin),
        (
            "POST",
            "/api/v1/users",
            {"username": "neo", "password": password, "role": "viewer", "email": "n@example.com"},
            admin,
        ),
        (
            "PATCH",
            f"/api/v1/users/{viewer['id']}",
            {
                "role": "developer",
                "email": "v@example.com",
                "disabled": False,
                "password": password,
            },
            admin,
        ),
        ("POST", "/api/v1/services", SERVICE, admin),
        ("PATCH", f"/api/v1/services/{created.json()['id']}", SERVICE, admin),
        ("PUT", "/api/v1/secrets/app/api", {"values": {"token": "v"}, "cas": 1}, admin),
    ]
    found = []
    for method, url, body, headers in cases:
        found += _check(h, method, url, variants(body), headers=headers)
    assert viewer_name == "victor"
    assert found == [], "\n".join(found)


def _plain() -> dict[str, Any]:
    return {"image": "wakedock-test/busybox:1", "readiness": {"type": "tcp", "port": 80}}


def test_a_duplicate_service_name_is_not_echoed(h: Harness, admin: dict[str, str]) -> None:
    first = h.client.post("/api/v1/services", headers=admin, json={"name": "zqmarker7", **_plain()})
    assert first.status_code == 201, first.text
    again = h.client.post("/api/v1/services", headers=admin, json={"name": "zqmarker7", **_plain()})
    assert again.status_code == 409 and not _echoes(again), again.text


def test_a_missing_image_is_not_echoed(h: Harness, admin: dict[str, str]) -> None:
    reply = h.client.post(
        "/api/v1/services",
        headers=admin,
        json={**_plain(), "name": "app", "image": "zqmarker7/app:1"},
    )
    assert reply.status_code == 422 and not _echoes(reply), reply.text


def test_login_form_fields_are_never_echoed(h: Harness) -> None:
    found = []
    base = {"username": "admin", "password": strong_password(), "code": "1", "mode": "token"}
    for field in base:
        for marker in MARKERS:
            reply = h.client.post("/api/v1/auth/login", data={**base, field: marker})
            if _echoes(reply):
                found.append(f"{field}: {reply.status_code} {reply.text[:300]}")
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/users?search={m}",
        "/api/v1/audit?type={m}",
        "/api/v1/audit?severity={m}",
        "/api/v1/audit?actor={m}",
        "/api/v1/audit?ip={m}",
        "/api/v1/audit?target={m}",
        "/api/v1/audit?since={m}",
        "/api/v1/audit?until={m}",
        "/api/v1/audit?order={m}",
        "/api/v1/audit/export?format={m}",
        "/api/v1/audit/export?type={m}",
        "/api/v1/services/{m}",
        "/api/v1/services/{m}/logs?tail={m}",
        "/api/v1/users/{m}",
        "/api/v1/auth/sessions?user_id={m}",
        "/api/v1/secrets/{m}",
        "/api/v1/secrets/app/{m}?reveal={m}",
        "/api/v1/files/{m}/compose.yaml",
        "/api/v1/files/base/{m}",
    ],
)
def test_query_and_path_values_are_never_echoed(
    h: Harness, admin: dict[str, str], url: str
) -> None:
    found = []
    for marker in MARKERS:
        for method in ("GET", "DELETE", "PUT"):
            reply = h.client.request(method, url.format(m=marker), headers=admin)
            if _echoes(reply):
                found.append(f"{method} {marker}: {reply.status_code} {reply.text[:300]}")
    reply = h.client.delete("/api/v1/auth/sessions/zqmarker7", headers=admin)
    assert not _echoes(reply), reply.text
    assert found == [], "\n".join(found)
