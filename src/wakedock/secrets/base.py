"""The one interface every secret is read through (S9): environment, files, or Vault/OpenBao.

A secret is named by a path and a key (`secret:<path>#<key>` in a service's environment). A
provider returns it with where it came from (never logged with its value), and keeps the last
value it read so that a backend outage at run time degrades instead of failing (S9).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from wakedock.errors import Conflict, DependencyUnavailable, NotFound, PermissionDenied

SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")


class SecretNotFound(NotFound):
    code = "secret_not_found"


class SecretForbidden(PermissionDenied):
    code = "secret_forbidden"


class SecretBackendUnavailable(DependencyUnavailable):
    code = "secrets_unavailable"


class SecretConflict(Conflict):
    code = "secret_conflict"


@dataclass(frozen=True)
class SecretVersion:
    version: int
    created_at: datetime
    live: bool = True  # False once deleted or destroyed


@dataclass(frozen=True)
class SecretValue:
    value: str
    # Where it came from, e.g. "vault:secret/wakedock/jwt#key (v3)"; safe to print.
    source: str
    version: int | None = None

    def __repr__(self) -> str:  # a value must never reach a log through repr()
        return f"SecretValue(source={self.source!r}, version={self.version})"


def check_name(path: str, key: str) -> None:
    """Paths and keys are plain segments: no '..', no absolute paths, no separators in keys."""
    parts = path.split("/")
    if not all(SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts):
        raise ValueError(f"invalid secret path {path!r}")
    if not SEGMENT.fullmatch(key) or key in (".", ".."):
        raise ValueError(f"invalid secret key {key!r}")


class SecretProvider(Protocol):
    name: str

    @property
    def degraded(self) -> bool:
        """True while values are served from memory because the backend is unavailable."""
        ...

    def read(self, path: str, key: str) -> SecretValue:
        """The current value (SecretNotFound, SecretForbidden, SecretBackendUnavailable)."""
        ...

    def close(self) -> None: ...


class LastKnownGood:
    """Values read before, kept in memory only, served while the backend is unavailable."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], SecretValue] = {}
        self._guard = threading.Lock()
        self.degraded = False

    def remember(self, path: str, key: str, value: SecretValue) -> SecretValue:
        with self._guard:
            self._values[(path, key)] = value
            self.degraded = False
        return value

    def fallback(self, path: str, key: str, error: SecretBackendUnavailable) -> SecretValue:
        with self._guard:
            self.degraded = True
            known = self._values.get((path, key))
        if known is None:
            raise error
        return known
