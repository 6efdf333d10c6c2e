"""Environment and file secret providers (the Vault/OpenBao one is in vault.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from wakedock.secrets.base import SecretNotFound, SecretValue, check_name
from wakedock.secrets.files import read_secret_file

ENV_PREFIX = "WAKEDOCK_SECRET_"


def env_name(path: str, key: str) -> str:
    """`db/app#password` -> WAKEDOCK_SECRET_DB_APP_PASSWORD."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", f"{path}_{key}").upper()


class EnvProvider:
    name = "env"
    degraded = False

    def read(self, path: str, key: str) -> SecretValue:
        check_name(path, key)
        variable = env_name(path, key)
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
