"""Changing one's password on the Account page: the policy's reasons next to the field (all of
them, escaped), a wrong current password spending the same login budget as the API, and on
success the other sessions ended and the old password refused, as through the API."""

from __future__ import annotations

import json

import pytest

from conftest import Harness, strong_password
from support.account import PHONE, field_errors, page, post, signed_in, signed_out
from support.clocked import clock, h  # noqa: F401 - fixtures
from support.pages import events

PASSWORD = "/account/password"


def api_login(h: Harness, name: str, password: str) -> int:
    reply = h.client.post("/api/v1/auth/login", json={"username": name, "password": password})
    return int(reply.status_code)


def test_a_weak_password_is_refused_with_every_reason_next_to_the_field(h: Harness) -> None:
    name, password = h.create_user("nora")
    browser = signed_in(h, name, password, 50200)
    reply = post(browser, PASSWORD, current_password=password, new_password="nora1")
    assert reply.status_code == 400
    assert field_errors(reply.text, "new-password") == [
        "Password must be at least 12 characters long.",
        "Password contains the username, email or product name.",
    ]
    assert 'aria-describedby="new-password-hint new-password-error" aria-invalid="true"' in (
        reply.text
    )
    assert field_errors(reply.text, "current-password") == []
    assert 'Nothing was changed: <a href="#password-title">see what to fix</a>' in reply.text
    assert events(h, "password_change") == []
    assert api_login(h, name, password) == 200


def test_nothing_typed_is_echoed(h: Harness) -> None:
    name, password = h.create_user("omar")
    browser = signed_in(h, name, password, 50201)
    markup = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    reply = post(browser, PASSWORD, current_password=markup, new_password=markup)
    assert reply.status_code == 400
    assert "<script>alert(1)" not in reply.text and "onerror=alert(2)>" not in reply.text
    assert markup not in reply.text
    assert field_errors(reply.text, "current-password") == ["That is not your current password."]


def test_empty_fields_are_named(h: Harness) -> None:
    name, password = h.create_user("pia")
    browser = signed_in(h, name, password, 50202)
    reply = post(browser, PASSWORD, current_password="", new_password="")
    assert reply.status_code == 400
    assert field_errors(reply.text, "current-password") == ["Enter your current password."]
    assert field_errors(reply.text, "new-password") == ["Enter a new password."]


@pytest.mark.security
def test_wrong_current_passwords_spend_the_login_budget(h: Harness) -> None:
    """Five wrong guesses (the login's per-username limit) lock the account's sign-in too: the
    page is no way around the API's brute-force limit."""
    name, password = h.create_user("quin")
    browser = signed_in(h, name, password, 50203)
    statuses = []
    for _ in range(6):
        reply = post(
            browser,
            PASSWORD,
            current_password="not-it-" + strong_password(),
            new_password=strong_password(),
        )
        statuses.append(reply.status_code)
    assert statuses == [400] * 5 + [429]
    assert "Too many attempts" in reply.text
    assert int(reply.headers["retry-after"]) > 0
    failed = [json.loads(e.details) for e in events(h, "password_change")]
    assert failed == [{"reason": "wrong current password"}] * 5
    assert len(events(h, "rate_limit_hit")) == 1
    # The right password is refused now too, here and at sign-in.
    right = post(browser, PASSWORD, current_password=password, new_password=strong_password())
    assert right.status_code == 429
    assert api_login(h, name, password) == 429


def test_a_good_password_ends_the_other_sessions_and_replaces_the_old_one(h: Harness) -> None:
    name, password = h.create_user("rosa")
    laptop = signed_in(h, name, password, 50204)
    phone = signed_in(h, name, password, 50205, agent=PHONE)
    new = strong_password()
    reply = post(laptop, PASSWORD, current_password=password, new_password=new)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/account?done=password-changed"
    assert "Your other sessions were signed out." in laptop.get(reply.headers["location"]).text
    assert signed_out(phone)
    assert "This session" in page(laptop)  # this one stays
    [changed] = events(h, "password_change")
    assert changed.actor == "rosa" and json.loads(changed.details) == {"sessions_revoked": 1}
    assert api_login(h, name, password) == 401
    assert api_login(h, name, new) == 200
