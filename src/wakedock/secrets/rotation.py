"""JWT signing key rotation (S9.3): which key versions verify, which one signs, and when.

Every version of the key has a number and a creation time (secrets/keysources.py). A new version
verifies at once and signs once every replica had time to read it; an older version stays
accepted until every token it could have signed has expired: `lifetime` after the next version
was created. The keyring is therefore the same on every replica and after a restart.

Every process (worker or replica) follows the source on its own; what it notices (a version
accepted, signing, retired) is audited by the first one only (a claim per version and action,
cluster/claims.py), so the trail has one event per change however many processes run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType
from wakedock.audit.service import record_event
from wakedock.auth.keys import Keyring, SigningKey
from wakedock.clock import Clock
from wakedock.cluster.claims import claim_first
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.secrets.base import SecretConflict, SecretNotFound, SecretVersion
from wakedock.secrets.keysources import KEY_SETTING, KeySource, RotationUnsupported

log = logging.getLogger(__name__)
# How long "this change was audited" is remembered: far longer than any process takes to read
# the source again (at most `secrets.refresh_seconds`, one hour, plus its backoff).
AUDITED_ONCE = timedelta(days=1)


@dataclass(frozen=True)
class KeyringState:
    current: int  # signs new tokens
    accepted: tuple[int, ...]  # verify tokens
    newest: int  # the newest version that exists, deleted or not
    newest_live: bool


def plan(
    history: list[SecretVersion], now: datetime, lifetime: timedelta, publish: timedelta
) -> KeyringState:
    """Which versions verify, and which one signs.

    - A live version is accepted until `lifetime` after its successor was created (deleted
      versions count as successors: deleting a version never brings an older one back).
    - A new version is accepted at once but signs only `publish` after it was created, when
      every replica has read it: none refuses a token signed with it.
    """
    ordered = sorted(history, key=lambda v: v.version)
    successors: list[SecretVersion | None] = [*ordered[1:], None]
    accepted = [
        v
        for v, after in zip(ordered, successors, strict=True)
        if v.live and (after is None or after.created_at + lifetime > now)
    ]
    if not accepted:
        raise SecretNotFound("no live version of the signing key")
    published = [v for v in accepted if v.created_at + publish <= now]
    current = (published or accepted[:1])[-1]  # none published yet: the oldest is known widest
    return KeyringState(
        current.version, tuple(v.version for v in accepted), ordered[-1].version, ordered[-1].live
    )


class JwtKeys:
    """Keeps the keyring in step with its source; rotates on demand and on a schedule."""

    def __init__(
        self,
        source: KeySource,
        clock: Clock,
        factory: sessionmaker[Session],
        *,
        lifetime: timedelta,
        publish: timedelta,
        rotate_every: timedelta | None,
    ) -> None:
        self.source = source
        self._clock = clock
        self._factory = factory
        self._lifetime = lifetime
        self._publish = publish
        self._rotate_every = rotate_every
        self._history = source.history()
        self._state = plan(self._history, clock.now(), lifetime, publish)
        self.keyring = Keyring(*self._keys(self._state))

    @property
    def current_version(self) -> int:
        """The version new tokens are signed with."""
        return self._state.current

    @property
    def newest_version(self) -> int:
        return self._state.newest

    @property
    def publication_delay(self) -> timedelta:
        """How old a new version must be before it signs (every replica has read it by then)."""
        return self._publish

    def kid(self, version: int) -> str:
        """The `kid` header of the tokens `version` signs."""
        return SigningKey.from_secret(self.source.secret(version)).kid

    def _keys(self, state: KeyringState) -> tuple[SigningKey, list[SigningKey]]:
        current = SigningKey.from_secret(self.source.secret(state.current))
        previous = [
            SigningKey.from_secret(self.source.secret(v))
            for v in state.accepted
            if v != state.current
        ]
        return current, previous

    def refresh(self, context: RequestContext) -> bool:
        """Re-read the source; sign with a published version, retire expired or deleted ones
        (each audited first: nothing changes unless it is recorded)."""
        history = self.source.history()
        state = plan(history, self._clock.now(), self._lifetime, self._publish)
        if not state.newest_live and state.newest != self._state.newest:
            log.error("the newest signing key version (%s) was deleted", state.newest)
        if state == self._state:
            return False
        keys = self._keys(state)
        before = self._state
        retired = sorted(set(before.accepted) - set(state.accepted))
        with transaction(self._factory) as db:
            for version in sorted(set(state.accepted) - set(before.accepted)):
                self._record_once(db, context, "accepted", version)  # read: verifies from now
            if state.current != before.current:
                self._record_once(db, context, "signing", state.current)
            for version in retired:
                self._record_once(db, context, "retired", version)
        self.keyring.replace(*keys)
        self._state, self._history = state, history
        for version in retired:
            self.source.retire(version)
        return True

    def rotate(self, context: RequestContext, reason: str = "requested") -> int:
        """Write a new key version; it signs once every replica had time to read it."""
        version = self.source.rotate(self._state.newest)
        with transaction(self._factory) as db:
            self._record(db, context, "rotated", version, reason)
        self.refresh(context)
        return version

    def _due(self, history: list[SecretVersion]) -> str | None:
        """Why a rotation is due: the newest version was deleted, or the interval passed."""
        newest = max(history, key=lambda v: v.version)
        if not newest.live:
            return "the newest version was deleted"
        if self._rotate_every is None:
            return None
        return "scheduled" if self._clock.now() - newest.created_at >= self._rotate_every else None

    def tick(self, context: RequestContext) -> None:
        """One scheduler pass: rotate when due (another replica may win), follow the source."""
        history = self.source.history()
        reason = self._due(history)
        if reason is not None:
            try:
                version = self.source.rotate(max(v.version for v in history))
                with transaction(self._factory) as db:
                    self._record(db, context, "rotated", version, reason)
            except SecretConflict:
                pass  # another replica rotated first: follow its key
            except RotationUnsupported:
                self._rotate_every = None  # a fixed key: nothing to schedule
        self.refresh(context)

    def _record_once(self, db: Session, context: RequestContext, action: str, version: int) -> None:
        """Audit what every process notices on its own only in the first one to notice."""
        now = self._clock.now()
        key = f"audit:{KEY_SETTING}:{self.source.origin}:{action}:{version}"
        if claim_first(db, key, now + AUDITED_ONCE, now=now):
            self._record(db, context, action, version)

    def _record(
        self,
        db: Session,
        context: RequestContext,
        action: str,
        version: int,
        reason: str | None = None,
    ) -> None:
        details: dict[str, object] = {
            "action": action,
            "version": version,
            "source": self.source.origin,
        }
        if reason is not None:
            details["reason"] = reason
        event = Event(EventType.SECRET_ROTATION, target=KEY_SETTING, details=details)
        record_event(db, event, context, at=self._clock.now())
