"""Oversized requests against the real `wakedock serve` (HTTPS): a 1 GiB body on each route
reachable without logging in is answered 413 while it is still arriving, without the server
growing; a request head over the limit is answered 431."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.raw_http import Answer, send_head, stream_upload
from support.server import WakeDockProcess, wakedock_server

pytestmark = [pytest.mark.integration, pytest.mark.security]

GIB = 1 << 30
MIB = 1 << 20
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

# Every route that reads a body without a login, with a normal request it still answers after.
UNAUTHENTICATED = [
    ("/api/v1/auth/refresh", JSON, {"refresh_token": "not-a-token"}),
    ("/api/v1/auth/setup", JSON, {"token": "wrong", "username": "eve", "password": "x" * 16}),
    ("/api/v1/auth/register", JSON, {"username": "eve", "password": "x" * 16}),
    ("/api/v1/auth/mfa/verify", JSON, {"challenge_token": "not-a-token", "code": "123456"}),
    ("/api/v1/auth/login", JSON, {"username": "nobody", "password": "wrong-password-1"}),
    ("/login", FORM, {"username": "nobody", "password": "wrong-password-1"}),
]
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WakeDockProcess]:
    data_dir = tmp_path_factory.mktemp("limits") / "data"
    with wakedock_server(data_dir) as running:
        yield running


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def _normal_request(server: WakeDockProcess, path: str, kind: str, body: dict[str, str]) -> int:
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as client:
        sent = client.post(path, json=body) if kind == JSON else client.post(path, data=body)
        return sent.status_code


def _assert_refused_as_json(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["code"] == code
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name) == value, name
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "strict-transport-security" in answer.headers


@pytest.mark.parametrize(("path", "kind", "normal"), UNAUTHENTICATED)
def test_a_gibibyte_body_is_refused_while_it_arrives(
    server: WakeDockProcess, path: str, kind: str, normal: dict[str, str]
) -> None:
    # Warm the route up first, so that what is measured is the big body alone.
    assert _normal_request(server, path, kind, normal) != 413
    before = _rss_bytes(server.process.pid)
    for chunked in (False, True):
        answer = asyncio.run(
            stream_upload(
                server.port,
                server.ssl_context(),
                path,
                total=GIB,
                chunked=chunked,
                content_type=kind,
            )
        )
        _assert_refused_as_json(answer, 413, "payload_too_large")
        # The server stopped taking the body long before its end.
        assert answer.sent < GIB // 4, (chunked, answer.sent)
        if path.startswith("/api/"):
            assert answer.headers["cache-control"] == "no-store"
    growth = _rss_bytes(server.process.pid) - before
    assert growth < 50 * MIB, f"the server grew by {growth / MIB:.0f} MiB"
    # A normal request on the same route is still answered by the route itself.
    status = _normal_request(server, path, kind, normal)
    assert 400 <= status < 500 and status != 413, status


def _head(size: int) -> bytes:
    filler = b"a" * size
    return b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + filler + b"\r\n\r\n"


@pytest.mark.parametrize("size", [MIB, 70 * 1024], ids=["1MiB", "just-over-64KiB"])
def test_a_request_head_over_the_limit_is_answered_431(server: WakeDockProcess, size: int) -> None:
    answer = asyncio.run(send_head(server.port, server.ssl_context(), _head(size)))
    _assert_refused_as_json(answer, 431, "headers_too_large")
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["connection"] == "close"


def test_a_large_head_under_the_limit_is_served(server: WakeDockProcess) -> None:
    answer = asyncio.run(send_head(server.port, server.ssl_context(), _head(60 * 1024)))
    assert answer.status == 200
    assert answer.json()["status"] == "ok"
