"""CSRF protection for cookie-authenticated requests: a token bound to the session secret."""

from __future__ import annotations

import base64
import hmac

from wakedock.auth.keys import Keyring

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(keyring: Keyring, session_secret: str) -> str:
    """The token a browser must echo in X-CSRF-Token; it changes with every session."""
    mac = hmac.new(keyring.current.derive("csrf"), session_secret.encode(), "sha256").digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_valid(keyring: Keyring, session_secret: str, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(keyring, session_secret), presented)
