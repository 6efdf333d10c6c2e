"""Authenticated requests weighed by the engine, in-process behind a trusted proxy (the client's
address in X-Forwarded-For): a session whose address jumps continents is stepped up (or
revoked, by configuration), a headless browser on the API is scored, admin routes use the
stricter profile, a decision is kept per session, address, user agent and purpose, and a
step-up is answered by a fresh code (POST /api/v1/auth/mfa/step-up), which stays reachable.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import Harness, strong_password
from support.pages import HERE, SAME_ORIGIN, code_step, events, hidden, password_step, with_mfa
from wakedock.rbac.permissions import Role

PROXY = "10.0.0.5"
PARIS, SYDNEY, BERLIN = "80.67.169.12", "1.1.1.1", "85.214.132.117"
ME = "/api/v1/auth/me"
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


@pytest.fixture
def proxied(make_harness: Callable[..., Harness]) -> Callable[..., Harness]:
    def make(**sections: Any) -> Harness:
        return make_harness(client_ip=PROXY, http={"trusted_proxies": [f"{PROXY}/32"]}, **sections)

    return make


def _sign_in(h: Harness, name: str, password: str, address: str) -> dict[str, Any]:
    answer = h.client.post(
        "/api/v1/auth/login",
        json={"username": name, "password": password},
        headers={"X-Forwarded-For": address},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _get(h: Harness, path: str, token: str, address: str, **headers: str) -> Any:
    return h.client.get(path, headers={**h.bearer(token), "X-Forwarded-For": address, **headers})


def test_a_session_jumping_from_paris_to_sydney_is_stepped_up(
    proxied: Callable[..., Harness],
) -> None:
    h = proxied()
    name, password = h.create_user("nora")
    token = _sign_in(h, name, password, PARIS)["access_token"]
    assert _get(h, ME, token, PARIS).status_code == 200
    assert _get(h, "/api/v1/services", token, PARIS).status_code == 200
    # Minutes later, the same token from Sydney: no second factor to answer with.
    jumped = _get(h, "/api/v1/services", token, SYDNEY)
    assert (jumped.status_code, jumped.json()["code"]) == (403, "zero_trust_step_up")
    [event] = [e for e in events(h, "zero_trust_decision") if e.ip == SYDNEY]
    assert event.outcome == "failure" and '"decision": "step_up"' in event.details
    assert "the session signed in from FR and is now used from AU" in event.details
    # Who it is and signing out stay open to the stepped-up session.
    assert _get(h, ME, token, SYDNEY).status_code == 200
    # Back in Paris, the session goes on.
    assert _get(h, "/api/v1/services", token, PARIS).status_code == 200


def test_with_mfa_the_jump_asks_for_a_fresh_code_which_answers_it(
    proxied: Callable[..., Harness],
) -> None:
    h = proxied()
    name, password = h.create_user("olive")
    first = h.client.post("/api/v1/auth/login", json={"username": name, "password": password},
                          headers={"X-Forwarded-For": PARIS})  # fmt: skip
    h.enrol_mfa(name, first.json()["access_token"])
    challenge = h.client.post("/api/v1/auth/login", json={"username": name, "password": password},
                              headers={"X-Forwarded-For": PARIS}).json()  # fmt: skip
    token = h.client.post(
        "/api/v1/auth/mfa/verify",
        json={"challenge_token": challenge["challenge_token"], "code": h.totp_code(name)},
        headers={"X-Forwarded-For": PARIS},
    ).json()["access_token"]
    assert _get(h, "/api/v1/services", token, PARIS).status_code == 200
    jumped = _get(h, "/api/v1/services", token, SYDNEY)
    assert (jumped.status_code, jumped.json()["code"]) == (403, "step_up_required")
    assert "POST /api/v1/auth/mfa/step-up" in jumped.json()["detail"]
    proof = h.client.post(
        "/api/v1/auth/mfa/step-up",
        json={"code": h.backup_codes[name][0]},
        headers={**h.bearer(token), "X-Forwarded-For": SYDNEY},
    )
    assert proof.status_code == 200, proof.text
    assert _get(h, "/api/v1/services", token, SYDNEY).status_code == 200


def test_revoke_by_configuration_signs_the_session_out(proxied: Callable[..., Harness]) -> None:
    h = proxied(zerotrust={"session_country_change": "revoke"})
    name, password = h.create_user("pia")
    token = _sign_in(h, name, password, PARIS)["access_token"]
    jumped = _get(h, "/api/v1/services", token, SYDNEY)
    assert jumped.status_code == 401
    assert _get(h, ME, token, PARIS).status_code == 401  # revoked for good
    [revoked] = [e for e in events(h, "session_revoke") if e.target == name]
    assert "FR" in revoked.details and "AU" in revoked.details


def test_a_headless_browser_on_the_api_is_scored_once_per_session_and_address(
    proxied: Callable[..., Harness],
) -> None:
    h = proxied()
    name, password = h.create_user("quentin")
    token = _sign_in(h, name, password, BERLIN)["access_token"]
    for _ in range(3):
        answer = _get(h, "/api/v1/services", token, BERLIN, **{"User-Agent": HEADLESS})
        assert answer.status_code == 200
    scored = [e for e in events(h, "zero_trust_decision") if '"purpose": "request"' in e.details]
    assert len(scored) == 1, [e.details for e in scored]  # kept: weighed once, not three times
    assert '"user_agent": 40.0' in scored[0].details and scored[0].outcome == "success"


def test_admin_routes_use_the_stricter_profile(proxied: Callable[..., Harness]) -> None:
    h = proxied()
    name, password = h.create_user("root", Role.ADMIN)
    browser = {"X-Forwarded-For": BERLIN, "User-Agent": HEADLESS}
    first = h.client.post("/api/v1/auth/login", json={"username": name, "password": password},
                          headers=browser)  # fmt: skip
    h.enrol_mfa(name, first.json()["access_token"])  # the role must use MFA
    challenge = h.client.post("/api/v1/auth/login", json={"username": name, "password": password},
                              headers=browser).json()  # fmt: skip
    token = h.client.post(
        "/api/v1/auth/mfa/verify",
        json={"challenge_token": challenge["challenge_token"], "code": h.totp_code(name)},
        headers=browser,
    ).json()["access_token"]
    # A headless browser (40) is below the request profile's step-up (60), above the admin
    # profile's (30): where it signed in with its code, that code answers the admin step-up.
    assert _get(h, "/api/v1/services", token, BERLIN, **{"User-Agent": HEADLESS}).status_code == 200
    assert (
        _get(h, "/api/v1/admin/security/mfa", token, BERLIN, **{"User-Agent": HEADLESS}).status_code
        == 200
    )
    decisions = [e.details for e in events(h, "zero_trust_decision") if e.ip == BERLIN]
    assert any('"purpose": "admin"' in d and '"decision": "step_up"' in d for d in decisions)
    assert any('"purpose": "request"' in d and '"decision": "allow"' in d for d in decisions)
    # From another address (same country), the admin route asks for a fresh code; the
    # operator's route does not.
    elsewhere = "85.214.132.118"
    assert (
        _get(h, "/api/v1/services", token, elsewhere, **{"User-Agent": HEADLESS}).status_code == 200
    )
    users = _get(h, "/api/v1/admin/security/mfa", token, elsewhere, **{"User-Agent": HEADLESS})
    assert (users.status_code, users.json()["code"]) == (403, "step_up_required")


def test_disabled_requests_are_not_weighed(proxied: Callable[..., Harness]) -> None:
    h = proxied(zerotrust={"enabled": False})
    name, password = h.create_user("rita")
    token = _sign_in(h, name, password, PARIS)["access_token"]
    assert _get(h, "/api/v1/services", token, SYDNEY, **{"User-Agent": HEADLESS}).status_code == 200
    assert events(h, "zero_trust_decision") == []


@pytest.mark.security
def test_a_grant_is_weighed_by_the_stricter_grant_role_profile(
    proxied: Callable[..., Harness],
) -> None:
    """A headless browser (40) passes the admin profile where it signed in, and is refused a
    role change by a `grant_role` profile that denies at 35, even with a fresh code."""
    h = proxied(zerotrust={"profiles": {"grant_role": {"step_up_at": 20, "deny_at": 35}}})
    browser = {"X-Forwarded-For": BERLIN, "User-Agent": HEADLESS}
    h.client.headers.update(browser)
    name, password = h.create_user("root", Role.ADMIN)
    token = h.login(name, password)["access_token"]
    other, _ = h.create_user("vic", Role.VIEWER)
    token = h.login(name, password)["access_token"]  # signed in again, with the code
    users = h.client.get("/api/v1/users", headers=h.bearer(token))
    assert users.status_code == 200, users.text
    vic = next(u for u in users.json() if u["username"] == other)
    code = {"code": h.backup_codes[name][0]}
    assert h.client.post("/api/v1/auth/mfa/step-up", json=code, headers=h.bearer(token)).is_success
    # Not a grant: the email of the same user changes.
    email = {"email": "vic@example.org"}
    changed = h.client.patch(f"/api/v1/users/{vic['id']}", json=email, headers=h.bearer(token))
    assert changed.status_code == 200, changed.text
    for grant in ({"role": "operator"}, {"role": "admin"}):
        refused = h.client.patch(f"/api/v1/users/{vic['id']}", json=grant, headers=h.bearer(token))
        assert (refused.status_code, refused.json()["code"]) == (403, "zero_trust_denied")
    created = h.client.post(
        "/api/v1/users",
        json={"username": "newroot", "password": strong_password(), "role": "admin"},
        headers=h.bearer(token),
    )
    assert (created.status_code, created.json()["code"]) == (403, "zero_trust_denied")
    assert {
        u["username"]: u["role"]
        for u in h.client.get("/api/v1/users", headers=h.bearer(token)).json()
    }[other] == "viewer"
    [denied] = [
        e for e in events(h, "zero_trust_decision") if '"purpose": "grant_role"' in e.details
    ]
    assert denied.outcome == "denied" and '"user_agent": 40.0' in denied.details
    assert f"reference {denied.request_id}" in refused.json()["detail"]


@pytest.mark.security
def test_a_stepped_up_page_asks_for_a_code_then_shows_the_page(
    proxied: Callable[..., Harness],
) -> None:
    """A browser signed in with its code in Paris opens the services page from Sydney: it is
    sent to the code page, a wrong code and another origin's post are refused, a backup code
    brings it back to the page. A script's poll is refused meanwhile, never redirected."""
    h = proxied()
    name, password = with_mfa(h, "tess", Role.VIEWER)
    browser = TestClient(h.app, base_url=HERE, client=(PROXY, 50000), follow_redirects=False)
    browser.headers["X-Forwarded-For"] = PARIS
    step = password_step(browser, name, password, "/services")
    signed = code_step(browser, hidden(step.text, "challenge"), h.totp_code(name), "/services")
    assert signed.status_code == 303, signed.text
    page = {"Accept": "text/html"}
    assert browser.get("/services", headers=page).status_code == 200
    browser.headers["X-Forwarded-For"] = SYDNEY
    sent = browser.get("/services", params={"q": "wiki"}, headers=page)
    assert sent.status_code == 303
    assert sent.headers["location"] == "/mfa/step-up?next=%2Fservices%3Fq%3Dwiki"
    poll = browser.get("/services/live", headers={"Accept": "*/*"})
    assert poll.status_code == 403
    asked = browser.get(sent.headers["location"])
    assert asked.status_code == 200 and "Confirm it is you" in asked.text
    csrf = hidden(asked.text, "csrf_token")
    action = "/mfa/step-up?next=%2Fservices%3Fq%3Dwiki"
    wrong = browser.post(action, data={"csrf_token": csrf, "code": "000000"}, headers=SAME_ORIGIN)
    assert wrong.status_code == 400 and "not accepted" in wrong.text
    forged = browser.post(action, data={"code": h.backup_codes[name][0]},
                          headers={"Origin": "https://evil.test"})  # fmt: skip
    assert forged.status_code == 403
    assert browser.get("/services", headers=page).status_code == 303  # still asked
    given = browser.post(action, data={"csrf_token": csrf, "code": h.backup_codes[name][0]},
                         headers=SAME_ORIGIN)  # fmt: skip
    assert (given.status_code, given.headers["location"]) == (303, "/services?q=wiki")
    assert browser.get("/services", headers=page).status_code == 200
    assert [e.ip for e in events(h, "mfa_step_up")] == [SYDNEY]
    # An open redirect is not one: `next` stays on this host.
    away = browser.post("/mfa/step-up?next=https%3A%2F%2Fevil.test%2F",
                        data={"csrf_token": csrf, "code": h.backup_codes[name][1]},
                        headers=SAME_ORIGIN)  # fmt: skip
    assert away.status_code == 303 and away.headers["location"].startswith("/")
