"""Environment and file secret providers (the Vault/OpenBao one is in vault.py)."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

from wakedock.secret_files import read_secret_file
from wakedock.secrets.base import (
    SecretBackendUnavailable,
    SecretNotFound,
    SecretProvider,
    SecretValue,
    check_name,
)
from wakedock.secrets.vault import VaultProvider

ENV_PREFIX = "WAKEDOCK_SECRET_"


_ENV_SEGMENT = re.compile(r"^[A-Z0-9]+(?:_[A-Z0-9]+)*$")


def secret_variable(path: str, key: str) -> str:
    """`db/app#password` -> WAKEDOCK_SECRET_DB__APP__PASSWORD.

    Segments are joined with `__` and may not produce `__` themselves, so two different paths
    never name the same variable across folders (`services/web-admin#x` is not
    `services/web#admin_x`). Within a segment, `-` and `.` read as `_`, and case is folded.
    """
    parts = []
    for segment in [*path.split("/"), key]:
        mapped = re.sub(r"[^A-Za-z0-9]", "_", segment).upper()
        if not _ENV_SEGMENT.fullmatch(mapped):
            raise ValueError(
                f"secret name segment {segment!r} cannot be an environment variable name part "
                "(no leading, trailing or doubled _ - .)"
            )
        parts.append(mapped)
    return ENV_PREFIX + "__".join(parts)


class EnvProvider:
    name = "env"
    degraded = False

    def read(self, path: str, key: str) -> SecretValue:
        check_name(path, key)
        variable = secret_variable(path, key)
        value = os.environ.get(variable)
        if value is None:
            raise SecretNotFound(f"secret {path}#{key} is not set (expected {variable})")
        return SecretValue(value, f"env:{variable}")

    def close(self) -> None:
        return None


class FileProvider:
    """A secrets directory (Docker/Kubernetes style): `<dir>/<path>/<key>`, or flat
    `<dir>/<path with / as _>_<key>` as Docker Swarm names them."""

    degraded = False

    def __init__(self, directory: Path) -> None:
        self.name = f"file:{directory}"
        self._directory = directory

    def read(self, path: str, key: str) -> SecretValue:
        check_name(path, key)
        root = self._directory.resolve()
        for candidate in (root / path / key, root / f"{path.replace('/', '_')}_{key}"):
            # check_name already refuses '..': resolving guards against symlinks out of the root.
            if candidate.exists() and candidate.resolve().is_relative_to(root):
                value = read_secret_file(candidate, what=f"secret {path}#{key}")
                return SecretValue(value, f"file:{candidate}")
        raise SecretNotFound(f"secret {path}#{key} has no file in {self._directory}")

    def close(self) -> None:
        return None


class WithFallback:
    """Vault first; while Vault cannot be used, an explicitly configured fallback provider
    (`secrets.vault_fallback`). Never chosen silently: without it an unavailable Vault stops
    start-up. While the fallback serves, the provider is degraded and Vault is retried."""

    RETRY_SECONDS = 5.0

    def __init__(self, primary: VaultProvider, fallback: SecretProvider, *, ready: bool) -> None:
        self.name = f"{primary.name} (fallback {fallback.name})"
        self.primary = primary
        self._fallback = fallback
        self._ready = ready
        self._retry_at = 0.0
        self._probing = threading.Lock()

    @property
    def degraded(self) -> bool:
        return not self._ready or self.primary.degraded

    def probe(self) -> bool:
        """Whether Vault serves (again). One caller at a time tries it, at most every
        RETRY_SECONDS; meanwhile the others are told no (and use the fallback)."""
        if self._ready:
            return True
        if time.monotonic() < self._retry_at or not self._probing.acquire(blocking=False):
            return False
        try:
            self.primary.check()
            self._ready = True
        except SecretBackendUnavailable:
            pass
        finally:
            self._retry_at = time.monotonic() + self.RETRY_SECONDS
            self._probing.release()
        return self._ready

    def read(self, path: str, key: str) -> SecretValue:
        if not self.probe():
            return self._fallback.read(path, key)
        try:
            return self.primary.read(path, key)
        except SecretBackendUnavailable:
            return self._fallback.read(path, key)

    def close(self) -> None:
        self.primary.close()
        self._fallback.close()


def vault_of(provider: SecretProvider | None) -> VaultProvider | None:
    """The Vault behind a provider, if it is one that Vault currently serves."""
    if isinstance(provider, WithFallback):
        return provider.primary if not provider.degraded else None
    return provider if isinstance(provider, VaultProvider) else None
