"""Two-step verification on the Account page: its status, new backup codes and turning it off,
each needing a fresh code from the app (a code already used is refused: the MFA service's replay
protection), under the MFA budget and audited as through the API."""

from __future__ import annotations

import re

import pytest

from conftest import Harness
from support.account import field_errors, page, post, signed_in
from support.clocked import clock, h  # noqa: F401 - fixtures
from support.pages import code_step, events, hidden, page_client, password_step, with_mfa
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role

BACKUP = "/account/mfa/backup-codes"
DISABLE = "/account/mfa/disable"


def shown_codes(html: str) -> list[str]:
    return re.findall(r"<li><code>([A-Z2-9]{4}-[A-Z2-9]{4})</code></li>", html)


def fresh_code(h: Harness, clock: FakeClock, name: str) -> str:
    """The code of a step no code was spent for yet (the clock moves on a step first)."""
    clock.advance(30)
    return h.totp_code(name)


def backup_sign_in_works(h: Harness, name: str, password: str, code: str, port: int) -> bool:
    browser = page_client(h, port)
    challenge = hidden(password_step(browser, name, password).text, "challenge")
    return bool(code_step(browser, challenge, code).status_code == 303)


def test_without_mfa_the_page_links_to_enrolment(h: Harness) -> None:
    name, password = h.create_user("sam")
    html = page(signed_in(h, name, password, 50300))
    assert "Off" in html
    assert 'href="/mfa/enrol?next=%2Faccount"' in html
    assert BACKUP not in html and DISABLE not in html


def test_new_backup_codes_need_a_fresh_code_and_replace_the_old_ones(
    h: Harness, clock: FakeClock
) -> None:
    name, password = with_mfa(h, "tess")
    old = h.backup_codes[name]
    browser = signed_in(h, name, password, 50301)
    assert 'Unused backup codes: <strong id="backup-codes-left">10</strong>' in page(browser)

    code = fresh_code(h, clock, name)
    reply = post(browser, BACKUP, code=code)
    assert reply.status_code == 200
    assert reply.headers["cache-control"] == "no-store"
    assert "shown only this once" in reply.text
    new = shown_codes(reply.text)
    assert len(new) == 10 and not set(new) & set(old)
    assert len(events(h, "mfa_backup_codes_regenerated")) == 1

    # The same code again: a replay, refused next to the field, nothing regenerated.
    again = post(browser, BACKUP, code=code)
    assert again.status_code == 400
    assert field_errors(again.text, "backup-code") == [
        "That code is not valid or was already used. Enter the next code of your app."
    ]
    assert shown_codes(again.text) == []
    assert len(events(h, "mfa_backup_codes_regenerated")) == 1
    assert len(events(h, "mfa_failure")) == 1

    assert not backup_sign_in_works(h, name, password, old[0], 50302)
    assert backup_sign_in_works(h, name, password, new[0], 50303)


def test_a_backup_code_cannot_buy_new_backup_codes(h: Harness) -> None:
    name, password = with_mfa(h, "uma")
    browser = signed_in(h, name, password, 50304)
    reply = post(browser, BACKUP, code=h.backup_codes[name][0])
    assert reply.status_code == 400
    assert events(h, "mfa_backup_codes_regenerated") == []


@pytest.mark.security
def test_wrong_codes_are_rate_limited_as_through_the_api(h: Harness) -> None:
    name, password = with_mfa(h, "vic")
    browser = signed_in(h, name, password, 50305)
    replies = [post(browser, BACKUP, code="000000") for _ in range(6)]
    assert [reply.status_code for reply in replies] == [400] * 5 + [429]
    assert "Too many attempts" in replies[-1].text
    assert int(replies[-1].headers["retry-after"]) > 0
    assert len(events(h, "rate_limit_hit")) == 1
    assert events(h, "mfa_backup_codes_regenerated") == []


def test_turning_mfa_off_needs_the_password_and_a_fresh_code(h: Harness, clock: FakeClock) -> None:
    name, password = with_mfa(h, "walt")
    browser = signed_in(h, name, password, 50306)
    assert "Turn off two-step verification" in page(browser)

    wrong = post(browser, DISABLE, password="not-" + password, code=fresh_code(h, clock, name))
    assert wrong.status_code == 400
    assert "The password or the code was not accepted" in wrong.text
    empty = post(browser, DISABLE, password="", code="")
    assert field_errors(empty.text, "disable-password") == ["Enter your password."]
    assert field_errors(empty.text, "disable-code") == ["Enter the code your app shows now."]

    reply = post(browser, DISABLE, password=password, code=fresh_code(h, clock, name))
    assert reply.status_code == 303
    assert reply.headers["location"] == "/account?done=mfa-disabled"
    shown = browser.get(reply.headers["location"]).text
    assert "Two-step verification is off." in shown
    assert 'href="/mfa/enrol?next=%2Faccount"' in shown
    assert len(events(h, "mfa_disable")) == 1
    # Signing in takes the password only now.
    assert password_step(page_client(h, 50307), name, password).status_code == 303


def test_a_role_that_must_use_mfa_cannot_turn_it_off(h: Harness, clock: FakeClock) -> None:
    name, password = with_mfa(h, "xena", Role.ADMIN)
    browser = signed_in(h, name, password, 50308)
    html = page(browser)
    assert "Your role (admin) must use two-step verification" in html
    assert DISABLE not in html
    forged = post(browser, DISABLE, password=password, code=fresh_code(h, clock, name))
    assert forged.status_code == 409
    assert "cannot be turned off" in forged.text
    assert events(h, "mfa_disable") == []
