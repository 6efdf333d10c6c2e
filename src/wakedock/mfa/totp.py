"""TOTP (RFC 6238: 30-second steps, 6 digits, SHA-1 as authenticator apps expect)."""

from __future__ import annotations

import base64
import hmac
import io
from datetime import datetime

import pyotp
import qrcode
import qrcode.image.pure

STEP_SECONDS = 30
DIGITS = 6
ISSUER = "WakeDock"


def new_secret() -> str:
    """160 random bits, base32 (RFC 4226's recommended length)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def qr_png_base64(uri: str) -> str:
    """The otpauth URI as a QR code PNG, base64-encoded for JSON."""
    image = qrcode.make(uri, image_factory=qrcode.image.pure.PyPNGImage, box_size=8, border=4)
    buffer = io.BytesIO()
    image.save(buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def current_step(at: datetime) -> int:
    return int(at.timestamp()) // STEP_SECONDS


def matching_step(secret: str, code: str, at: datetime, window: int = 1) -> int | None:
    """The time step whose code equals `code` (within +-window steps), or None.

    Returning the step lets the caller refuse any step at or before the last one used (replay).
    """
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    now = current_step(at)
    found = None
    # Compare against every candidate: no early exit that times which step matched.
    for step in range(now - window, now + window + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found
