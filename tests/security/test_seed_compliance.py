"""The seed's "Tests Sécurité Automatisés", adapted to WakeDock's paths and fixtures."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from conftest import Harness

pytestmark = pytest.mark.security


def test_password_policy_enforcement(make_harness) -> None:  # type: ignore[no-untyped-def]
    client = make_harness(auth={"registration_enabled": True}).client
    for weak in ["123456", "password", "admin", "test", "abc123"]:
        response = client.post(
            "/api/v1/auth/register",
            json={"username": "testuser", "password": weak, "email": "test@example.com"},
        )
        assert response.status_code == 400
        assert "password does not meet security requirements" in response.json()["detail"]


def test_rate_limiting_protection(client: TestClient) -> None:
    for _ in range(10):
        response = client.post(
            "/api/v1/auth/login", data={"username": "nonexistent", "password": "wrongpassword"}
        )
        assert response.status_code in (401, 429)
    response = client.post(
        "/api/v1/auth/login", data={"username": "nonexistent", "password": "wrongpassword"}
    )
    assert response.status_code == 429
    assert "too many attempts" in response.json()["detail"].lower()
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    "payload",
    [
        "'; DROP TABLE users; --",
        "' OR '1'='1",
        "'; UNION SELECT * FROM users --",
        "%",
        "_",
    ],
)
def test_sql_injection_protection(harness: Harness, admin_token: str, payload: str) -> None:
    harness.create_user("bob")
    response = harness.client.get(
        "/api/v1/users", params={"search": payload}, headers=harness.bearer(admin_token)
    )
    assert response.status_code == 200
    assert "password" not in response.text
    # Literal matching: no payload (not even LIKE wildcards) matches any real user.
    assert response.json() == []
    # And the table is still there.
    everyone = harness.client.get("/api/v1/users", headers=harness.bearer(admin_token))
    assert {u["username"] for u in everyone.json()} == {"admin", "bob"}


def test_jwt_security(harness: Harness, admin_credentials: tuple[str, str]) -> None:
    response = harness.client.post(
        "/api/v1/auth/login",
        data={"username": admin_credentials[0], "password": admin_credentials[1]},
    )
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert harness.client.get("/api/v1/auth/me", headers=harness.bearer(token)).status_code == 200
    for malformed in [token[:-5] + "xxxxx", "fake.jwt.token", token + "extra"]:
        response = harness.client.get("/api/v1/auth/me", headers=harness.bearer(malformed))
        assert response.status_code == 401


@pytest.mark.parametrize("origin", ["http://evil.com", "https://attacker.net", "null"])
def test_cors_security(make_harness, origin: str) -> None:  # type: ignore[no-untyped-def]
    # Both with the default (empty) allowlist and with a real one configured.
    for cors in ([], ["https://admin.example.com"]):
        client = make_harness(http={"cors_origins": cors}).client
        for method in ("OPTIONS", "GET"):
            response = client.request(
                method,
                "/api/v1/health",
                headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
            )
            assert response.headers.get("Access-Control-Allow-Origin") != origin
            assert "Access-Control-Allow-Credentials" not in response.headers or (
                response.headers.get("Access-Control-Allow-Origin") is None
            )


def test_security_headers(client: TestClient) -> None:
    response = client.get("/")
    for header in [
        "X-Content-Type-Options",
        "X-Frame-Options",
        "X-XSS-Protection",
        "Referrer-Policy",
        "Content-Security-Policy",
    ]:
        assert header in response.headers, f"Missing security header: {header}"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "unsafe-inline" not in response.headers.get("Content-Security-Policy", "")


def test_every_seed_security_event_type_exists_with_a_severity() -> None:
    """The seed's SecurityEventType names, plus S8.1's kinds, are all audit event types."""
    from wakedock.audit.events import DEFAULT_SEVERITY, EventType

    seed = {
        "login_success", "login_failure", "mfa_success", "mfa_failure", "privilege_escalation",
        "unauthorized_access", "suspicious_activity", "data_access", "configuration_change",
        "secret_access", "api_abuse", "security_violation",
    }  # fmt: skip
    spec = {
        "session_revoke", "token_reuse", "rate_limit_hit", "user_create", "role_change",
        "service_create", "service_update", "service_delete", "service_start", "service_stop",
        "policy_violation", "mfa_enrol", "mfa_disable", "mfa_reset",
    }  # fmt: skip
    names = {t.value for t in EventType}
    assert seed | spec <= names
    assert set(DEFAULT_SEVERITY) == set(EventType)
