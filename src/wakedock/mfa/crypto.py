"""Encryption at rest for MFA secrets: AES-256-GCM, the key outside the database."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from wakedock.secret_files import load_or_create_key_file

_VERSION = "v1"


class SecretBox:
    """Seals short secrets. Each ciphertext is bound to a context (e.g. the user id), so a
    sealed value copied to another row does not open there."""

    def __init__(self, key_material: bytes) -> None:
        if len(key_material) < 32:
            raise ValueError("encryption key material must be at least 32 bytes")
        # Any >= 32-byte material becomes a uniform 256-bit key.
        self._aead = AESGCM(hashlib.sha256(b"wakedock-secretbox:" + key_material).digest())

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{_VERSION}:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, context: str) -> str:
        version, _, payload = sealed.partition(":")
        if version != _VERSION:
            raise ValueError("unknown sealed-secret version")
        raw = base64.urlsafe_b64decode(payload)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag as exc:
            raise ValueError("sealed secret does not open (wrong key or context)") from exc


def make_secret_box(configured: SecretStr | None, data_dir: Path) -> SecretBox:
    """The box sealing TOTP secrets: configured key, or one generated once (0600)."""
    if configured is not None:
        return SecretBox(configured.get_secret_value().encode())
    return SecretBox(load_or_create_key_file(data_dir / "secrets" / "mfa_encryption_key"))
