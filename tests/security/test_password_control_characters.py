"""Control characters in passwords: refused wherever a password is set, with the standard 400
detail and its reason; a login carrying one simply fails like any wrong password."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Harness, strong_password
from support.server import run_cli
from wakedock.auth.policy import POLICY_MESSAGE, password_problems
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security

REASON = "must not contain control characters"
# NUL, tab, LF, CR, ESC, DEL, and NEL from the C1 range: each one is category Cc.
CONTROLS = ["\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85"]


def with_control(char: str) -> str:
    # Strong on every other count, so the control character is the one reason.
    return "Wd-" + "q8Zt" + char + "Lm3v-Yr7p-Hx2k"


def refused(response_status: int, body: dict[str, object]) -> bool:
    detail = str(body.get("detail", ""))
    return response_status == 400 and detail.startswith(POLICY_MESSAGE) and REASON in detail


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_an_admin_cannot_create_a_user_with_a_control_character(
    harness: Harness, admin_token: str, char: str
) -> None:
    reply = harness.client.post(
        "/api/v1/users",
        json={"username": "ctl-user", "password": with_control(char), "role": "viewer"},
        headers=harness.bearer(admin_token),
    )
    assert refused(reply.status_code, reply.json()), reply.text
    assert REASON in " ".join(reply.json()["reasons"])
    listed = harness.client.get("/api/v1/users", headers=harness.bearer(admin_token)).json()
    assert "ctl-user" not in [u["username"] for u in listed]


def test_every_other_way_of_setting_a_password_refuses_nul(
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(auth={"registration_enabled": True})
    bad = with_control("\x00")
    # The one-time setup token (first admin): refused, and the token stays usable.
    token, _ = h.components.setup.issue()
    setup = h.client.post(
        "/api/v1/auth/setup", json={"token": token, "username": "first", "password": bad}
    )
    assert refused(setup.status_code, setup.json()), setup.text
    good = strong_password()
    first = h.client.post(
        "/api/v1/auth/setup", json={"token": token, "username": "first", "password": good}
    )
    assert first.status_code == 201
    # Self-registration.
    registered = h.client.post("/api/v1/auth/register", json={"username": "self", "password": bad})
    assert refused(registered.status_code, registered.json()), registered.text
    # One's own password change: the old password keeps working.
    name, password = h.create_user("carol", Role.DEVELOPER)
    carol = h.login(name, password)["access_token"]
    changed = h.client.post(
        "/api/v1/auth/password",
        json={"current_password": password, "new_password": bad},
        headers=h.bearer(carol),
    )
    assert refused(changed.status_code, changed.json()), changed.text
    assert h.login(name, password)["user"]["username"] == "carol"
    # An admin's reset of someone else's password.
    admin = h.login("first", good)["access_token"]
    carol_id = h.client.get("/api/v1/auth/me", headers=h.bearer(carol)).json()["id"]
    reset = h.client.patch(
        f"/api/v1/users/{carol_id}", json={"password": bad}, headers=h.bearer(admin)
    )
    assert refused(reset.status_code, reset.json()), reset.text
    assert h.login(name, password)["user"]["username"] == "carol"


def test_the_cli_refuses_a_password_with_a_control_character(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run_cli(
        data, "user", "create", "dora", "--role", "viewer", "--password-stdin",
        stdin=with_control("\x1b") + "\n",
    )  # fmt: skip
    assert created.returncode == 1
    assert POLICY_MESSAGE in created.stderr and REASON in created.stderr
    assert "dora" not in run_cli(data, "user", "list").stdout


def test_a_login_with_a_control_character_simply_fails(harness: Harness) -> None:
    name, password = harness.create_user("erin")
    for attempt in (password + "\x00", password[:5] + "\x00" + password[5:], "\x00"):
        reply = harness.client.post(
            "/api/v1/auth/login", json={"username": name, "password": attempt}
        )
        # The same generic answer as any wrong password: nothing tells a policy rule apart.
        assert reply.status_code == 401, reply.text
        assert POLICY_MESSAGE not in reply.text


def test_format_characters_stay_allowed() -> None:
    # Zero-width joiner (emoji sequences) and zero-width non-joiner (Persian, Hindi): category Cf.
    assert password_problems("Wd-q8Zt\u200dLm3v-Yr7p-Hx2k", min_length=12, min_score=3) == []
    assert password_problems("Wd-q8Zt\u200cLm3v-Yr7p-Hx2k", min_length=12, min_score=3) == []
    # A lone surrogate is no character at all (it cannot even be encoded to be hashed).
    assert any(REASON in p for p in password_problems("Wd-q8Zt\ud800Lm3v-Yr7p-Hx2k",
                                                      min_length=12, min_score=3))  # fmt: skip
