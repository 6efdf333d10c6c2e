"""MFA end to end over HTTP: enrolment (secret, otpauth URI, QR), challenge and one-step login,
cookie sessions, backup codes, disable, admin reset, adoption figures, audit trail, and the
TOTP secret sealed at rest. Time is a FakeClock: tests move it instead of sleeping."""

from __future__ import annotations

import base64
import json
import re
import stat
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import select

from conftest import CLIENT_IP, Harness
from support.clocked import clock, h  # noqa: F401 - fixtures
from wakedock.audit.models import AuditEvent
from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.auth.models import User
from wakedock.clock import FakeClock
from wakedock.db import Base
from wakedock.mfa.models import BackupCode
from wakedock.rbac.permissions import Role

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"
MFA = "/api/v1/auth/mfa"
BACKUP_CODE = re.compile(r"^[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}$")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- helpers --------------------------------------------------------------------------------
def fresh_code(h: Harness, username: str) -> str:
    """A TOTP code of a step never used before; moves the FakeClock on if a step is spent."""
    try:
        return h.totp_code(username)
    except RuntimeError:
        clock = h.components.clock
        assert isinstance(clock, FakeClock)
        clock.advance(30)
        return h.totp_code(username)


def events(h: Harness, type_: str) -> list[AuditEvent]:
    with h.components.db() as db:
        rows = db.execute(
            select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.id)
        )
        return list(rows.scalars())


def db_user(h: Harness, username: str) -> User:
    with h.components.db() as db:
        user = db.execute(select(User).where(User.username == username)).scalar_one()
        db.expunge(user)
        return user


def unused_backup_codes(h: Harness, user_id: int) -> int:
    with h.components.db() as db:
        rows = db.execute(select(BackupCode).where(BackupCode.user_id == user_id)).scalars()
        return sum(1 for row in rows if row.used_at is None)


def password_login(h: Harness, username: str, password: str, **extra: Any) -> Any:
    return h.client.post(LOGIN, json={"username": username, "password": password, **extra})


def challenge(h: Harness, username: str, password: str, **extra: Any) -> str:
    """The password step of an MFA login: asserts a challenge and no session."""
    response = password_login(h, username, password, **extra)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["requires_mfa"] is True, body
    assert "access_token" not in body and "refresh_token" not in body
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    return str(body["challenge_token"])


def verify(h: Harness, token: str, code: str, mode: str = "token") -> Any:
    return h.client.post(
        f"{MFA}/verify", json={"challenge_token": token, "code": code, "mode": mode}
    )


def enrolled_viewer(
    h: Harness, username: str = "vera", email: str | None = None
) -> tuple[str, str, str]:
    """A viewer with MFA on (enrolled over the API); returns name, password, access token."""
    name, password = h.create_user(username, Role.VIEWER, email=email)
    token = h.login(name, password)["access_token"]
    h.enrol_mfa(name, token)
    return name, password, str(token)


def mfa_status(h: Harness, token: str) -> dict[str, Any]:
    response = h.client.get(MFA, headers=h.bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- enrolment and login --------------------------------------------------------------------
def test_viewer_enrols_logs_out_and_logs_back_in_with_a_code(h: Harness) -> None:
    name, password = h.create_user("vera", Role.VIEWER, email="vera@example.com")
    first = password_login(h, name, password)
    assert first.status_code == 200 and "access_token" in first.json()
    token = first.json()["access_token"]
    assert mfa_status(h, token) == {
        "enabled": False,
        "required": False,
        "enabled_at": None,
        "backup_codes_remaining": 0,
    }

    # Setup: a fresh secret, its otpauth URI and the QR code, all consistent.
    setup = h.client.post(f"{MFA}/setup", headers=h.bearer(token))
    assert setup.status_code == 200, setup.text
    body = setup.json()
    secret = body["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    uri = urlsplit(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == "/WakeDock:vera@example.com"
    query = parse_qs(uri.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["WakeDock"]
    assert query.get("digits", ["6"]) == ["6"] and query.get("period", ["30"]) == ["30"]
    png = base64.b64decode(body["qr_png_base64"], validate=True)
    assert png.startswith(PNG_MAGIC) and len(png) > 200
    h.mfa_secrets[name] = secret

    # Nothing is active before confirmation: the password alone still opens a session.
    assert mfa_status(h, token)["enabled"] is False
    assert "access_token" in password_login(h, name, password).json()

    # A wrong code does not confirm; the right one returns ten backup codes, once.
    wrong = h.client.post(f"{MFA}/confirm", headers=h.bearer(token), json={"code": "000000"})
    assert wrong.status_code == 400 and wrong.json()["code"] == "mfa_code_invalid"
    assert mfa_status(h, token)["enabled"] is False
    confirm = h.client.post(
        f"{MFA}/confirm", headers=h.bearer(token), json={"code": fresh_code(h, name)}
    )
    assert confirm.status_code == 200, confirm.text
    codes = confirm.json()["backup_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(BACKUP_CODE.match(code) for code in codes), codes
    status = mfa_status(h, token)
    assert status["enabled"] is True and status["enabled_at"] is not None
    assert status["backup_codes_remaining"] == 10
    assert set(status) == {"enabled", "required", "enabled_at", "backup_codes_remaining"}
    assert secret not in json.dumps(status)

    # Log out: the old session is gone.
    assert h.client.post("/api/v1/auth/logout", headers=h.bearer(token)).status_code == 204
    assert h.client.get(ME, headers=h.bearer(token)).status_code == 401

    # The password alone now yields a 5-minute challenge, not a session.
    response = password_login(h, name, password)
    assert response.status_code == 200
    assert response.json()["requires_mfa"] is True
    assert response.json()["expires_in"] == 300
    assert set(response.json()) == {"requires_mfa", "challenge_token", "expires_in"}

    verified = verify(h, response.json()["challenge_token"], fresh_code(h, name))
    assert verified.status_code == 200, verified.text
    tokens = verified.json()
    assert tokens["user"]["username"] == name and tokens["refresh_token"]
    me = h.client.get(ME, headers=h.bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == name
    sessions = h.client.get("/api/v1/auth/sessions", headers=h.bearer(tokens["access_token"]))
    current = [s for s in sessions.json() if s["current"]]
    assert len(current) == 1 and current[0]["mfa_at"] is not None
    # The refresh token of an MFA session works like any other.
    refreshed = h.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text


def test_otpauth_account_is_the_username_without_email(h: Harness) -> None:
    name, password = h.create_user("noemail", Role.VIEWER)
    token = h.login(name, password)["access_token"]
    setup = h.client.post(f"{MFA}/setup", headers=h.bearer(token))
    assert setup.status_code == 200
    uri = urlsplit(setup.json()["otpauth_uri"])
    assert unquote(uri.path) == "/WakeDock:noemail"


def test_confirm_without_setup_or_after_the_pending_window_is_refused(
    h: Harness, clock: FakeClock
) -> None:
    name, password = h.create_user("late", Role.VIEWER)
    token = h.login(name, password)["access_token"]
    no_setup = h.client.post(f"{MFA}/confirm", headers=h.bearer(token), json={"code": "123456"})
    assert no_setup.status_code == 409

    setup = h.client.post(f"{MFA}/setup", headers=h.bearer(token))
    h.mfa_secrets[name] = setup.json()["secret"]
    clock.advance(16 * 60)  # the pending secret is forgotten after 15 minutes
    token = h.login(name, password)["access_token"]  # (the access token expired too)
    late = h.client.post(
        f"{MFA}/confirm", headers=h.bearer(token), json={"code": fresh_code(h, name)}
    )
    assert late.status_code == 409, late.text
    assert db_user(h, name).mfa_enabled is False


def test_one_step_login_with_code_in_the_login_body(h: Harness) -> None:
    name, password, _ = enrolled_viewer(h)
    wrong = password_login(h, name, password, code="000000")
    assert wrong.status_code == 401, wrong.text
    assert wrong.json()["code"] == "mfa_code_invalid"
    assert "access_token" not in wrong.text

    response = password_login(h, name, password, code=fresh_code(h, name))
    assert response.status_code == 200, response.text
    body = response.json()
    assert "requires_mfa" not in body
    me = h.client.get(ME, headers=h.bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == name

    # A wrong password with a right code is still a wrong password (and gives no hint).
    bad = password_login(h, name, "not-" + password, code=fresh_code(h, name))
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_credentials"

    # Form-encoded one-step login works too.
    form = h.client.post(
        LOGIN, data={"username": name, "password": password, "code": fresh_code(h, name)}
    )
    assert form.status_code == 200 and "access_token" in form.json(), form.text


def test_cookie_mode_verify_sets_the_host_session_cookie(h: Harness) -> None:
    name, password, _ = enrolled_viewer(h)
    h.client.cookies.clear()
    token = challenge(h, name, password, mode="cookie")
    assert SESSION_COOKIE not in h.client.cookies

    verified = verify(h, token, fresh_code(h, name), mode="cookie")
    assert verified.status_code == 200, verified.text
    body = verified.json()
    assert body["csrf_token"] and body["user"]["username"] == name
    assert "access_token" not in body and "refresh_token" not in body
    cookie = verified.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path=/", "samesite=strict"} <= attributes
    assert not any(a.startswith("domain=") for a in attributes)

    # The browser session works on its own (no bearer header).
    me = h.client.get(ME)
    assert me.status_code == 200 and me.json()["username"] == name


# -- backup codes ---------------------------------------------------------------------------
def test_backup_code_logs_in_once(h: Harness) -> None:
    name, password, token = enrolled_viewer(h)
    code = h.backup_codes[name][3]
    first = verify(h, challenge(h, name, password), code)
    assert first.status_code == 200, first.text
    assert h.client.get(ME, headers=h.bearer(first.json()["access_token"])).status_code == 200
    assert mfa_status(h, token)["backup_codes_remaining"] == 9
    assert unused_backup_codes(h, db_user(h, name).id) == 9
    success = events(h, "mfa_success")[-1]
    assert json.loads(success.details)["method"] == "backup_code"

    again = verify(h, challenge(h, name, password), code)
    assert again.status_code == 401 and again.json()["code"] == "mfa_code_invalid"
    # Typed lower-case and without the dash it is still the same (spent) code.
    relaxed = verify(h, challenge(h, name, password), code.lower().replace("-", ""))
    assert relaxed.status_code == 401
    # Another code of the set still works, typed loosely.
    other = h.backup_codes[name][4].lower().replace("-", " ")
    assert verify(h, challenge(h, name, password), other).status_code == 200
    assert mfa_status(h, token)["backup_codes_remaining"] == 8


def test_regenerating_backup_codes_invalidates_the_old_set(h: Harness) -> None:
    name, password, token = enrolled_viewer(h)
    old = h.backup_codes[name]

    wrong = h.client.post(f"{MFA}/backup-codes", headers=h.bearer(token), json={"code": "000000"})
    assert wrong.status_code == 400 and wrong.json()["code"] == "mfa_code_invalid"

    response = h.client.post(
        f"{MFA}/backup-codes", headers=h.bearer(token), json={"code": fresh_code(h, name)}
    )
    assert response.status_code == 200, response.text
    new = response.json()["backup_codes"]
    assert len(new) == 10 and all(BACKUP_CODE.match(c) for c in new)
    assert not set(new) & set(old)
    assert mfa_status(h, token)["backup_codes_remaining"] == 10
    with h.components.db() as db:
        assert len(db.execute(select(BackupCode)).scalars().all()) == 10

    for code in (old[0], old[9]):
        refused = verify(h, challenge(h, name, password), code)
        assert refused.status_code == 401, refused.text
    accepted = verify(h, challenge(h, name, password), new[0])
    assert accepted.status_code == 200, accepted.text
    assert len(events(h, "mfa_backup_codes_regenerated")) == 1


# -- disable --------------------------------------------------------------------------------
def test_disable_needs_the_password_and_a_current_code(h: Harness) -> None:
    name, password, token = enrolled_viewer(h)
    url = f"{MFA}/disable"
    for body in ({}, {"password": password}, {"code": "123456"}, {"password": "", "code": ""}):
        missing = h.client.post(url, headers=h.bearer(token), json=body)
        assert missing.status_code == 422, (body, missing.text)

    wrong_password = h.client.post(
        url,
        headers=h.bearer(token),
        json={"password": "not-" + password, "code": fresh_code(h, name)},
    )
    assert wrong_password.status_code == 400, wrong_password.text
    assert wrong_password.json()["code"] == "mfa_code_invalid"
    wrong_code = h.client.post(
        url, headers=h.bearer(token), json={"password": password, "code": "000000"}
    )
    assert wrong_code.status_code == 400, wrong_code.text
    user = db_user(h, name)
    assert user.mfa_enabled is True and user.mfa_secret is not None
    assert not events(h, "mfa_disable")
    failures = [json.loads(e.details) for e in events(h, "mfa_failure")]
    assert [f["purpose"] for f in failures] == ["disable", "disable"]

    done = h.client.post(
        url, headers=h.bearer(token), json={"password": password, "code": fresh_code(h, name)}
    )
    assert done.status_code == 204, done.text
    user = db_user(h, name)
    assert (user.mfa_enabled, user.mfa_secret, user.mfa_last_step) == (False, None, None)
    assert unused_backup_codes(h, user.id) == 0
    assert mfa_status(h, token)["enabled"] is False
    [disabled] = events(h, "mfa_disable")
    assert disabled.target == name and disabled.actor == name and disabled.outcome == "success"

    # The password alone opens a session again; the old backup codes open nothing.
    after = password_login(h, name, password)
    assert after.status_code == 200 and "access_token" in after.json()
    assert "requires_mfa" not in after.json()


def test_disable_is_refused_for_a_role_where_mfa_is_mandatory(h: Harness) -> None:
    name, password = h.create_user("root", Role.ADMIN)
    token = h.login(name, password)["access_token"]
    refused = h.client.post(
        f"{MFA}/disable",
        headers=h.bearer(token),
        json={"password": password, "code": fresh_code(h, name)},
    )
    assert refused.status_code == 409, refused.text
    assert db_user(h, name).mfa_enabled is True
    assert not events(h, "mfa_disable")


# -- admin reset ----------------------------------------------------------------------------
def test_admin_reset_clears_mfa_and_revokes_the_users_sessions(h: Harness) -> None:
    name, password, token = enrolled_viewer(h)
    second = h.login(name, password)["access_token"]
    admin_name, admin_password = h.create_user("root", Role.ADMIN)
    admin = h.login(admin_name, admin_password)["access_token"]
    other = h.login(*h.create_user("bystander", Role.VIEWER))["access_token"]
    user_id = db_user(h, name).id

    # A viewer cannot reset anyone's MFA, not even with a valid session.
    forbidden = h.client.delete(f"/api/v1/users/{user_id}/mfa", headers=h.bearer(other))
    assert forbidden.status_code == 403
    assert h.client.delete("/api/v1/users/99999/mfa", headers=h.bearer(admin)).status_code == 404

    reset = h.client.delete(f"/api/v1/users/{user_id}/mfa", headers=h.bearer(admin))
    assert reset.status_code == 204, reset.text
    user = db_user(h, name)
    assert (user.mfa_enabled, user.mfa_secret, user.mfa_pending_secret) == (False, None, None)
    assert unused_backup_codes(h, user_id) == 0
    for revoked in (token, second):
        assert h.client.get(ME, headers=h.bearer(revoked)).status_code == 401
    # Other users keep their sessions.
    assert h.client.get(ME, headers=h.bearer(other)).status_code == 200
    assert h.client.get(ME, headers=h.bearer(admin)).status_code == 200

    [row] = events(h, "mfa_reset")
    assert row.actor == admin_name and row.target == name
    assert json.loads(row.details)["sessions_revoked"] == 2

    # The user logs in with the password alone and may enrol a new device.
    again = password_login(h, name, password)
    assert again.status_code == 200 and "access_token" in again.json()
    new_token = again.json()["access_token"]
    assert h.client.post(f"{MFA}/setup", headers=h.bearer(new_token)).status_code == 200


# -- adoption -------------------------------------------------------------------------------
def test_adoption_figures_count_by_role(h: Harness) -> None:
    admin_name, admin_password = h.create_user("root", Role.ADMIN)
    admin = h.login(admin_name, admin_password)["access_token"]  # enrols: mandatory
    enrolled_viewer(h, "vera")
    viewer_token = h.login(*h.create_user("plain", Role.VIEWER))["access_token"]
    h.create_user("ops", Role.OPERATOR)
    gone, _ = h.create_user("gone", Role.DEVELOPER)
    gone_id = db_user(h, gone).id
    disabled = h.client.patch(
        f"/api/v1/users/{gone_id}", headers=h.bearer(admin), json={"disabled": True}
    )
    assert disabled.status_code == 200, disabled.text

    response = h.client.get("/api/v1/admin/security/mfa", headers=h.bearer(admin))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["by_role"] == {
        "admin": {"users": 1, "enrolled": 1, "percent": 100.0},
        "viewer": {"users": 2, "enrolled": 1, "percent": 50.0},
        "operator": {"users": 1, "enrolled": 0, "percent": 0.0},
        "developer": {"users": 0, "enrolled": 0, "percent": 0.0},  # disabled accounts excluded
    }
    assert (body["total_users"], body["total_enrolled"]) == (4, 2)

    viewer = h.client.get("/api/v1/admin/security/mfa", headers=h.bearer(viewer_token))
    assert viewer.status_code == 403 and "by_role" not in viewer.text
    assert h.client.get("/api/v1/admin/security/mfa").status_code == 401


# -- audit and storage ----------------------------------------------------------------------
def test_every_mfa_event_is_audited(h: Harness) -> None:
    name, password, token = enrolled_viewer(h)
    [enrol] = events(h, "mfa_enrol")
    assert (enrol.actor, enrol.target, enrol.outcome) == (name, name, "success")

    verify(h, challenge(h, name, password), "000000")
    [failure] = events(h, "mfa_failure")
    assert (failure.target, failure.outcome) == (name, "failure")
    assert json.loads(failure.details) == {"purpose": "login", "reason": "wrong_code"}
    assert failure.ip == CLIENT_IP

    ok = verify(h, challenge(h, name, password), fresh_code(h, name))
    assert ok.status_code == 200
    [success] = events(h, "mfa_success")
    assert (success.actor, success.target) == (name, name)
    assert json.loads(success.details) == {"method": "totp", "session": ok.json()["session_id"]}

    stepped = h.client.post(
        f"{MFA}/step-up", headers=h.bearer(token), json={"code": fresh_code(h, name)}
    )
    assert stepped.status_code == 200, stepped.text
    [step_up] = events(h, "mfa_step_up")
    assert (step_up.actor, step_up.target) == (name, name)

    regenerated = h.client.post(
        f"{MFA}/backup-codes", headers=h.bearer(token), json={"code": fresh_code(h, name)}
    )
    assert regenerated.status_code == 200
    [regen] = events(h, "mfa_backup_codes_regenerated")
    assert regen.actor == name

    disabled = h.client.post(
        f"{MFA}/disable",
        headers=h.bearer(token),
        json={"password": password, "code": fresh_code(h, name)},
    )
    assert disabled.status_code == 204
    [disable] = events(h, "mfa_disable")
    assert disable.actor == name

    admin_name, admin_password = h.create_user("root", Role.ADMIN)
    admin = h.login(admin_name, admin_password)["access_token"]
    user_id = db_user(h, name).id
    assert (
        h.client.delete(f"/api/v1/users/{user_id}/mfa", headers=h.bearer(admin)).status_code == 204
    )
    [reset] = events(h, "mfa_reset")
    assert (reset.actor, reset.target) == (admin_name, name)

    # No audit row ever holds the secret or a backup code.
    with h.components.db() as db:
        dumped = json.dumps(
            [
                [e.type, e.actor, e.target, e.details]
                for e in db.execute(select(AuditEvent)).scalars()
            ]
        )
    assert h.mfa_secrets[name] not in dumped
    assert not any(code in dumped for code in h.backup_codes[name])


def test_totp_secret_is_sealed_at_rest(h: Harness) -> None:
    name, password = h.create_user("vera", Role.VIEWER)
    token = h.login(name, password)["access_token"]
    setup = h.client.post(f"{MFA}/setup", headers=h.bearer(token))
    secret = setup.json()["secret"]
    h.mfa_secrets[name] = secret
    pending = db_user(h, name).mfa_pending_secret
    assert pending is not None and pending.startswith("v1:")
    assert secret not in pending and secret.lower() not in pending.lower()

    confirm = h.client.post(
        f"{MFA}/confirm", headers=h.bearer(token), json={"code": fresh_code(h, name)}
    )
    codes = confirm.json()["backup_codes"]
    user = db_user(h, name)
    assert user.mfa_enabled is True
    assert user.mfa_secret is not None and user.mfa_secret.startswith("v1:")
    assert secret not in user.mfa_secret
    raw = base64.b32decode(secret)
    assert raw.hex() not in user.mfa_secret
    assert base64.b64encode(raw).decode() not in user.mfa_secret
    assert base64.urlsafe_b64encode(raw).decode() not in user.mfa_secret

    # Nowhere in the database: not in any table, any column (audit rows included).
    with h.components.db() as db:
        for table in Base.metadata.sorted_tables:
            for row in db.execute(table.select()).all():
                text = " ".join(str(v) for v in row)
                assert secret not in text, table.name
                assert not any(code in text for code in codes), table.name

    # The key lives outside the database, readable by the owner only.
    key_file = h.components.settings.data_dir / "secrets" / "mfa_encryption_key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
