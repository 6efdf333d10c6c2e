"""Wake authorization (S7.7): who may wake and reach a protected service.

The admin session cookie is host-only (`__Host-`), so a service host never sees it. A visitor of a
protected service is sent to the admin host (`/auth/proxy`), which, for a live session, issues a
60-second single-use ticket bound to that service host; the service host redeems it for its own
host-only cookie, a token bound to the same session (revocation and expiry apply at once).
"""

from __future__ import annotations

import threading
from datetime import datetime
from enum import StrEnum

from wakedock.auth.keys import Keyring
from wakedock.auth.sessions import Principal, SessionStore
from wakedock.auth.tokens import TokenCodec
from wakedock.clock import Clock
from wakedock.config import AuthSettings
from wakedock.errors import NotAuthenticated
from wakedock.mfa.service import MfaService
from wakedock.services.snapshots import ServiceView

# Where a service host sends a visitor without access, on the admin host (proxy/handoff.py).
HANDOFF_PATH = "/auth/proxy"
TICKET_TYPE = "proxy_ticket"
COOKIE_TYPE = "proxy"
TICKET_SECONDS = 60
SECURE_COOKIE = "__Host-wakedock_proxy"
# Over plain HTTP (`--insecure-http`, local testing) browsers refuse `__Host-` cookies.
PLAIN_COOKIE = "wakedock_proxy"


class Access(StrEnum):
    """May this visitor use this service?"""

    ALLOW = "allow"
    # No usable session (none, expired, or MFA enrolment pending): sign in first.
    LOGIN = "login"
    # Signed in, but the service's access policy does not admit this role.
    FORBIDDEN = "forbidden"


def cookie_name(scheme: str) -> str:
    return SECURE_COOKIE if scheme == "https" else PLAIN_COOKIE


class ProxyAccess:
    def __init__(
        self,
        keyring: Keyring,
        auth: AuthSettings,
        sessions: SessionStore,
        mfa: MfaService,
        clock: Clock,
    ) -> None:
        self._keyring = keyring
        self._auth = auth
        self._sessions = sessions
        self._mfa = mfa
        self._clock = clock
        self._codecs: dict[tuple[str, str], TokenCodec] = {}
        self._spent: dict[str, datetime] = {}
        self._guard = threading.Lock()

    @property
    def cookie_seconds(self) -> int:
        """How long a service host's cookie lives: as long as a session may."""
        return self._auth.session_absolute_seconds

    def _codec(self, kind: str, host: str) -> TokenCodec:
        # The audience names the host: a ticket or cookie for one service is useless on another.
        key = (kind, host)
        codec = self._codecs.get(key)
        if codec is None:
            ttl = TICKET_SECONDS if kind == TICKET_TYPE else self._auth.session_absolute_seconds
            codec = TokenCodec(
                self._keyring,
                issuer=self._auth.jwt_issuer,
                audience=f"{self._auth.jwt_audience}-{kind}:{host}",
                ttl_seconds=ttl,
                clock=self._clock,
                token_type=kind,
            )
            self._codecs[key] = codec
        return codec

    def issue_ticket(self, principal: Principal, host: str) -> str:
        token, _expires = self._codec(TICKET_TYPE, host).issue(
            principal.user_id, principal.session_id
        )
        return token

    def redeem_ticket(self, ticket: str, host: str) -> str:
        """The proxy cookie value for a valid, unspent ticket of `host` (blocking: DB lookup)."""
        claims = self._codec(TICKET_TYPE, host).decode(ticket)
        now = self._clock.now()
        with self._guard:
            self._spent = {jti: exp for jti, exp in self._spent.items() if exp > now}
            if claims.jti in self._spent:
                raise NotAuthenticated("this sign-in link was already used")
            self._spent[claims.jti] = claims.expires_at
        if self._sessions.principal(claims.session_id, claims.user_id) is None:
            raise NotAuthenticated("the session has ended; sign in again")
        token, _expires = self._codec(COOKIE_TYPE, host).issue(claims.user_id, claims.session_id)
        return token

    def principal(self, cookie: str | None, host: str) -> Principal | None:
        """The live principal behind a proxy cookie of `host` (blocking: DB lookup on a miss)."""
        if not cookie:
            return None
        try:
            claims = self._codec(COOKIE_TYPE, host).decode(cookie)
        except NotAuthenticated:
            return None
        cached = self._sessions.cached(claims.session_id, claims.user_id)
        return cached or self._sessions.principal(claims.session_id, claims.user_id)

    def decide(self, view: ServiceView, principal: Principal | None) -> Access:
        """Whether `principal` (None: anonymous) may use (and so wake) the service."""
        access = view.spec.access
        if access.policy == "public":
            return Access.ALLOW
        if principal is None or self._mfa.enrolment_pending(principal):
            return Access.LOGIN
        if access.policy == "roles" and principal.role not in access.roles:
            return Access.FORBIDDEN
        return Access.ALLOW
