"""Access tokens: short-lived JWTs, validated strictly. Refresh tokens are opaque (sessions.py)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from wakedock.auth.keys import Keyring
from wakedock.clock import Clock
from wakedock.errors import NotAuthenticated

# Fixed here, never read from the token: `none` and algorithm confusion are impossible.
ALGORITHM = "HS256"
ACCESS_TYPE = "access"
_REQUIRED = ["sub", "sid", "jti", "iat", "nbf", "exp", "iss", "aud", "typ"]
# Tolerance for clocks of other replicas when checking iat/nbf.
_SKEW = 5
_VERIFIED_MAX = 10_000


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    session_id: str
    jti: str
    expires_at: datetime


class TokenCodec:
    """Issues and validates JWTs of one purpose (`typ`) and audience."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        clock: Clock,
        token_type: str = ACCESS_TYPE,
    ) -> None:
        self._keyring = keyring
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds
        self._clock = clock
        self._type = token_type
        # Tokens already verified, until they expire: the signature and claims of a token never
        # change, so a repeat presentation skips the JWT parsing. Revocation is checked apart.
        self._verified: dict[str, AccessClaims] = {}

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    def issue(self, user_id: int, session_id: str) -> tuple[str, datetime]:
        now = self._clock.now()
        expires = now + timedelta(seconds=self._ttl)
        claims = {
            "sub": str(user_id),
            "sid": session_id,
            "jti": secrets.token_urlsafe(16),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "iss": self._issuer,
            "aud": self._audience,
            "typ": self._type,
        }
        key = self._keyring.current
        token = jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, expires

    def decode(self, token: str) -> AccessClaims:
        """Validate everything or raise NotAuthenticated (never says which check failed)."""
        known = self._verified.get(token)
        if known is not None and self._clock.now() < known.expires_at:
            return known
        try:
            claims = self._decode(token)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise NotAuthenticated("Invalid or expired token") from exc
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> AccessClaims:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
            raise ValueError("unexpected header")
        key = self._keyring.get(header["kid"])
        if key is None:
            raise ValueError("unknown kid")
        # Time claims are checked below against the injected clock.
        payload: dict[str, Any] = jwt.decode(
            token,
            key.secret,
            algorithms=[ALGORITHM],
            audience=self._audience,
            issuer=self._issuer,
            options={
                "require": _REQUIRED,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
        now = self._clock.now().timestamp()
        exp, nbf, iat = payload["exp"], payload["nbf"], payload["iat"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, nbf, iat)):
            raise ValueError("time claims must be integers")
        if now >= exp or nbf > now + _SKEW or iat > now + _SKEW or exp - iat > self._ttl:
            raise ValueError("outside validity window")
        if payload["typ"] != self._type:
            raise ValueError("wrong token type")
        sub, sid, jti = payload["sub"], payload["sid"], payload["jti"]
        if not (
            isinstance(sub, str) and sub.isdigit() and isinstance(sid, str) and isinstance(jti, str)
        ):
            raise ValueError("malformed subject")
        return AccessClaims(
            user_id=int(sub),
            session_id=sid,
            jti=jti,
            expires_at=datetime.fromtimestamp(exp, tz=self._clock.now().tzinfo),
        )
