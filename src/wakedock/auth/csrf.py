"""CSRF protection for cookie-authenticated requests: a token bound to the session secret."""

from __future__ import annotations

import base64
import hmac

from wakedock.auth.keys import Keyring, SigningKey

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _token(key: SigningKey, session_secret: str) -> str:
    mac = hmac.new(key.derive("csrf"), session_secret.encode(), "sha256").digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_token(keyring: Keyring, session_secret: str) -> str:
    """The token a browser must echo in X-CSRF-Token; it changes with every session."""
    return _token(keyring.current, session_secret)


def csrf_valid(keyring: Keyring, session_secret: str, presented: str | None) -> bool:
    """Valid under any accepted key: a page loaded before a key rotation keeps working."""
    if not presented:
        return False
    return any(
        hmac.compare_digest(_token(key, session_secret), presented) for key in keyring.accepted()
    )
