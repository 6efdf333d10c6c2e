"""Attacks on access tokens: forged headers, tampered claims, wrong purpose, expiry, revocation.

Tokens are forged by hand (base64url + HMAC) so that any header can be written, and the real
signing key is used where the point is to prove that a claim check, not the signature, stops it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from conftest import Harness
from support.clocked import clock, h  # noqa: F401 - fixtures
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security

ME = "/api/v1/auth/me"


# -- forging helpers ------------------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload)), signature


def hmac_sign(
    header: dict[str, Any],
    payload: dict[str, Any],
    key: bytes,
    digestmod: Callable[..., Any] = hashlib.sha256,
) -> str:
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    signature = hmac.new(key, signing_input.encode(), digestmod).digest()
    return f"{signing_input}.{b64url(signature)}"


def real_key(h: Harness) -> tuple[str, bytes]:
    key = h.components.keyring.current
    return key.kid, key.secret


def forge(
    h: Harness,
    token: str,
    *,
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    key: bytes | None = None,
    digestmod: Callable[..., Any] = hashlib.sha256,
    **claims: Any,
) -> str:
    """Re-sign `token` (with the real key unless told otherwise) after editing it."""
    real_header, payload, _ = parts(token)
    payload.update(claims)
    for name in drop:
        payload.pop(name, None)
    return hmac_sign(
        header if header is not None else real_header,
        payload,
        key if key is not None else real_key(h)[1],
        digestmod,
    )


def status(h: Harness, token: str) -> int:
    return h.client.get(ME, headers=h.bearer(token)).status_code


@pytest.fixture
def session(h: Harness) -> dict[str, Any]:
    """A viewer's login response (access token, refresh token, session id, user)."""
    name, password = h.create_user("victor", Role.VIEWER)
    return h.login(name, password)


# -- the forging itself works: otherwise every 401 below would prove nothing ---------------
def test_resigned_unchanged_token_is_accepted(h: Harness, session: dict[str, Any]) -> None:
    token = session["access_token"]
    assert status(h, token) == 200
    resigned = forge(h, token)
    assert resigned == token  # same header, claims and key: byte-identical
    fresh_jti = forge(h, token, jti="forged-but-valid")
    assert status(h, fresh_jti) == 200


# -- alg: none ------------------------------------------------------------------------------
def test_alg_none_is_rejected(h: Harness, session: dict[str, Any]) -> None:
    real_header, payload, signature = parts(session["access_token"])
    for alg in ("none", "None", "NONE", "nOnE"):
        for header in (
            {"alg": alg, "typ": "JWT", "kid": real_header["kid"]},
            {"alg": alg, "typ": "JWT"},
        ):
            unsigned = f"{b64url_json(header)}.{b64url_json(payload)}"
            for token in (unsigned + ".", unsigned, f"{unsigned}.{signature}"):
                response = h.client.get(ME, headers=h.bearer(token))
                assert response.status_code == 401, token
                assert response.json()["code"] == "not_authenticated"
                assert "victor" not in response.text


# -- algorithm confusion, signed with the real key -----------------------------------------
def test_other_hmac_algorithms_with_real_key_are_rejected(
    h: Harness, session: dict[str, Any]
) -> None:
    kid, _ = real_key(h)
    for alg, digestmod in [
        ("HS512", hashlib.sha512),
        ("HS384", hashlib.sha384),
        # header says HS256, the MAC is another algorithm
        ("HS256", hashlib.sha512),
    ]:
        forged = forge(
            h,
            session["access_token"],
            header={"alg": alg, "typ": "JWT", "kid": kid},
            digestmod=digestmod,
        )
        assert status(h, forged) == 401, alg


def test_asymmetric_header_with_hmac_signature_is_rejected(
    h: Harness, session: dict[str, Any]
) -> None:
    # The classic confusion: claim an asymmetric algorithm, sign with HMAC over a known key.
    kid, secret = real_key(h)
    for alg in ("RS256", "ES256", "PS256", "EdDSA"):
        for key in (secret, kid.encode()):
            forged = forge(
                h, session["access_token"], header={"alg": alg, "typ": "JWT", "kid": kid}, key=key
            )
            assert status(h, forged) == 401, alg


def test_kid_pointing_nowhere_is_rejected(h: Harness, session: dict[str, Any]) -> None:
    for kid in ("0000000000000000", "../../../../dev/null", "", 0, None, ["x"], "' OR '1'='1"):
        forged = forge(
            h, session["access_token"], header={"alg": "HS256", "typ": "JWT", "kid": kid}
        )
        assert status(h, forged) == 401, kid


def test_missing_kid_is_rejected(h: Harness, session: dict[str, Any]) -> None:
    forged = forge(h, session["access_token"], header={"alg": "HS256", "typ": "JWT"})
    assert status(h, forged) == 401


def test_right_kid_wrong_key_is_rejected(h: Harness, session: dict[str, Any]) -> None:
    forged = forge(h, session["access_token"], key=b"attacker-chosen-key-" * 4)
    assert status(h, forged) == 401


def test_embedded_jwk_is_not_trusted(h: Harness, session: dict[str, Any]) -> None:
    attacker = b"attacker-chosen-key-" * 4
    kid, _ = real_key(h)
    header = {
        "alg": "HS256",
        "typ": "JWT",
        "kid": kid,
        "jwk": {"kty": "oct", "k": b64url(attacker)},
        "jku": "https://evil.example/k",
    }
    assert status(h, forge(h, session["access_token"], header=header, key=attacker)) == 401


# -- tampering without the key -------------------------------------------------------------
@pytest.mark.parametrize("edit", ["extend_exp", "other_user", "other_session", "typ"])
def test_edited_claims_with_old_signature_are_rejected(
    h: Harness, session: dict[str, Any], edit: str
) -> None:
    token = session["access_token"]
    header, payload, signature = parts(token)
    if edit == "extend_exp":
        payload["exp"] += 30 * 24 * 3600
    elif edit == "other_user":
        payload["sub"] = "1" if payload["sub"] != "1" else "2"
    elif edit == "other_session":
        payload["sid"] = "A" * 22
    else:
        payload["typ"] = "admin"
    tampered = f"{b64url_json(header)}.{b64url_json(payload)}.{signature}"
    assert tampered != token
    assert status(h, tampered) == 401
    assert status(h, token) == 200  # the original is still fine


def test_extended_token_is_rejected_even_when_resigned(
    h: Harness, session: dict[str, Any], clock: FakeClock
) -> None:
    # With the real key but a lifetime beyond the configured 15 minutes.
    token = session["access_token"]
    assert status(h, forge(h, token, exp=parts(token)[1]["exp"] + 24 * 3600)) == 401
    clock.advance(901)
    assert status(h, token) == 401


# -- right key, wrong claims: only the claim checks stand in the way ------------------------
WRONG_CLAIMS: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({"typ": "refresh"}, ()),
    ({"typ": "mfa_challenge"}, ()),
    ({"typ": "ACCESS"}, ()),
    ({}, ("typ",)),
    ({"aud": "another-service"}, ()),
    ({"aud": ["another-service"]}, ()),
    ({}, ("aud",)),
    ({"iss": "https://evil.example"}, ()),
    ({}, ("iss",)),
    ({}, ("sid",)),
    ({}, ("exp",)),
    ({}, ("jti",)),
]


def test_right_key_wrong_claims_are_rejected(h: Harness, session: dict[str, Any]) -> None:
    for claims, drop in WRONG_CLAIMS:
        forged = forge(h, session["access_token"], drop=drop, **claims)
        assert status(h, forged) == 401, (claims, drop)


def test_right_key_future_nbf_or_iat_is_rejected(h: Harness, session: dict[str, Any]) -> None:
    token = session["access_token"]
    payload = parts(token)[1]
    later = payload["iat"] + 3600
    assert status(h, forge(h, token, nbf=later)) == 401
    assert status(h, forge(h, token, iat=later, nbf=later, exp=later + 600)) == 401
    assert status(h, forge(h, token, exp=str(payload["exp"]))) == 401


def test_session_of_one_user_cannot_carry_another_subject(
    h: Harness, session: dict[str, Any]
) -> None:
    """A forged `sub` (the admin's id) with the victim's live session id: the pair must match."""
    admin_name, admin_password = h.create_user("root-admin", Role.ADMIN)
    admin = h.login(admin_name, admin_password)
    forged = forge(h, session["access_token"], sub=str(admin["user"]["id"]))
    assert status(h, forged) == 401
    # Warm the session cache first, then try again: the cache must check the pair too.
    assert status(h, session["access_token"]) == 200
    assert status(h, forged) == 401


# -- tokens of another purpose --------------------------------------------------------------
def test_refresh_token_is_not_an_access_token(h: Harness, session: dict[str, Any]) -> None:
    response = h.client.get(ME, headers=h.bearer(session["refresh_token"]))
    assert response.status_code == 401
    assert status(h, session["session_id"]) == 401
    # And the refresh token still works for its own purpose (it was not what got refused).
    refreshed = h.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refreshed.status_code == 200


def test_cookie_secret_is_not_a_bearer_token(h: Harness) -> None:
    name, password = h.create_user("cookie-user")
    h.login(name, password, mode="cookie")
    secret = h.client.cookies.get("__Host-wakedock_session")
    assert secret
    h.client.cookies.clear()
    assert status(h, secret) == 401


@pytest.mark.parametrize(
    "authorization", ["Basic dmljdG9yOnB3", "Bearer", "Bearer ", "Token x", "bearer"]
)
def test_malformed_authorization_header(h: Harness, authorization: str) -> None:
    response = h.client.get(ME, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# -- expiry -------------------------------------------------------------------------------
def test_expired_access_token_is_rejected(
    h: Harness, session: dict[str, Any], clock: FakeClock
) -> None:
    token = session["access_token"]
    clock.advance(899)
    assert status(h, token) == 200
    clock.advance(2)  # 901 s after issue: past the 15-minute lifetime
    assert status(h, token) == 401
    # The session itself is alive: a refresh still gives a working token.
    refreshed = h.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert status(h, refreshed.json()["access_token"]) == 200


# -- revocation is immediate ----------------------------------------------------------------
def test_token_of_logged_out_session_is_rejected_at_once(
    h: Harness, session: dict[str, Any]
) -> None:
    token = session["access_token"]
    assert status(h, token) == 200  # validated once: now in the in-process cache
    logout = h.client.post("/api/v1/auth/logout", headers=h.bearer(token))
    assert logout.status_code == 204
    assert status(h, token) == 401
    again = h.client.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert again.status_code == 401


def test_token_of_session_revoked_by_admin_is_rejected_at_once(
    h: Harness, session: dict[str, Any]
) -> None:
    admin_name, admin_password = h.create_user("root-admin", Role.ADMIN)
    admin_token = h.login(admin_name, admin_password)["access_token"]
    token = session["access_token"]
    assert status(h, token) == 200  # cached
    revoked = h.client.delete(
        f"/api/v1/auth/sessions/{session['session_id']}", headers=h.bearer(admin_token)
    )
    assert revoked.status_code == 204
    assert status(h, token) == 401
    assert status(h, admin_token) == 200  # only that session went
