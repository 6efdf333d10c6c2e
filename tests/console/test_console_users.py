"""`/admin/users`: the accounts and the role matrix, and the changes an admin makes there, each
by the API's own service call (the same rules, the same audit events), each posted with the
session's CSRF token, and each needing a fresh MFA code where the API demands a step-up."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from sqlalchemy import select

from conftest import Harness, strong_password
from support.fake_runtime import FakeRuntime
from support.pages import SAME_ORIGIN, events, hidden, with_mfa
from wakedock.auth.models import User
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Permission, Role
from wakedock.rbac.roles import ROLE_PERMISSIONS

from .conftest import Console, SignIn

HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime, clock: FakeClock) -> Harness:
    # A clock the test moves: each code typed is a new TOTP step (a code is good once).
    return make_harness(clock=clock, runtime=runtime)


@pytest.fixture
def admin(signed_in: SignIn) -> Console:
    return signed_in(Role.ADMIN)


def code(h: Harness, clock: FakeClock, name: str) -> str:
    """A current code of `name`'s authenticator, never used before."""
    clock.advance(30)
    return h.totp_code(name)


def user(h: Harness, name: str) -> User | None:
    with h.components.db() as db:
        return db.execute(select(User).where(User.username == name)).scalar_one_or_none()


def post(console: Console, path: str, **fields: str) -> object:
    return console.browser.post(
        path, data={"csrf_token": console.csrf, **fields}, headers=SAME_ORIGIN
    )


def targets(h: Harness, type_: str) -> list[str | None]:
    return [e.target for e in events(h, type_)]


def test_the_list_searches_filters_and_shows_role_state_mfa_and_last_sign_in(
    h: Harness, admin: Console
) -> None:
    h.create_user("carol", Role.OPERATOR, email="carol@example.com")
    h.create_user("dave", Role.VIEWER, email="d@corp.example")
    with_mfa(h, "erin", Role.DEVELOPER)  # signed in once through the API: a last sign-in
    with h.components.db.begin() as db:
        db.execute(select(User)).scalars()
        found = db.execute(select(User).where(User.username == "dave")).scalar_one()
        found.disabled = True
    page = admin.browser.get("/admin/users")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert '<a href="/admin" aria-current="page">Admin</a>' in page.text
    for name in ("carol", "dave", "erin", admin.username):
        assert f'<tr data-user="{name}">' in page.text
    erin = page.text.split('<tr data-user="erin">')[1].split("</tr>")[0]
    assert "developer" in erin and ">enrolled<" in erin and "never" not in erin
    carol = page.text.split('<tr data-user="carol">')[1].split("</tr>")[0]
    assert "not enrolled" in carol and "never" in carol
    by_mail = admin.browser.get("/admin/users", params={"q": "CORP.example"}).text
    assert '<tr data-user="dave">' in by_mail and 'data-user="carol"' not in by_mail
    disabled = admin.browser.get("/admin/users", params={"disabled": "yes"}).text
    assert 'data-user="dave"' in disabled and 'data-user="carol"' not in disabled
    enrolled = admin.browser.get("/admin/users", params={"mfa": "yes"}).text
    assert 'data-user="erin"' in enrolled and 'data-user="carol"' not in enrolled
    operators = admin.browser.get("/admin/users", params={"role": "operator"}).text
    assert 'data-user="carol"' in operators and 'data-user="erin"' not in operators


def test_the_list_is_paged_by_fifty(h: Harness, admin: Console) -> None:
    for n in range(55):
        h.create_user(f"bulk{n:02d}", Role.VIEWER)
    first = admin.browser.get("/admin/users", params={"q": "bulk"}).text
    assert first.count('<tr data-user="bulk') == 50
    assert '<a href="/admin/users?q=bulk&amp;page=2" rel="next">' in first
    second = admin.browser.get("/admin/users", params={"q": "bulk", "page": "2"}).text
    assert second.count('<tr data-user="bulk') == 5 and 'data-user="bulk54"' in second
    # Every filter stays in the pages' links: here the last sign-in's (none of them signed in).
    never = admin.browser.get("/admin/users", params={"q": "bulk", "signed_in": "never"}).text
    assert never.count('<tr data-user="bulk') == 50
    assert '<a href="/admin/users?q=bulk&amp;signed_in=never&amp;page=2" rel="next">' in never
    back = admin.browser.get("/admin/users?q=bulk&signed_in=never&page=2").text
    assert '<a href="/admin/users?q=bulk&amp;signed_in=never" rel="prev">' in back


def listed(page: str) -> set[str]:
    table = page.split('id="users"')[1].split("</table>")[0] if 'id="users"' in page else ""
    return set(re.findall(r'<tr data-user="([^"]+)">', table))


def test_the_last_sign_in_filter_finds_recent_dormant_and_never_signed_in_users(
    h: Harness, clock: FakeClock, signed_in: SignIn
) -> None:
    made = {name: h.create_user(name, Role.VIEWER) for name in ("old", "mid", "fresh", "never")}
    h.login(*made["old"])  # 31 days before the page is read
    clock.advance(2 * 86_400)
    h.login(*made["mid"])  # 29 days before
    clock.advance(29 * 86_400)
    h.login(*made["fresh"])
    admin = signed_in(Role.ADMIN)  # signed in now too
    expected = {
        "": {"old", "mid", "fresh", "never", admin.username},
        "recent": {"mid", "fresh", admin.username},
        "dormant": {"old"},
        "never": {"never"},
        "sometime": {"old", "mid", "fresh", "never", admin.username},  # unknown: any
    }
    for choice, names in expected.items():
        page = admin.browser.get("/admin/users", params={"signed_in": choice})
        assert page.status_code == 200, page.text
        assert listed(page.text) == names, choice
        if choice in ("recent", "dormant", "never"):
            assert f'<option value="{choice}" selected>' in page.text
    # The boundary is the clock's: a day later, "mid" has not signed in for 30 days.
    clock.advance(86_400 + 1)
    admin = signed_in(Role.ADMIN)  # the first one's session has gone idle
    dormant = admin.browser.get("/admin/users", params={"signed_in": "dormant"}).text
    assert listed(dormant) == {"old", "mid"}


def test_the_matrix_is_the_role_table(admin: Console) -> None:
    page = admin.browser.get("/admin/users").text
    matrix = page.split('id="matrix"')[1].split("</table>")[0]
    header = [r.value for r in ROLE_PERMISSIONS]
    assert "".join(f'<th scope="col">{r}</th>' for r in header) in matrix
    for permission in Permission:
        row = matrix.split(f"<code>{permission.value}</code></th>")[1].split("</tr>")[0]
        held = [
            f'data-held="{"yes" if permission in ROLE_PERMISSIONS[r] else "no"}"'
            for r in ROLE_PERMISSIONS
        ]
        assert [c.split(">")[0].strip() for c in row.split("<td ")[1:]] == held


# Sends markup on purpose (the edge's CRS refuses it before WakeDock: a security test).
@pytest.mark.security
def test_create_shows_the_policy_beside_the_fields_keeps_what_was_typed_escaped(
    h: Harness, admin: Console
) -> None:
    answer = post(
        admin,
        "/admin/users",
        username=HOSTILE,
        email=HOSTILE,
        password="short",
        role="viewer",
    )
    assert answer.status_code == 422
    assert HOSTILE not in answer.text
    assert 'value="&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"' in answer.text
    assert 'id="u-username-error"' in answer.text and 'id="u-email-error"' in answer.text
    weak = post(
        admin,
        "/admin/users",
        username="frank",
        email="f@example.com",
        password="frank12345",
        role="developer",
    )
    assert weak.status_code == 400
    assert 'id="u-password-error"' in weak.text and 'aria-invalid="true"' in weak.text
    assert 'value="frank"' in weak.text and 'value="f@example.com"' in weak.text
    assert '<option value="developer" selected>' in weak.text
    assert "frank12345" not in weak.text
    assert user(h, "frank") is None and not targets(h, "user_create").count("frank")
    made = post(
        admin,
        "/admin/users",
        username="Frank",
        email="",
        password=strong_password(),
        role="developer",
    )
    assert made.status_code == 303
    assert made.headers["location"] == "/admin/users?done=created&user=frank"
    assert "User frank created." in admin.browser.get(made.headers["location"]).text
    assert "frank" in targets(h, "user_create")
    taken = post(admin, "/admin/users", username="frank", password=strong_password(), role="viewer")
    assert taken.status_code == 409 and "already exists" in taken.text


@pytest.mark.security
def test_creating_an_admin_needs_a_code_and_raises_privilege_escalation(
    h: Harness, clock: FakeClock, admin: Console
) -> None:
    fields = {"username": "gina", "password": strong_password(), "role": "admin"}
    refused = post(admin, "/admin/users", **fields)
    assert refused.status_code == 403 and 'id="u-code-error"' in refused.text
    assert user(h, "gina") is None
    made = post(admin, "/admin/users", code=code(h, clock, admin.username), **fields)
    assert made.status_code == 303, made.text
    assert "gina" in targets(h, "privilege_escalation")


@pytest.mark.security
def test_granting_admin_is_refused_without_or_with_a_wrong_code_and_audited_with_the_right_one(
    h: Harness, clock: FakeClock, admin: Console
) -> None:
    h.create_user("hank", Role.VIEWER)
    page = admin.browser.get("/admin/users/hank")
    assert page.status_code == 200 and 'name="code"' in page.text
    missing = post(admin, "/admin/users/hank/role", role="admin")
    assert missing.status_code == 403
    assert "needs a current code from your authenticator app" in missing.text
    assert "step-up MFA required" in str(events(h, "forbidden_access")[-1].details)
    wrong = post(admin, "/admin/users/hank/role", role="admin", code="000000")
    assert wrong.status_code == 400 and "invalid or already used code" in wrong.text
    assert events(h, "mfa_failure")[-1].target == admin.username
    assert user(h, "hank").role == "viewer"  # type: ignore[union-attr]
    assert "hank" not in targets(h, "role_change") + targets(h, "privilege_escalation")
    granted = post(
        admin, "/admin/users/hank/role", role="admin", code=code(h, clock, admin.username)
    )
    assert (
        granted.status_code == 303 and granted.headers["location"] == "/admin/users/hank?done=role"
    )
    assert user(h, "hank").role == "admin"  # type: ignore[union-attr]
    escalation = events(h, "privilege_escalation")[-1]
    assert escalation.target == "hank" and escalation.actor == admin.username
    assert json.loads(escalation.details) == {"to": "admin", "from": "viewer"}
    assert events(h, "role_change")[-1].target == "hank"
    assert events(h, "mfa_step_up")[-1].target == admin.username
    assert "User hank has the role chosen." in admin.browser.get(granted.headers["location"]).text


def test_disable_enable_reset_mfa_and_delete_are_audited_as_the_apis(
    h: Harness, clock: FakeClock, admin: Console
) -> None:
    with_mfa(h, "ivy", Role.DEVELOPER)
    for action, event in (
        ("disable", "user_disable"),
        ("enable", "user_update"),
        ("reset-mfa", "mfa_reset"),
        ("delete", "user_delete"),
    ):
        refused = post(admin, f"/admin/users/ivy/{action}")
        assert refused.status_code == 403, action
        done = post(admin, f"/admin/users/ivy/{action}", code=code(h, clock, admin.username))
        assert done.status_code == 303, (action, done.text)
        assert events(h, event)[-1].target == "ivy", action
        if action == "disable":
            assert user(h, "ivy").disabled  # type: ignore[union-attr]
            assert "revoked" in admin.browser.get(done.headers["location"]).text
        if action == "reset-mfa":
            assert not user(h, "ivy").mfa_enabled  # type: ignore[union-attr]
    assert user(h, "ivy") is None
    assert done.headers["location"] == "/admin/users?done=deleted&user=ivy"


def test_an_admin_cannot_delete_itself_nor_disable_the_last_admin_and_sees_the_apis_word(
    h: Harness, clock: FakeClock, admin: Console
) -> None:
    answer = post(
        admin, f"/admin/users/{admin.username}/delete", code=code(h, clock, admin.username)
    )
    assert answer.status_code == 409
    assert "you cannot delete your own account" in answer.text
    last = post(
        admin, f"/admin/users/{admin.username}/disable", code=code(h, clock, admin.username)
    )
    assert last.status_code == 409
    assert "this is the last enabled admin: create another admin first" in last.text
    found = user(h, admin.username)
    assert found is not None and not found.disabled


@pytest.mark.security
def test_a_form_without_the_token_or_from_another_origin_is_refused(
    h: Harness, clock: FakeClock, admin: Console
) -> None:
    h.create_user("jack", Role.VIEWER)
    before = len(events(h, "csrf_failure"))
    bare = admin.browser.post(
        "/admin/users/jack/disable",
        data={"code": code(h, clock, admin.username)},
        headers=SAME_ORIGIN,
    )
    assert bare.status_code == 403 and "not sent from a WakeDock page" in bare.text
    elsewhere = admin.browser.post(
        "/admin/users",
        data={
            "csrf_token": admin.csrf,
            "username": "mallory",
            "password": strong_password(),
            "role": "viewer",
        },
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert elsewhere.status_code == 403
    assert len(events(h, "csrf_failure")) == before + 2
    assert not user(h, "jack").disabled and user(h, "mallory") is None  # type: ignore[union-attr]


@pytest.mark.security
def test_an_operator_with_users_read_gets_403_and_its_forged_posts_are_refused(
    h: Harness, signed_in: SignIn
) -> None:
    assert Permission.USERS_READ in ROLE_PERMISSIONS[Role.OPERATOR]
    h.create_user("kate", Role.VIEWER)
    operator = signed_in(Role.OPERATOR)
    for path in ("/admin/users", "/admin/users/kate"):
        page = operator.browser.get(path)
        assert page.status_code == 403 and "Only administrators" in page.text
        assert "kate" not in page.text
    forged = post(operator, "/admin/users/kate/role", role="operator", code="123456")
    assert forged.status_code == 403
    made = post(
        operator, "/admin/users", username="lena", password=strong_password(), role="viewer"
    )
    assert made.status_code == 403
    assert user(h, "kate").role == "viewer" and user(h, "lena") is None  # type: ignore[union-attr]
    assert "console:read" in str(events(h, "forbidden_access")[-1].details)


@pytest.mark.security
def test_hostile_values_are_shown_escaped(h: Harness, admin: Console) -> None:
    # A bare `%` (the CRS scores it as bad URL encoding) is a literal, not a LIKE wildcard.
    wildcard = admin.browser.get("/admin/users", params={"q": "%"}).text
    assert "No user matches." in wildcard
    h.create_user("mike", Role.VIEWER, email=HOSTILE)
    listed = admin.browser.get("/admin/users", params={"q": HOSTILE})
    assert HOSTILE not in listed.text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in listed.text
    assert 'data-user="mike"' in listed.text
    shown = admin.browser.get("/admin/users/mike").text
    assert HOSTILE not in shown and "&lt;img" in shown
    said = admin.browser.get("/admin/users", params={"done": "created", "user": HOSTILE}).text
    assert (
        HOSTILE not in said
        and '<p class="notice" id="notice" role="status" aria-live="polite"></p>' in said
    )
    assert hidden(shown, "csrf_token") == admin.csrf
