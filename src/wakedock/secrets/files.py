"""Secrets read from files: `WAKEDOCK_*_FILE` variables and secrets directories (/run/secrets).

A secret file must exist, be a regular file and not be readable by every user of the host:
mode 0600 or 0400 (0640/0440 when a group is meant to read it). Docker and Kubernetes mount
secrets 0444/0644 by default: set `mode: 0400` (Compose) or `defaultMode: 0400` (Kubernetes).
"""

from __future__ import annotations

import os
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
