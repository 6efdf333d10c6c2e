"""Wake authorization (S7.7): who may wake and reach a protected service.

The admin session cookie is host-only (`__Host-`), so a service host never sees it. A visitor of a
protected service is sent to the admin host (`/auth/proxy`), which, for a live session, issues a
60-second single-use ticket bound to that service host; the service host redeems it for its own
host-only cookie, a token bound to the same session (revocation and expiry apply at once).

A ticket is spent in the database (a claim on its id until its expiry, cluster/claims.py), so
it is redeemed once whichever worker process (or replica) sees it; a replay is refused and
audited as a reused token.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import record_event
from wakedock.auth.keys import Keyring
from wakedock.auth.sessions import Principal, SessionStore
from wakedock.auth.tokens import TokenCodec
from wakedock.clock import Clock
from wakedock.cluster.claims import claim_first
from wakedock.config import AuthSettings
from wakedock.context import RequestContext
from wakedock.db import transaction
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
        factory: sessionmaker[Session],
    ) -> None:
        self._keyring = keyring
        self._auth = auth
        self._sessions = sessions
        self._mfa = mfa
        self._clock = clock
        self._codecs: dict[tuple[str, str], TokenCodec] = {}
        self._factory = factory

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

    def redeem_ticket(self, ticket: str, host: str, context: RequestContext) -> str:
        """The proxy cookie value for a valid, unspent ticket of `host` (blocking: database).

        The ticket is spent first, in its own transaction: a replay on any worker finds it
        spent (and is audited), even when the session turns out to be over."""
        claims = self._codec(TICKET_TYPE, host).decode(ticket)
        now = self._clock.now()
        # A margin past the expiry: a replica whose clock runs behind still finds it spent.
        until = claims.expires_at + timedelta(seconds=TICKET_SECONDS)
        with transaction(self._factory) as db:
            first = claim_first(db, f"ticket:{claims.jti}", until, now=now)
            if not first:  # a replay: audited with the refusal, in the same transaction
                event = Event(
                    EventType.TOKEN_REUSE,
                    outcome=Outcome.DENIED,
                    target=host,
                    details={"kind": TICKET_TYPE, "user_id": claims.user_id, "action": "refused"},
                )
                record_event(db, event, context, at=now)
        if not first:
            raise NotAuthenticated("this sign-in link was already used")
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
