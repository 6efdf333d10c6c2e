"""Signing keys: identified by `kid`; the keyring signs with one and accepts a few (rotation)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path


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


def load_or_create_key_file(path: Path) -> bytes:
    """Read the key file, or create it with 256 random bits, readable by the owner only."""
    if path.exists():
        data = path.read_bytes().strip()
        if len(data) < 32:
            raise ValueError(f"{path}: signing key shorter than 32 bytes")
        return data
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = secrets.token_urlsafe(48).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return data
