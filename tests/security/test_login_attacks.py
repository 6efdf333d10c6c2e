"""Attacks on login: user enumeration, brute force around the rate limits (X-Forwarded-For
spoofing, many IPs against one account), and privilege escalation through registration."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import CLIENT_IP, Harness, strong_password
from wakedock.audit.models import AuditEvent
from wakedock.auth.models import User, UserSession
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security

LOGIN = "/api/v1/auth/login"
PROXY_NET = "203.0.113.0/24"
PROXY_IP = "203.0.113.5"


def events(h: Harness, type_: str) -> list[AuditEvent]:
    with h.components.db() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == type_)).scalars())


def users(h: Harness) -> dict[str, str]:
    with h.components.db() as db:
        return {u.username: u.role for u in db.execute(select(User)).scalars()}


def random_ip() -> str:
    # Public-looking addresses outside the proxy network.
    return ".".join(str(1 + secrets.randbelow(223)) for _ in range(4))


def attempt(h: Harness, username: str, password: str, xff: str | None = None) -> Any:
    headers = {"X-Forwarded-For": xff} if xff is not None else {}
    return h.client.post(LOGIN, json={"username": username, "password": password}, headers=headers)


def assert_rate_limited(response: Any) -> None:
    assert response.status_code == 429, response.text
    assert "Too many attempts" in response.json()["detail"]
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    assert "access_token" not in response.text


@pytest.fixture
def behind_proxy(make_harness: Callable[..., Harness]) -> Harness:
    """WakeDock behind a reverse proxy it trusts: the socket peer is the proxy."""
    return make_harness(client_ip=PROXY_IP, http={"trusted_proxies": [PROXY_NET]})


# The rate limiter alone: zero trust denies an address failing for many usernames even before
# the limiter's 10 tries (test_spoofing_does_not_escape_the_zero_trust_reputation below).
LIMITER_ONLY = {"zerotrust": {"enabled": False}}


@pytest.fixture
def limiter_only(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(**LIMITER_ONLY)


@pytest.fixture
def limiter_only_behind_proxy(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(client_ip=PROXY_IP, http={"trusted_proxies": [PROXY_NET]}, **LIMITER_ONLY)


# -- enumeration ----------------------------------------------------------------------------
def test_same_answer_for_unknown_user_wrong_password_and_disabled_user(
    harness: Harness, admin_token: str
) -> None:
    alice, alice_password = harness.create_user("alice")
    carol, carol_password = harness.create_user("carol")
    carol_id = harness.login(carol, carol_password)["user"]["id"]
    disabled = harness.client.patch(
        f"/api/v1/users/{carol_id}", headers=harness.bearer(admin_token), json={"disabled": True}
    )
    assert disabled.status_code == 200

    answers = {
        "wrong password": attempt(harness, alice, "not-" + alice_password),
        "wrong password, other case": attempt(harness, alice.upper(), "not-" + alice_password),
        "unknown user": attempt(harness, "nobody-here", alice_password),
        "invalid username": attempt(harness, "'; --", alice_password),
        "disabled, right password": attempt(harness, carol, carol_password),
        "disabled, wrong password": attempt(harness, carol, "not-" + carol_password),
    }
    reference = answers["wrong password"]
    assert reference.status_code == 401
    assert reference.json()["code"] == "invalid_credentials"
    for case, response in answers.items():
        assert response.status_code == 401, case
        assert response.json() == reference.json(), case
        assert response.headers.get("WWW-Authenticate") == (
            reference.headers.get("WWW-Authenticate")
        ), case
        assert "disabled" not in response.text.lower(), case
    # The audit trail (not the client) records why.
    reasons = {
        (e.target, json.loads(e.details)["reason"]) for e in events(harness, "login_failure")
    }
    assert {
        ("carol", "disabled"),
        ("nobody-here", "unknown_user"),
        ("alice", "bad_password"),
    } <= reasons


def test_form_and_json_login_fail_alike(harness: Harness) -> None:
    name, password = harness.create_user("alice")
    as_json = harness.client.post(LOGIN, json={"username": name, "password": "x" + password})
    as_form = harness.client.post(LOGIN, data={"username": name, "password": "x" + password})
    assert as_json.status_code == as_form.status_code == 401
    assert as_json.json() == as_form.json()


def test_form_and_json_login_both_work(harness: Harness) -> None:
    name, password = harness.create_user("alice")
    as_form = harness.client.post(
        LOGIN, data={"username": name, "password": password, "grant_type": "password", "scope": ""}
    )
    as_json = harness.client.post(LOGIN, json={"username": name, "password": password})
    for response in (as_form, as_json):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "bearer" and body["user"]["username"] == "alice"
        me = harness.client.get("/api/v1/auth/me", headers=harness.bearer(body["access_token"]))
        assert me.status_code == 200
    assert as_form.json()["session_id"] != as_json.json()["session_id"]
    other = harness.client.post(
        LOGIN,
        content=f"username={name}&password={password}",
        headers={"Content-Type": "text/plain"},
    )
    assert other.status_code in (400, 415, 422)


def test_password_is_verified_exactly(harness: Harness) -> None:
    name, password = harness.create_user("alice")
    for variant in (
        password.upper(),
        password[:-1],
        password + " ",
        " " + password,
        password + "\x00",
    ):
        assert attempt(harness, name, variant).status_code == 401, repr(variant)


# -- per-IP limit and X-Forwarded-For -------------------------------------------------------
def test_spoofed_forwarded_for_does_not_escape_ip_limit(limiter_only: Harness) -> None:
    harness = limiter_only
    for _ in range(10):
        response = attempt(
            harness, f"user-{secrets.token_hex(4)}", "wrong-password", xff=random_ip()
        )
        assert response.status_code == 401
    blocked = attempt(harness, f"user-{secrets.token_hex(4)}", "wrong-password", xff=random_ip())
    assert_rate_limited(blocked)
    # The spoofed addresses never reached the audit trail as the client's address.
    failures = events(harness, "login_failure")
    assert len(failures) == 10
    assert {e.ip for e in failures} == {CLIENT_IP}
    hits = events(harness, "rate_limit_hit")
    assert len(hits) == 1 and hits[0].ip == CLIENT_IP


def test_spoofing_does_not_escape_the_zero_trust_reputation(harness: Harness) -> None:
    """With zero trust on (the default), credential stuffing from one address is denied after
    a few usernames, whatever X-Forwarded-For it writes: the failures count against the real
    address, and so does the refusal, before any password is checked."""
    answers = [
        attempt(harness, f"user-{secrets.token_hex(4)}", "wrong-password", xff=random_ip())
        for _ in range(10)
    ]
    statuses = [a.status_code for a in answers]
    assert 401 in statuses and statuses[-1] == 403, statuses
    assert statuses == sorted(statuses), statuses  # once denied, denied for the rest
    assert answers[-1].json()["code"] == "zero_trust_denied"
    failures = events(harness, "login_failure")
    assert {e.ip for e in failures} == {CLIENT_IP} and len(failures) == statuses.count(401)
    denied = events(harness, "zero_trust_decision")
    assert {e.ip for e in denied} == {CLIENT_IP}
    assert len(denied) == statuses.count(403)
    # A real user's right password, from the same address, is refused too.
    name, password = harness.create_user("victim")
    assert attempt(harness, name, password, xff=random_ip()).status_code == 403


def test_forwarded_for_ignored_from_peer_outside_trusted_proxies(
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(
        client_ip="198.51.100.77", http={"trusted_proxies": [PROXY_NET]}, **LIMITER_ONLY
    )
    for _ in range(10):
        assert attempt(h, f"user-{secrets.token_hex(4)}", "wrong", xff=PROXY_IP).status_code == 401
    assert_rate_limited(attempt(h, f"user-{secrets.token_hex(4)}", "wrong", xff=random_ip()))
    assert {e.ip for e in events(h, "login_failure")} == {"198.51.100.77"}


def test_trusted_proxy_forwarded_clients_get_separate_budgets(
    limiter_only_behind_proxy: Harness,
) -> None:
    h = limiter_only_behind_proxy
    attacker, bystander = "198.51.100.1", "198.51.100.2"
    for _ in range(10):
        assert attempt(h, f"user-{secrets.token_hex(4)}", "wrong", xff=attacker).status_code == 401
    assert_rate_limited(attempt(h, f"user-{secrets.token_hex(4)}", "wrong", xff=attacker))
    # Another client behind the same proxy is not locked out with the attacker.
    name, password = h.create_user("bystander")
    assert attempt(h, name, password, xff=bystander).status_code == 200
    assert attempt(h, "someone", "wrong", xff=bystander).status_code == 401
    assert {e.ip for e in events(h, "login_failure")} == {attacker, bystander}


def test_forged_leftmost_hop_does_not_escape(limiter_only_behind_proxy: Harness) -> None:
    h = limiter_only_behind_proxy
    attacker = "198.51.100.1"
    for _ in range(10):
        assert attempt(h, f"user-{secrets.token_hex(4)}", "wrong", xff=attacker).status_code == 401
    # The attacker writes its own X-Forwarded-For; the proxy appends the real address.
    forged_chains = [
        f"{random_ip()}, {attacker}",
        f"198.51.100.2, {random_ip()}, {attacker}",
        f"{random_ip()}, {attacker}, 203.0.113.77",  # a second trusted hop is skipped
        f"not-an-ip, {attacker}",
    ]
    for chain in forged_chains:
        assert_rate_limited(attempt(h, f"user-{secrets.token_hex(4)}", "wrong", xff=chain))
    # Two header lines: the attacker's own and the proxy's.
    split = h.client.post(
        LOGIN,
        json={"username": "someone", "password": "wrong"},
        headers=[("X-Forwarded-For", random_ip()), ("X-Forwarded-For", attacker)],
    )
    assert_rate_limited(split)
    hits = events(h, "rate_limit_hit")
    assert len(hits) == len(forged_chains) + 1
    assert {e.ip for e in hits} == {attacker}


# -- per-username limit ---------------------------------------------------------------------
def test_username_limit_holds_across_many_ips(behind_proxy: Harness) -> None:
    h = behind_proxy
    name, password = h.create_user("alice")
    for _ in range(5):
        assert attempt(h, name, "wrong-" + password, xff=random_ip()).status_code == 401
    # Even the right password, from a fresh address, is refused before being checked.
    blocked = attempt(h, name, password, xff=random_ip())
    assert_rate_limited(blocked)
    assert_rate_limited(attempt(h, name.upper(), password, xff=random_ip()))
    assert events(h, "login_success") == []
    with h.components.db() as db:
        assert list(db.execute(select(UserSession)).scalars()) == []
    hits = events(h, "rate_limit_hit")
    assert len(hits) == 2
    assert {e.target for e in hits} == {"alice"} and {e.outcome for e in hits} == {"denied"}
    # Other accounts are not affected by alice's lock.
    other, other_password = h.create_user("bob")
    assert attempt(h, other, other_password, xff=random_ip()).status_code == 200


def test_username_limit_with_distinct_socket_peers(
    make_harness: Callable[..., Harness],
) -> None:
    """The same with real distinct peers (no proxy) against one shared limit store."""
    h = make_harness()
    name, password = h.create_user("alice")
    for n in range(5):
        client = type(h.client)(
            h.app, base_url="https://testserver", client=(f"198.51.100.{n + 1}", 40000)
        )
        response = client.post(LOGIN, json={"username": name, "password": "x" + password})
        assert response.status_code == 401
    client = type(h.client)(h.app, base_url="https://testserver", client=("198.51.100.99", 1))
    assert_rate_limited(client.post(LOGIN, json={"username": name, "password": password}))
    assert len(events(h, "rate_limit_hit")) == 1


def test_password_change_guesses_spend_the_username_budget(harness: Harness) -> None:
    name, password = harness.create_user("alice")
    token = harness.login(name, password)["access_token"]
    for _ in range(5):
        guess = harness.client.post(
            "/api/v1/auth/password",
            headers=harness.bearer(token),
            json={
                "current_password": "guess-" + secrets.token_hex(4),
                "new_password": strong_password(),
            },
        )
        assert guess.status_code == 403
    assert_rate_limited(
        harness.client.post(
            "/api/v1/auth/password",
            headers=harness.bearer(token),
            json={"current_password": password, "new_password": strong_password()},
        )
    )


def test_password_change_lockout_is_audited(harness: Harness) -> None:
    """S8.1: rate-limit hits are audit events, on the password-change form as on login."""
    name, password = harness.create_user("alice")
    token = harness.login(name, password)["access_token"]
    body = {"current_password": "guess", "new_password": strong_password()}
    for _ in range(5):
        harness.client.post("/api/v1/auth/password", headers=harness.bearer(token), json=body)
    blocked = harness.client.post("/api/v1/auth/password", headers=harness.bearer(token), json=body)
    assert blocked.status_code == 429
    hits = events(harness, "rate_limit_hit")
    assert [(e.target, e.outcome) for e in hits] == [("alice", "denied")]


# -- registration ---------------------------------------------------------------------------
def test_registration_is_off_by_default(harness: Harness) -> None:
    response = harness.client.post(
        "/api/v1/auth/register", json={"username": "mallory", "password": strong_password()}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "registration_disabled"
    assert "mallory" not in users(harness)


@pytest.mark.parametrize(
    "escalation",
    [
        {"role": "admin"},
        {"role": "ADMIN"},
        {"role": ["admin"]},
        {"role": "viewer"},
        {"is_admin": True},
        {"roles": ["admin"]},
        {"permissions": ["users:write"]},
    ],
)
def test_registration_refuses_any_role(
    make_harness: Callable[..., Harness], escalation: dict[str, Any]
) -> None:
    h = make_harness(auth={"registration_enabled": True})
    response = h.client.post(
        "/api/v1/auth/register",
        json={"username": "mallory", "password": strong_password(), **escalation},
    )
    assert response.status_code == 422
    assert users(h) == {}
    assert events(h, "registration") == []


def test_registration_creates_a_viewer(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(auth={"registration_enabled": True})
    password = strong_password()
    response = h.client.post(
        "/api/v1/auth/register",
        json={"username": "Newbie", "password": password, "email": "newbie@example.com"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["role"] == "viewer" and body["username"] == "newbie"
    assert "password" not in response.text and "$argon2" not in response.text
    assert users(h) == {"newbie": Role.VIEWER.value}
    token = h.login("newbie", password)["access_token"]
    # A viewer: no user administration.
    assert h.client.get("/api/v1/users", headers=h.bearer(token)).status_code == 403
    grab = h.client.patch(
        f"/api/v1/users/{body['id']}", headers=h.bearer(token), json={"role": "admin"}
    )
    assert grab.status_code == 403
    assert users(h) == {"newbie": Role.VIEWER.value}


def test_oversized_login_bodies_are_refused_before_parsing(client: TestClient) -> None:
    huge = "x" * (64 * 1024)
    as_json = client.post("/api/v1/auth/login", json={"username": huge, "password": "p"})
    assert as_json.status_code == 413
    assert as_json.json()["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: a chunked body
        for _ in range(64):
            yield b"username=a&password=" + b"y" * 1024

    chunked = client.post(
        "/api/v1/auth/login",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 413
    assert chunked.json()["code"] == "payload_too_large"
    # A form with repeated or blank fields still parses; the last value wins.
    form = client.post(
        "/api/v1/auth/login",
        content=b"username=x&username=nobody&password=wrong-but-long-enough",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 401


def test_control_characters_break_nothing(harness: Harness, admin_token: str) -> None:
    # NUL is refused by PostgreSQL text columns and CR/LF forges log lines: neither may cause a
    # 500 or land verbatim in the audit trail.
    for name in ("nul\x00user", "evil\r\nFAKE login_success admin", "tab\tuser"):
        response = harness.client.post(
            "/api/v1/auth/login", json={"username": name, "password": "wrong-password-123"}
        )
        assert response.status_code == 401
    search = harness.client.get(
        "/api/v1/users", params={"search": "a\x00b"}, headers=harness.bearer(admin_token)
    )
    assert search.status_code in (200, 422)
    with harness.components.db() as db:
        targets = [
            e.target
            for e in db.execute(
                select(AuditEvent).where(AuditEvent.type == "login_failure")
            ).scalars()
        ]
    assert "nul\\x00user" in targets
    assert all("\r" not in t and "\n" not in t and "\x00" not in t for t in targets if t)
