"""Backup codes: ten `XXXX-XXXX` codes, shown once, stored as password hashes."""

from __future__ import annotations

import secrets

# No 0/O or 1/I: codes are read off paper. 32 symbols, 8 of them: 40 bits per code.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
COUNT = 10


def generate() -> list[str]:
    codes = []
    for _ in range(COUNT):
        raw = "".join(secrets.choice(ALPHABET) for _ in range(8))
        codes.append(f"{raw[:4]}-{raw[4:]}")
    return codes


def normalise(code: str) -> str | None:
    """The canonical `XXXX-XXXX` form of what a user typed, or None if it cannot be one."""
    raw = code.strip().upper().replace("-", "").replace(" ", "")
    if len(raw) != 8 or any(ch not in ALPHABET for ch in raw):
        return None
    return f"{raw[:4]}-{raw[4:]}"
