"""Secrets in files: read (`WAKEDOCK_*_FILE` variables, secrets directories such as
/run/secrets), or generated once (the keys WakeDock makes for itself under its data directory).

A secret file must exist, be a regular file and not be readable by every user of the host:
mode 0600 or 0400 (0640/0440 when a group is meant to read it). Docker and Kubernetes mount
secrets 0444/0644 by default: set `mode: 0400` (Compose) or `defaultMode: 0400` (Kubernetes).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


class SecretFileError(ValueError):
    """The secret file cannot be used; the message says why and how to fix it."""


def read_secret_file(path: Path, *, what: str) -> str:
    """The file's content without surrounding whitespace; SecretFileError naming `what`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SecretFileError(f"{what}: {path} does not exist") from None
    except OSError as exc:
        raise SecretFileError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretFileError(f"{what}: {path} is not a regular file")
    if info.st_mode & 0o007:
        mode = oct(stat.S_IMODE(info.st_mode))[2:]
        raise SecretFileError(
            f"{what}: {path} is readable by every user (mode {mode}); run chmod 600 {path}"
        )
    try:
        content = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(f"{what}: cannot read {path}: {exc}") from None
    if not content:
        raise SecretFileError(f"{what}: {path} is empty")
    return content


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
