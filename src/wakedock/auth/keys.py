"""Signing keys: identified by `kid`, generated once when none is configured."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
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


class Keyring:
    """The key new tokens are signed with, and every key still accepted for verification."""

    def __init__(self, current: SigningKey, previous: list[SigningKey] | None = None) -> None:
        self.current = current
        self._by_kid = {k.kid: k for k in [*(previous or []), current]}

    def get(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)


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
