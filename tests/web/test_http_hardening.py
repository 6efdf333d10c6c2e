"""Security headers on every response, JSON errors, CORS allowlist, docs off by default."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from conftest import Harness

pytestmark = pytest.mark.security

REQUIRED = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _assert_hardened(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    for name, value in REQUIRED.items():
        assert headers.get(name) == value, name
    csp = headers["content-security-policy"]
    for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "x-xss-protection" in headers
    assert "permissions-policy" in headers
    assert "strict-transport-security" in headers
    assert "server" not in headers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/api/v1/health", 200),
        ("GET", "/nowhere", 404),
        ("GET", "/api/v1/nowhere", 404),
        ("DELETE", "/api/v1/health", 405),
        ("GET", "/api/v1/auth/me", 401),
        ("POST", "/api/v1/auth/refresh", 422),
    ],
)
def test_every_response_is_hardened(
    client: TestClient, method: str, path: str, status: int
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    _assert_hardened(response)
    if path.startswith("/api/"):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"] == "application/json"
        if status >= 400:
            assert "code" in response.json()


def test_unexpected_error_is_a_hardened_json_500_without_internals(harness: Harness) -> None:
    @harness.app.get("/api/v1/explode")
    def explode() -> None:
        raise RuntimeError("secret internal detail /etc/wakedock")

    client = TestClient(harness.app, raise_server_exceptions=False, base_url="https://testserver")
    response = client.get("/api/v1/explode")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert body["correlation_id"] == response.headers["x-request-id"]
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    _assert_hardened(response)


def test_validation_errors_do_not_echo_input(client: TestClient) -> None:
    payload = "<script>alert(1)</script>"
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": 5, "x": payload})
    assert response.status_code == 422
    assert payload not in response.text
    assert response.json()["code"] == "validation_error"


def test_hsts_only_over_https_unless_told(make_harness: Callable[..., Harness]) -> None:
    plain = TestClient(make_harness().app, base_url="http://testserver")
    assert "strict-transport-security" not in plain.get("/api/v1/health").headers
    behind_proxy = TestClient(
        make_harness(http={"hsts_behind_proxy": True}).app, base_url="http://testserver"
    )
    assert "max-age=31536000" in behind_proxy.get("/").headers["strict-transport-security"]


def test_docs_are_off_unless_enabled(make_harness: Callable[..., Harness]) -> None:
    closed = make_harness().client
    for path in ("/api/docs", "/api/openapi.json", "/docs", "/openapi.json", "/redoc"):
        assert closed.get(path).status_code == 404
    opened = make_harness(http={"docs_enabled": True}).client
    assert opened.get("/api/openapi.json").status_code == 200
    assert opened.get("/api/docs").status_code == 200


def test_cors_allows_only_the_configured_origin(make_harness: Callable[..., Harness]) -> None:
    client = make_harness(http={"cors_origins": ["https://admin.example.com"]}).client
    allowed = client.options(
        "/api/v1/auth/me",
        headers={"Origin": "https://admin.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert allowed.headers["access-control-allow-origin"] == "https://admin.example.com"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    _assert_hardened(allowed)
    for origin in (
        "https://admin.example.com.evil.net",
        "https://evil.admin.example.com",
        "http://admin.example.com",
    ):
        denied = client.get("/api/v1/health", headers={"Origin": origin})
        assert "access-control-allow-origin" not in denied.headers


def test_default_has_no_cors_at_all(client: TestClient) -> None:
    response = client.options(
        "/api/v1/health",
        headers={"Origin": "https://admin.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers
