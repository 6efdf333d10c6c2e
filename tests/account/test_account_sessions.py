"""The Account page's sessions: mine listed (this one marked), one or all others revoked with
the API's audit event, someone else's never, and no change without this origin and the token."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.account import (
    ACCOUNT,
    PHONE,
    page,
    post,
    session_ids,
    signed_in,
    signed_out,
)
from support.clocked import clock, h  # noqa: F401 - fixtures
from support.pages import HERE, SAME_ORIGIN, events, hidden, page_client, with_mfa
from wakedock.rbac.permissions import Role

REVOKE = "/account/sessions/revoke"
OTHERS = "/account/sessions/revoke-others"


def test_without_a_session_the_page_sends_to_sign_in(h: Harness) -> None:
    reply = page_client(h, 50100).get(ACCOUNT)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/login?next=" + quote(ACCOUNT, safe="")


def test_an_admin_without_mfa_is_sent_to_enrol_first(h: Harness) -> None:
    name, password = h.create_user("ada", Role.ADMIN)
    browser = page_client(h, 50101)
    password_step_reply = browser.post(
        "/login",
        data={"username": name, "password": password, "next": ACCOUNT},
        headers=SAME_ORIGIN,
    )
    assert password_step_reply.status_code == 303
    reply = browser.get(ACCOUNT)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/mfa/enrol?next=" + quote(ACCOUNT, safe="")


def test_the_page_lists_my_sessions_and_marks_this_one(h: Harness) -> None:
    name, password = h.create_user("bea")
    laptop = signed_in(h, name, password, 50102)
    signed_in(h, name, password, 50103, agent=PHONE)
    other_name, other_password = h.create_user("carl")
    signed_in(h, other_name, other_password, 50104, agent="curl/8.5.0")

    html = page(laptop)
    assert "Signed in as <strong>bea</strong> (viewer)" in html
    assert "Firefox 128 on Linux" in html and "Safari 17 on iOS" in html
    assert "curl 8.5.0" not in html  # carl's session is not bea's business
    assert html.count("This session") == 1
    assert html.index("Firefox 128 on Linux") < html.index("This session")
    assert html.index("This session") < html.index("Safari 17 on iOS")
    assert "203.0.113.10" in html
    assert len(session_ids(html)) == 1  # the phone's; this one is not offered
    assert "<script" not in html and "style=" not in html
    shown = laptop.get(ACCOUNT)
    assert shown.headers["cache-control"] == "no-store"  # it carries the CSRF token
    assert "script-src 'self';" in shown.headers["content-security-policy"]
    assert "unsafe-inline" not in shown.headers["content-security-policy"]


def test_revoking_my_other_session_signs_it_out_at_once(h: Harness) -> None:
    name, password = h.create_user("dana")
    laptop = signed_in(h, name, password, 50105)
    phone = signed_in(h, name, password, 50106, agent=PHONE)
    assert not signed_out(phone)
    [phone_session] = session_ids(page(laptop))

    reply = post(laptop, REVOKE, session=phone_session)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/account?done=session-revoked"
    assert signed_out(phone)
    shown = laptop.get(reply.headers["location"]).text
    assert "The session was signed out." in shown
    assert "Safari 17 on iOS" not in shown
    [revoked] = events(h, "session_revoke")
    assert revoked.actor == "dana" and revoked.target == "dana"
    assert json.loads(revoked.details)["session"] == phone_session


def test_signing_out_all_others_keeps_this_one(h: Harness) -> None:
    name, password = h.create_user("eve")
    laptop = signed_in(h, name, password, 50107)
    others = [signed_in(h, name, password, 50108 + i, agent=PHONE) for i in range(2)]
    assert "Sign out all other sessions" in page(laptop)

    reply = post(laptop, OTHERS)
    assert reply.status_code == 303
    assert all(signed_out(other) for other in others)
    shown = laptop.get(reply.headers["location"]).text
    assert "Your other sessions were signed out." in shown
    assert session_ids(shown) == []
    assert "Sign out all other sessions" not in shown
    [revoked] = events(h, "session_revoke")
    assert json.loads(revoked.details) == {"scope": "others", "sessions_revoked": 2}


def test_revoking_this_session_signs_me_out(h: Harness) -> None:
    name, password = h.create_user("finn")
    laptop = signed_in(h, name, password, 50110)
    with h.components.db() as db:
        [mine] = h.components.sessions.list_live(db, None)
    reply = post(laptop, REVOKE, session=mine.id)
    assert reply.status_code == 303 and reply.headers["location"] == "/login"
    assert signed_out(laptop)


def test_the_notice_comes_from_a_fixed_list(h: Harness) -> None:
    name, password = h.create_user("gus")
    laptop = signed_in(h, name, password, 50111)
    reply = laptop.get(ACCOUNT, params={"done": "<script>alert(1)</script>"})
    assert reply.status_code == 200
    assert "<script" not in reply.text and "alert(1)" not in reply.text
    assert 'role="status"' not in reply.text


# -- attacks ---------------------------------------------------------------------------------
FORMS = [
    (REVOKE, {"session": "x"}),
    (OTHERS, {}),
    ("/account/password", {"current_password": "x", "new_password": "y"}),
    ("/account/mfa/backup-codes", {"code": "123456"}),
    ("/account/mfa/disable", {"password": "x", "code": "123456"}),
]


@pytest.mark.security
@pytest.mark.parametrize(("path", "fields"), FORMS, ids=[path for path, _ in FORMS])
@pytest.mark.parametrize(
    ("token", "headers"),
    [
        ("", SAME_ORIGIN),
        ("forged", SAME_ORIGIN),
        (None, {"Origin": "https://evil.example"}),
        (None, {"Origin": HERE, "Sec-Fetch-Site": "cross-site"}),
    ],
    ids=["no token", "forged token", "foreign origin", "cross-site"],
)
def test_a_forged_post_changes_nothing(
    h: Harness, path: str, fields: dict[str, str], token: str | None, headers: dict[str, str]
) -> None:
    name, password = h.create_user("hana")
    victim = signed_in(h, name, password, 50112)
    phone = signed_in(h, name, password, 50113, agent=PHONE)
    real = hidden(page(victim), "csrf_token")
    if path == REVOKE:
        fields = {"session": session_ids(page(victim))[0]}
    before = len(events(h, "password_change")), len(events(h, "mfa_disable"))

    reply = victim.post(
        path, data={"csrf_token": real if token is None else token, **fields}, headers=headers
    )
    assert reply.status_code == 403
    assert "Request refused" in reply.text
    [failure] = events(h, "csrf_failure")
    assert failure.actor == "hana" and failure.target == path
    assert not signed_out(phone)
    assert (len(events(h, "password_change")), len(events(h, "mfa_disable"))) == before
    assert events(h, "session_revoke") == []
    assert events(h, "mfa_backup_codes_regenerated") == []


@pytest.mark.security
@pytest.mark.parametrize("attacker_role", [Role.VIEWER, Role.ADMIN])
def test_nobody_revokes_someone_elses_session_from_this_page(
    h: Harness, attacker_role: Role
) -> None:
    """The attacker's own session and CSRF token, the victim's session id (the API shows ids to
    admins): refused as if the session did not exist, even for an admin (the page is about one's
    own sessions; the admin API is audited separately)."""
    victim_name, victim_password = h.create_user("ivy")
    victim = signed_in(h, victim_name, victim_password, 50114)
    with h.components.db() as db:
        [victim_session] = h.components.sessions.list_live(db, None)
    if attacker_role is Role.ADMIN:
        name, password = with_mfa(h, "mal", Role.ADMIN)
    else:
        name, password = h.create_user("mal", attacker_role)
    attacker = signed_in(h, name, password, 50115)

    reply = post(attacker, REVOKE, session=victim_session.id)
    assert reply.status_code == 404
    assert "That session has already ended." in reply.text
    assert not signed_out(victim)
    assert events(h, "session_revoke") == []


@pytest.mark.security
def test_signing_out_all_others_touches_only_my_sessions(h: Harness) -> None:
    victim_name, victim_password = h.create_user("jo")
    victim = signed_in(h, victim_name, victim_password, 50116)
    name, password = h.create_user("kim")
    attacker = signed_in(h, name, password, 50117)
    assert post(attacker, OTHERS).status_code == 303
    assert not signed_out(victim)


def test_a_session_revoked_through_the_api_leaves_the_page(h: Harness) -> None:
    name, password = h.create_user("lou")
    laptop = signed_in(h, name, password, 50118)
    token = h.login(name, password)["access_token"]
    api = TestClient(h.app, base_url=HERE)
    for row in api.get("/api/v1/auth/sessions", headers=h.bearer(token)).json():
        if not row["current"]:
            api.delete(f"/api/v1/auth/sessions/{row['id']}", headers=h.bearer(token))
    assert signed_out(laptop)
