"""The MFA login challenge: what the password step hands over to the code step.

A signed, short-lived token naming a single-use row: the code step spends it once, in the same
transaction that accepts the code and opens the session (a wrong code leaves it usable).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from wakedock.auth.models import User
from wakedock.auth.sessions import changed_rows
from wakedock.auth.tokens import AccessClaims, TokenCodec
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import NotAuthenticated
from wakedock.mfa.models import MfaChallenge

CHALLENGE_TYPE = "mfa_challenge"
_SPENT = "MFA challenge expired or already used: log in again"


@dataclass(frozen=True)
class Challenge:
    token: str
    expires_in: int


class ChallengeBook:
    """Issues challenges after a right password and redeems each once."""

    def __init__(
        self, factory: sessionmaker[Session], clock: Clock, codec: TokenCodec, *, seconds: int
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._codec = codec
        self._seconds = seconds

    def issue(self, user: User, context: RequestContext) -> Challenge:
        """The password step passed: a single-use challenge for the second factor."""
        now = self._clock.now()
        row = MfaChallenge(
            id=secrets.token_urlsafe(16),
            user_id=user.id,
            ip=(context.ip or "unknown")[:45],
            user_agent=(context.user_agent or "")[:512],
            created_at=now,
            expires_at=now + timedelta(seconds=self._seconds),
        )
        with transaction(self._factory) as db:
            db.add(row)
        token, _ = self._codec.issue(user.id, row.id)
        return Challenge(token=token, expires_in=self._seconds)

    def read(self, token: str) -> AccessClaims:
        """The claims of a challenge token (NotAuthenticated if forged or expired)."""
        return self._codec.decode(token)

    def check_live(self, db: Session, claims: AccessClaims) -> None:
        """NotAuthenticated unless the challenge is known, unexpired and unspent."""
        row = db.get(MfaChallenge, claims.session_id)
        if (
            row is None
            or row.user_id != claims.user_id
            or row.used_at is not None
            or (self._clock.now() >= row.expires_at)
        ):
            raise NotAuthenticated(_SPENT)

    def spend(self, db: Session, claims: AccessClaims) -> None:
        """Spend the challenge in the caller's transaction (once: a second spender is refused)."""
        used = changed_rows(
            db.execute(
                update(MfaChallenge)
                .where(MfaChallenge.id == claims.session_id, MfaChallenge.used_at.is_(None))
                .values(used_at=self._clock.now())
                .execution_options(synchronize_session=False)
            )
        )
        if used != 1:
            raise NotAuthenticated(_SPENT)
