"""`/admin/sessions` in process: everyone's live sessions with the user agent read as browser
and system, revoking one or all of a user's (that browser is then sent to sign in), audited as
the API's `DELETE /api/v1/auth/sessions/{id}`; CSRF, other roles and hostile agents refused or
escaped."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from sqlalchemy import select

from conftest import CLIENT_IP, Harness
from support.pages import code_step, events, hidden, page_client, password_step, with_mfa
from wakedock.auth.models import User, UserSession
from wakedock.console.sessions import PAGE_SIZE
from wakedock.db import transaction
from wakedock.rbac.permissions import Role

from .conftest import Console, SignIn

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
FORM = {"Origin": "https://testserver"}


def api_login(h: Harness, name: str, password: str, agent: str) -> dict[str, Any]:
    """A session opened through the login API by a client sending `agent`."""
    answer = h.client.post(
        "/api/v1/auth/login",
        json={"username": name, "password": password},
        headers={"User-Agent": agent},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def session_ids(h: Harness, username: str) -> list[str]:
    """The user's sessions still live (not revoked), oldest first."""
    with transaction(h.components.db) as db:
        query = (
            select(UserSession.id)
            .join(User)
            .where(User.username == username, UserSession.revoked.is_(False))
            .order_by(UserSession.created_at)
        )
        return list(db.scalars(query))


def revoke(admin: Console, session_id: str, **extra: str) -> Any:
    data = {"csrf_token": admin.csrf, "session": session_id, **extra}
    return admin.browser.post("/admin/sessions/revoke", data=data, headers=FORM)


def revoke_all(admin: Console, username: str) -> Any:
    data = {"csrf_token": admin.csrf, "username": username}
    return admin.browser.post("/admin/sessions/revoke-user", data=data, headers=FORM)


def row_of(page: str, session_id: str) -> str:
    """The table row whose revoke form names `session_id`."""
    for row in re.findall(r"<tr.*?</tr>", page, re.S):
        if f'name="session" value="{session_id}"' in row:
            return str(row)
    raise AssertionError(f"no row for session {session_id}")


def test_the_list_shows_everyones_sessions_with_browser_and_system(
    signed_in: SignIn, h: Harness
) -> None:
    admin = signed_in(Role.ADMIN)
    alice, alice_pw = h.create_user("alice", Role.DEVELOPER)
    bob, bob_pw = h.create_user("bob", Role.VIEWER)
    api_login(h, alice, alice_pw, FIREFOX)
    api_login(h, bob, bob_pw, IPHONE)

    page = admin.browser.get("/admin/sessions")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    firefox = row_of(page.text, session_ids(h, "alice")[0])
    assert ">alice</a>" in firefox and "Firefox 128.0" in firefox and "Windows 10" in firefox
    assert CLIENT_IP in firefox
    iphone = row_of(page.text, session_ids(h, "bob")[0])
    assert ">bob</a>" in iphone and "Mobile Safari 17.5" in iphone and "iOS 17.5" in iphone
    mine = row_of(page.text, session_ids(h, admin.username)[-1])
    assert "This session" in mine and "signs you out" in mine
    # No GeoIP database configured: no country column at all.
    assert ">Country<" not in page.text

    only_bob = admin.browser.get("/admin/sessions", params={"user": "BOB"})
    assert "Mobile Safari" in only_bob.text and "Firefox" not in only_bob.text
    assert (
        'action="/admin/sessions/revoke-user" class="console-sessions-revoke-all"' in only_bob.text
    )


def test_the_list_is_paged(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    name, _ = h.create_user("many", Role.VIEWER)
    with transaction(h.components.db) as db:
        user = db.execute(select(User).where(User.username == name)).scalar_one()
        for n in range(PAGE_SIZE + 5):
            h.components.sessions.create(db, user, ip="198.51.100.7", user_agent=f"tool/{n}")
    first = admin.browser.get("/admin/sessions", params={"user": "many"})
    assert first.text.count('name="session"') == PAGE_SIZE
    assert "Page 1 of 2" in first.text and 'rel="next"' in first.text
    second = admin.browser.get("/admin/sessions", params={"user": "many", "page": 2})
    assert second.text.count('name="session"') == 5
    assert "Page 2 of 2" in second.text


def test_revoking_one_session_sends_that_browser_to_sign_in(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    victim = signed_in(Role.DEVELOPER)
    assert victim.browser.get("/services").status_code == 200
    sid = session_ids(h, victim.username)[0]

    done = revoke(admin, sid)
    assert done.status_code == 303
    assert done.headers["location"] == "/admin/sessions?done=revoked"
    assert "The session was revoked" in admin.browser.get(done.headers["location"]).text

    refused = victim.browser.get("/services")
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    assert session_ids(h, victim.username) == []
    assert admin.browser.get("/admin/sessions").status_code == 200  # the admin's goes on


def test_revoking_all_of_a_users_sessions_ends_browser_and_api_alike(
    signed_in: SignIn, h: Harness
) -> None:
    admin = signed_in(Role.ADMIN)
    victim = signed_in(Role.OPERATOR)
    bystander = signed_in(Role.VIEWER)
    assert len(session_ids(h, victim.username)) == 1

    done = revoke_all(admin, victim.username)
    assert done.headers["location"] == "/admin/sessions?done=user-revoked"
    assert session_ids(h, victim.username) == []
    assert victim.browser.get("/services").headers["location"].startswith("/login")
    assert bystander.browser.get("/services").status_code == 200
    again = revoke_all(admin, victim.username)
    assert again.headers["location"] == "/admin/sessions?done=none"


def test_revoking_all_ends_api_sessions_too(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    name, password = h.create_user("carol", Role.DEVELOPER)
    tokens = [api_login(h, name, password, FIREFOX)["access_token"] for _ in range(2)]
    for token in tokens:
        assert h.client.get("/api/v1/auth/sessions", headers=h.bearer(token)).status_code == 200

    revoke_all(admin, name)
    for token in tokens:
        assert h.client.get("/api/v1/auth/sessions", headers=h.bearer(token)).status_code == 401
    assert len(events(h, "session_revoke")) == 2  # one per session, as two DELETEs would


def _shape(event: Any) -> tuple[Any, ...]:
    return (event.type, event.outcome, event.severity, event.target, sorted(details(event)))


def details(event: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(event.details)
    return found


def test_audited_exactly_as_the_api(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    name, password = h.create_user("dave", Role.DEVELOPER)
    for _ in range(2):
        api_login(h, name, password, FIREFOX)
    first, second = session_ids(h, name)
    admin_token = h.login(*with_mfa(h, "api-admin", Role.ADMIN))["access_token"]
    api = h.client.delete(f"/api/v1/auth/sessions/{first}", headers=h.bearer(admin_token))
    assert api.status_code == 204, api.text
    assert revoke(admin, second).status_code == 303

    through_api, through_console = events(h, "session_revoke")
    assert _shape(through_api) == _shape(through_console)
    assert details(through_api) == {"session": first}
    assert details(through_console) == {"session": second}
    assert (through_api.actor, through_console.actor) == ("api-admin", admin.username)


def test_revoking_my_own_session_signs_me_out(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    mine = session_ids(h, admin.username)[-1]
    done = revoke(admin, mine)
    assert done.status_code == 303 and done.headers["location"] == "/login"
    assert "wakedock_session=" in done.headers["set-cookie"]  # forgotten by the browser
    again = admin.browser.get("/admin/sessions")
    assert again.status_code == 303 and again.headers["location"].startswith("/login")


def test_an_ended_session_says_so(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    answer = revoke(admin, "no-such-session")
    assert answer.headers["location"] == "/admin/sessions?done=gone"
    assert "already ended" in admin.browser.get(answer.headers["location"]).text


def test_a_country_column_when_a_geoip_database_is_configured(
    tmp_path: Path, make_harness: Callable[..., Harness]
) -> None:
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country", languages=["en"])
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "FR"}})
    path = tmp_path / "country.mmdb"
    writer.to_db_file(str(path))
    h = make_harness(alerts={"geoip_database": str(path)})
    name, password = with_mfa(h, "geo-admin", Role.ADMIN)
    browser = page_client(h, 50700)
    step = password_step(browser, name, password, "/admin/sessions")
    code_step(browser, hidden(step.text, "challenge"), h.totp_code(name), "/admin/sessions")
    other, other_pw = h.create_user("erin", Role.VIEWER)
    api_login(h, other, other_pw, FIREFOX)
    with transaction(h.components.db) as db:
        user = db.execute(select(User).where(User.username == other)).scalar_one()
        h.components.sessions.create(db, user, ip="192.0.2.1", user_agent=FIREFOX)

    page = browser.get("/admin/sessions", params={"user": "erin"})
    assert page.status_code == 200, page.text
    assert '<th scope="col">Country</th>' in page.text
    assert '<td data-label="Country">FR</td>' in page.text  # CLIENT_IP is in 203.0.113.0/24
    assert '<td data-label="Country">—</td>' in page.text  # not in the database


@pytest.mark.security
def test_a_post_without_the_csrf_token_or_from_elsewhere_is_refused(
    signed_in: SignIn, h: Harness
) -> None:
    admin = signed_in(Role.ADMIN)
    victim = signed_in(Role.VIEWER)
    sid = session_ids(h, victim.username)[0]
    no_token = admin.browser.post("/admin/sessions/revoke", data={"session": sid}, headers=FORM)
    assert no_token.status_code == 403 and "Request refused" in no_token.text
    wrong = revoke(admin, sid, csrf_token="forged")
    assert wrong.status_code == 403
    elsewhere = admin.browser.post(
        "/admin/sessions/revoke-user",
        data={"csrf_token": admin.csrf, "username": victim.username},
        headers={"Origin": "https://evil.example"},
    )
    assert elsewhere.status_code == 403
    assert session_ids(h, victim.username) == [sid]
    assert victim.browser.get("/services").status_code == 200
    assert events(h, "session_revoke") == []


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
def test_other_roles_get_the_403_page(signed_in: SignIn, h: Harness, role: Role) -> None:
    browser = signed_in(role).browser
    refused = browser.get("/admin/sessions")
    assert refused.status_code == 403
    assert "Only administrators may open the admin console." in refused.text
    assert "session" not in refused.text.lower().replace("sessions", "")  # nothing listed


@pytest.mark.security
@pytest.mark.parametrize("role", [Role.OPERATOR, Role.DEVELOPER, Role.VIEWER])
def test_a_forged_post_by_a_non_admin_is_refused(signed_in: SignIn, h: Harness, role: Role) -> None:
    intruder = signed_in(role)
    victim = signed_in(Role.VIEWER)
    sid = session_ids(h, victim.username)[0]
    # The intruder's own valid token and this origin: only the role is wrong.
    for path, data in (
        ("/admin/sessions/revoke", {"session": sid}),
        ("/admin/sessions/revoke-user", {"username": victim.username}),
    ):
        forged = intruder.browser.post(
            path, data={"csrf_token": intruder.csrf, **data}, headers=FORM
        )
        assert forged.status_code == 403
        assert "Only administrators may open the admin console." in forged.text
    assert session_ids(h, victim.username) == [sid]
    assert events(h, "session_revoke") == []
    denied = events(h, "forbidden_access")
    assert denied and "console:read" in str(denied[-1].details)


@pytest.mark.security
def test_a_hostile_user_agent_is_escaped(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    name, password = h.create_user("mallory", Role.VIEWER)
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    api_login(h, name, password, hostile)
    page = admin.browser.get("/admin/sessions", params={"user": "mallory"})
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    row = row_of(page.text, session_ids(h, "mallory")[0])
    assert "Unknown" in row  # never a browser name made up from markup


def test_without_a_session_the_page_sends_to_sign_in(h: Harness) -> None:
    browser: TestClient = page_client(h, 50690)
    answer = browser.get("/admin/sessions")
    assert answer.status_code == 303
    assert "next=%2Fadmin%2Fsessions" in answer.headers["location"]
