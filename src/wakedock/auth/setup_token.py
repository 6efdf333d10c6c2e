"""The one-time first-admin setup token, printed at first start and valid 15 minutes."""

from __future__ import annotations

import hmac
import secrets
import threading
from datetime import datetime, timedelta

from wakedock.auth.sessions import digest
from wakedock.clock import Clock


class SetupToken:
    """Held in memory only (hashed): it dies with the process that printed it."""

    def __init__(self, clock: Clock, *, ttl_seconds: int) -> None:
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._hash: str | None = None
        self._expires: datetime | None = None
        self._lock = threading.Lock()

    def issue(self) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._hash = digest(token)
            self._expires = self._clock.now() + self._ttl
            return token, self._expires

    def matches(self, token: str) -> bool:
        """True for the right, unexpired token, without spending it."""
        with self._lock:
            if self._hash is None or self._expires is None or self._clock.now() >= self._expires:
                return False
            return hmac.compare_digest(self._hash, digest(token))

    def consume(self, token: str) -> bool:
        """True once for the right, unexpired token; the token is then gone."""
        with self._lock:
            if self._hash is None or self._expires is None:
                return False
            if self._clock.now() >= self._expires:
                self._hash = None
                return False
            if not hmac.compare_digest(self._hash, digest(token)):
                return False
            self._hash = None
            return True

    @property
    def pending(self) -> bool:
        with self._lock:
            return (
                self._hash is not None
                and self._expires is not None
                and (self._clock.now() < self._expires)
            )

    def handed_over(self) -> str | None:
        """The pending token's digest and expiry, for worker processes the printing process
        starts (server/workers.py): never the token itself."""
        with self._lock:
            if self._hash is None or self._expires is None:
                return None
            return f"{self._hash} {self._expires.isoformat()}"

    def take_over(self, handed: str) -> None:
        """Accept the token another process printed (see `handed_over`)."""
        digest_hex, expires = handed.split(" ", 1)
        with self._lock:
            self._hash, self._expires = digest_hex, datetime.fromisoformat(expires)
