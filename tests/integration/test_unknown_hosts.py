"""Through the real server (HTTPS subprocess): a Host that is neither an admin host nor a
service, or a malformed one, is answered by WakeDock with the full security header set, as JSON
`{"detail", "code"}` for API clients and as a small page for browsers."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from support.server import WakeDockProcess, wakedock_server
from wakedock.web.headers import _BASE_HEADERS

pytestmark = [pytest.mark.integration, pytest.mark.security]

EXPECTED = [name.decode() for name, _ in _BASE_HEADERS] + [
    "strict-transport-security",
    "x-request-id",
    "cache-control",
]
UNKNOWN = ["other.example", "nothing.localhost", "app.localhost:8443", "evil.example:1"]
MALFORMED = ["bad host", "[::1", "localhost:notaport", "a..b", "*", "-", "x" * 300, "%00"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WakeDockProcess]:
    with wakedock_server(tmp_path_factory.mktemp("hosts") / "data") as running:
        yield running


def raw_get(
    server: WakeDockProcess, host: str, accept: str | None
) -> tuple[int, dict[str, str], bytes]:
    """GET /api/v1/health with exactly this Host header (a client library refuses some)."""
    lines = ["GET /api/v1/health HTTP/1.1", f"Host: {host}", "Connection: close"]
    if accept is not None:
        lines.append(f"Accept: {accept}")
    context = server.ssl_context()
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def missing_headers(headers: dict[str, str]) -> list[str]:
    return [name for name in EXPECTED if name not in headers] + (
        ["(no Server header)"] if "server" in headers else []
    )


@pytest.mark.parametrize("host", UNKNOWN + MALFORMED)
@pytest.mark.parametrize("accept", ["application/json", "*/*", None])
def test_api_clients_get_hardened_json(
    server: WakeDockProcess, host: str, accept: str | None
) -> None:
    status, headers, body = raw_get(server, host, accept)
    assert status == 404, body
    assert missing_headers(headers) == []
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "detail": "Unknown host. No service answers at this address.",
        "code": "unknown_host",
    }


@pytest.mark.parametrize("host", UNKNOWN + MALFORMED)
def test_browsers_get_a_hardened_page(server: WakeDockProcess, host: str) -> None:
    status, headers, body = raw_get(server, host, "text/html,application/xhtml+xml")
    assert status == 404
    assert missing_headers(headers) == []
    assert headers["content-type"].startswith("text/html")
    assert b"Unknown host" in body
    assert host.encode() not in body or host in ("*", "-")


def test_the_admin_host_is_still_the_api(server: WakeDockProcess) -> None:
    status, headers, body = raw_get(server, "localhost", "application/json")
    assert status == 200 and json.loads(body)["status"] in ("ok", "degraded")
    assert missing_headers(headers) == []
