"""`/admin/secrets` in process against a real OpenBao: an admin browses the services' secrets
(key names, versions, never a value), writes a new version (audited as through the API), and
sees a value only after a fresh code typed in the form (refused without one or with a wrong
one; shown once, `no-store`, audited, in no log and no address). Operators and viewers get the
403 page; a forged post is refused; without Vault/OpenBao the page says so."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.openbao import ROOT_TOKEN, BaoServer, start_openbao
from support.pages import (
    SAME_ORIGIN,
    code_step,
    events,
    hidden,
    page_client,
    password_step,
    with_mfa,
)
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role

from .conftest import Console, SignIn

pytestmark = pytest.mark.integration
VALUE = "console-smtp-password-" + "v" * 16
NEW_VALUE = "console-smtp-password-two-" + "w" * 12


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    yield server
    server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(
    make_harness: Callable[..., Harness], bao: BaoServer, clock: FakeClock, runtime: FakeRuntime
) -> Harness:
    vault = {"provider": "vault", "vault_url": bao.url, "vault_token": ROOT_TOKEN}
    harness = make_harness(clock=clock, runtime=runtime, secrets=vault)
    # The secrets of this test alone, at version 1 (the server is shared by the module's tests).
    kv = bao.client().secrets.kv.v2
    for path in ("services/mailer/smtp", "services/mailer/imap"):
        kv.delete_metadata_and_all_versions(path=path, mount_point="secret")
    kv.create_or_update_secret(
        path="services/mailer/smtp", secret={"password": VALUE}, mount_point="secret"
    )
    return harness


def _trail(h: Harness) -> list[tuple[str, str, str]]:
    with h.components.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT type, outcome, target, details FROM audit_events ORDER BY seq")
        ).all()
    return [(r[0], r[1], f"{r[2]} {r[3] or ''}") for r in rows]


def _code(h: Harness, clock: FakeClock, admin: Console) -> str:
    """The admin's next TOTP code (a step later: sign-in spent this step's codes)."""
    clock.advance(30)
    return h.totp_code(admin.username)


def _reveal(admin: Console, code: str | None, path: str = "mailer/smtp") -> object:
    data = {"csrf_token": admin.csrf, "path": path}
    if code is not None:
        data["code"] = code
    return admin.browser.post("/admin/secrets/reveal", data=data, headers=SAME_ORIGIN)


def test_an_admin_sees_key_names_and_versions_never_the_value(
    signed_in: SignIn, h: Harness
) -> None:
    admin = signed_in(Role.ADMIN)
    top = admin.browser.get("/admin/secrets")
    assert top.status_code == 200, top.text
    assert top.headers["cache-control"] == "no-store"
    assert '<a href="/admin/secrets?path=mailer">mailer/</a>' in top.text
    folder = admin.browser.get("/admin/secrets?path=mailer")
    assert '<a href="/admin/secrets?path=mailer%2Fsmtp">smtp</a>' in folder.text
    page = admin.browser.get("/admin/secrets?path=mailer/smtp")
    assert page.status_code == 200
    assert '<dd id="secret-keys">password</dd>' in page.text
    assert '<dd id="secret-version">1</dd>' in page.text
    assert VALUE not in page.text
    # The value fields of a new version are password fields the browser does not fill.
    assert 'name="value.password" type="password" autocomplete="off" required' in page.text
    assert ("secret_access", "success") in {(t, o) for t, o, _ in _trail(h)}
    assert admin.browser.get("/admin/secrets?path=nothing/here").status_code == 404


@pytest.mark.security
def test_reveal_needs_a_fresh_code_then_shows_the_value_once(
    signed_in: SignIn, h: Harness, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = signed_in(Role.ADMIN)
    # Signed in with a code moments ago, still the form asks for one.
    without = _reveal(admin, None)
    assert without.status_code == 403
    assert "revealing a value needs a fresh code" in without.text
    assert VALUE not in without.text
    step_up_refused = events(h, "forbidden_access")
    assert step_up_refused and "step-up MFA required" in str(step_up_refused[-1].details)

    wrong = _reveal(admin, "000000")
    assert wrong.status_code == 400
    assert "That code is not valid" in wrong.text and VALUE not in wrong.text
    assert events(h, "mfa_failure")
    assert events(h, "secret_reveal") == []

    code = _code(h, clock, admin)
    shown = _reveal(admin, code)
    assert shown.status_code == 200, shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert f"<code>{VALUE}</code>" in shown.text
    assert "Shown this once" in shown.text
    assert events(h, "mfa_step_up")
    [revealed] = events(h, "secret_reveal")
    assert revealed.target == "secret:services/mailer/smtp"
    assert revealed.actor == admin.username

    # Posting the same form again (what a reload does) spends nothing: the code is used.
    again = _reveal(admin, code)
    assert again.status_code == 400 and VALUE not in again.text
    # The page itself, the audit trail and every log line: no value.
    assert VALUE not in admin.browser.get("/admin/secrets?path=mailer/smtp").text
    assert VALUE not in json.dumps(_trail(h))
    assert VALUE not in caplog.text
    assert VALUE not in "".join(str(r.args) + r.getMessage() for r in caplog.records)


def test_an_admin_writes_a_new_version_audited_as_through_the_api(
    signed_in: SignIn, h: Harness, bao: BaoServer
) -> None:
    admin = signed_in(Role.ADMIN)
    form = {"csrf_token": admin.csrf, "path": "mailer/smtp", "cas": "1",
            "value.password": NEW_VALUE, "new_key": "user", "new_value": "mailer"}  # fmt: skip
    written = admin.browser.post("/admin/secrets/write", data=form, headers=SAME_ORIGIN)
    assert written.status_code == 303, written.text
    assert written.headers["location"] == "/admin/secrets?path=mailer%2Fsmtp&written=2"
    stored = bao.client().secrets.kv.v2.read_secret_version(
        path="services/mailer/smtp", mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"password": NEW_VALUE, "user": "mailer"}
    page = admin.browser.get(written.headers["location"])
    assert "Version 2 written." in page.text and NEW_VALUE not in page.text
    [event] = [e for e in events(h, "secret_write") if e.outcome == "success"]
    assert event.target == "secret:services/mailer/smtp"
    assert json.loads(event.details) == {"keys": ["password", "user"], "version": 2}
    assert event.actor == admin.username

    # The same form again is stale (check-and-set on version 1): refused, audited, no value.
    stale = admin.browser.post("/admin/secrets/write", data=form, headers=SAME_ORIGIN)
    assert stale.status_code == 409
    assert "nothing was written" in stale.text and NEW_VALUE not in stale.text
    assert [e.outcome for e in events(h, "secret_write")] == ["success", "failure"]

    # A new secret in a folder: version 1.
    new = {"csrf_token": admin.csrf, "folder": "mailer", "name": "imap", "cas": "0",
           "new_key": "token", "new_value": NEW_VALUE}  # fmt: skip
    created = admin.browser.post("/admin/secrets/write", data=new, headers=SAME_ORIGIN)
    assert created.headers["location"] == "/admin/secrets?path=mailer%2Fimap&written=1"


@pytest.mark.security
def test_a_name_outside_the_services_folder_is_refused(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    for name in ("../wakedock/jwt", "x//y", "..", "a/./b"):
        new = {"csrf_token": admin.csrf, "folder": "mailer", "name": name, "cas": "0",
               "new_key": "token", "new_value": NEW_VALUE}  # fmt: skip
        refused = admin.browser.post("/admin/secrets/write", data=new, headers=SAME_ORIGIN)
        assert refused.status_code == 400, name
        assert "name is segments of letters" in refused.text and NEW_VALUE not in refused.text
    assert events(h, "secret_write") == []


@pytest.mark.security
def test_a_forged_post_is_refused(signed_in: SignIn, h: Harness, bao: BaoServer) -> None:
    admin = signed_in(Role.ADMIN)
    form = {"path": "mailer/smtp", "value.password": "forged", "cas": "1"}
    # From another site, with the session's cookie but no token.
    elsewhere = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    for headers, data in (
        (elsewhere, form),
        (SAME_ORIGIN, form),
        (elsewhere, {**form, "csrf_token": admin.csrf}),
    ):
        forged = admin.browser.post("/admin/secrets/write", data=data, headers=headers)
        assert forged.status_code == 403
        assert "This form was not sent from a WakeDock page" in forged.text
    reveal = admin.browser.post(
        "/admin/secrets/reveal", data={"path": "mailer/smtp", "code": "123456"}, headers=elsewhere
    )
    assert reveal.status_code == 403 and VALUE not in reveal.text
    stored = bao.client().secrets.kv.v2.read_secret_version(
        path="services/mailer/smtp", mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"password": VALUE}
    assert events(h, "csrf_failure")


@pytest.mark.security
@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
def test_operators_and_viewers_get_the_403_page(signed_in: SignIn, h: Harness, role: Role) -> None:
    user = signed_in(role)
    page = user.browser.get("/admin/secrets?path=mailer/smtp")
    assert page.status_code == 403
    assert "Only administrators may open the admin console." in page.text
    data = {"csrf_token": user.csrf, "path": "mailer/smtp", "code": "123456",
            "value.password": "x", "cas": "1"}  # fmt: skip
    for action in ("reveal", "write"):
        refused = user.browser.post(f"/admin/secrets/{action}", data=data, headers=SAME_ORIGIN)
        assert refused.status_code == 403 and VALUE not in refused.text
    assert events(h, "secret_reveal") == [] and events(h, "secret_write") == []
    assert "console:read" in str(events(h, "forbidden_access")[-1].details)


def test_without_vault_the_page_says_so(
    make_harness: Callable[..., Harness], runtime: FakeRuntime
) -> None:
    h = make_harness(runtime=runtime)  # the default provider: files, nothing to browse here
    name, password = with_mfa(h, "admin-no-vault", Role.ADMIN)
    browser: TestClient = page_client(h, 50390)
    step = password_step(browser, name, password, "/admin/secrets")
    code_step(browser, hidden(step.text, "challenge"), h.totp_code(name), "/admin/secrets")
    page = browser.get("/admin/secrets")
    assert page.status_code == 200, page.text
    assert "No Vault or OpenBao secrets backend is configured" in page.text
    assert "Write a new version" not in page.text
