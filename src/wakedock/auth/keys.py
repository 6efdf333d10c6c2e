"""Signing keys: identified by `kid`; the keyring signs with one and accepts a few (rotation)."""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class SigningKey:
    kid: str
    secret: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> SigningKey:
        # The kid names the key without revealing it (a hash of 256 random bits).
        return cls(kid=hashlib.sha256(b"wakedock-kid:" + secret).hexdigest()[:16], secret=secret)

    def derive(self, purpose: str) -> bytes:
        """A separate key per purpose (CSRF, ...), so one never doubles as another."""
        return hmac.new(self.secret, b"wakedock-purpose:" + purpose.encode(), "sha256").digest()

    def __repr__(self) -> str:  # the secret must never reach a log through repr()
        return f"SigningKey(kid={self.kid!r})"


class Keyring:
    """The key new tokens are signed with, and every key still accepted for verification.

    Rotation replaces both at once (`replace`): readers always see a consistent pair.
    """

    def __init__(self, current: SigningKey, previous: list[SigningKey] | None = None) -> None:
        self._guard = threading.Lock()
        self._state = (current, {k.kid: k for k in [*(previous or []), current]})

    @property
    def current(self) -> SigningKey:
        return self._state[0]

    def get(self, kid: str) -> SigningKey | None:
        return self._state[1].get(kid)

    def accepted(self) -> list[SigningKey]:
        """Every key a token may be signed with; the current one first."""
        current, by_kid = self._state
        return [current, *(k for k in by_kid.values() if k.kid != current.kid)]

    def replace(self, current: SigningKey, previous: list[SigningKey]) -> None:
        with self._guard:
            self._state = (current, {k.kid: k for k in [*previous, current]})
