"""Vault / OpenBao KV v2 through hvac: token, AppRole or Kubernetes login, TLS verified.

Start-up calls `check()`: an unreachable, uninitialised or sealed server stops WakeDock with a
message saying which. At run time a read that fails for availability returns the last value read
(kept in memory only) and marks the provider degraded. The token is renewed when a third of its
lease is left, and acquired again through the auth method when renewal fails; `close()` revokes
it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import hvac
import hvac.exceptions
import requests.exceptions

from wakedock.errors import InvalidInput
from wakedock.secret_files import read_secret_file
from wakedock.secrets.base import (
    LastKnownGood,
    SecretBackendUnavailable,
    SecretConflict,
    SecretForbidden,
    SecretNotFound,
    SecretValue,
    SecretVersion,
    check_name,
)

K8S_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_UNAVAILABLE = (
    hvac.exceptions.VaultDown,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)

_T = TypeVar("_T")


def _timestamp(text: str) -> datetime:
    # Vault writes RFC 3339 with nanoseconds ("2026-11-28T07:30:32.123456789Z").
    head, _, rest = text.rstrip("Z").partition(".")
    micros = (rest + "000000")[:6] if rest else "000000"
    return datetime.fromisoformat(f"{head}.{micros}+00:00")


@dataclass(frozen=True)
class VaultAuth:
    method: Literal["token", "approle", "kubernetes"]
    token: str | None = None
    role_id: str | None = None
    secret_id: str | None = None
    secret_id_file: Path | None = None
    kubernetes_role: str | None = None
    kubernetes_jwt_file: Path = K8S_TOKEN


class VaultProvider:
    def __init__(
        self,
        url: str,
        auth: VaultAuth,
        *,
        mount: str = "secret",
        namespace: str | None = None,
        ca_file: Path | None = None,
        timeout: int = 5,
    ) -> None:
        self.name = f"vault:{url}"
        self._url = url
        self._auth = auth
        self._mount = mount
        # Verification is always on: the system store, or the given CA bundle.
        verify: str | bool = str(ca_file) if ca_file is not None else True
        self._client = hvac.Client(url=url, namespace=namespace, verify=verify, timeout=timeout)
        self._cache = LastKnownGood()
        self._lock = threading.Lock()
        self._renew_at = 0.0
        self._expires_at = float("inf")

    @property
    def degraded(self) -> bool:
        return self._cache.degraded

    def check(self) -> None:
        """Raise SecretBackendUnavailable saying whether the server is down, uninitialised or
        sealed; then log in."""
        try:
            answer = self._client.sys.read_health_status(method="GET")
            # hvac returns a dict for 200 and the raw response for the other health codes.
            status: dict[str, Any] = answer if isinstance(answer, dict) else answer.json()
        except _UNAVAILABLE as exc:
            raise SecretBackendUnavailable(f"Vault at {self._url} is unreachable: {exc}") from None
        if not status.get("initialized", False):
            raise SecretBackendUnavailable(f"Vault at {self._url} is not initialised")
        if status.get("sealed", True):
            raise SecretBackendUnavailable(f"Vault at {self._url} is sealed")
        with self._lock:
            self._login()

    def _login(self) -> None:
        auth = self._auth
        response: dict[str, Any] | None = None
        try:
            if auth.method == "token":
                if not auth.token:
                    raise SecretForbidden("Vault token authentication needs a token")
                self._client.token = auth.token
                response = {"auth": self._client.auth.token.lookup_self()["data"]}
                ttl = int(response["auth"].get("ttl") or 0)
            elif auth.method == "approle":
                secret_id = auth.secret_id
                if auth.secret_id_file is not None:
                    secret_id = read_secret_file(auth.secret_id_file, what="vault secret_id_file")
                response = self._client.auth.approle.login(
                    role_id=auth.role_id, secret_id=secret_id
                )
                ttl = int(response["auth"]["lease_duration"])
            else:
                jwt = read_secret_file(auth.kubernetes_jwt_file, what="kubernetes token")
                response = self._client.auth.kubernetes.login(role=auth.kubernetes_role, jwt=jwt)
                ttl = int(response["auth"]["lease_duration"])
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest) as exc:
            # A wrong role or secret id is a 400 in Vault/OpenBao, a bad token a 403.
            raise SecretForbidden(f"Vault refused the {auth.method} login") from exc
        except _UNAVAILABLE as exc:
            raise SecretBackendUnavailable(f"Vault at {self._url} is unreachable") from exc
        now = time.monotonic()
        # ttl 0 means a token that never expires (e.g. a root token).
        self._expires_at = now + ttl if ttl else float("inf")
        self._renew_at = now + ttl * 2 / 3 if ttl else float("inf")

    def _fresh_token(self) -> None:
        now = time.monotonic()
        if now < self._renew_at:
            return
        if now >= self._expires_at - 1:
            self._login()  # expired (or about to): renewing is no longer possible
            return
        try:
            renewed = self._client.auth.token.renew_self()
            ttl = int(renewed["auth"]["lease_duration"])
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            self._login()  # not renewable any more: acquire a new token
            return
        now = time.monotonic()
        # Past its max TTL a token is renewed for less than asked, down to nothing: log in
        # again when what is left runs out.
        self._expires_at, self._renew_at = now + ttl, now + ttl * 2 / 3

    def _token_dead(self) -> bool:
        """After a 403: True when our own token no longer works (expired or revoked)."""
        try:
            self._client.auth.token.lookup_self()
        except hvac.exceptions.Forbidden:
            return True
        return False

    def _call(self, path: str, action: Callable[[], _T]) -> _T:
        """Run one KV call with a fresh token; map Vault's answers to the secret errors. A 403
        caused by a dead token (revoked, expired early) is retried once after a new login."""
        try:
            with self._lock:
                self._fresh_token()
                try:
                    return action()
                except hvac.exceptions.Forbidden:
                    if self._auth.method == "token" or not self._token_dead():
                        raise
                    self._login()
                    return action()
        except hvac.exceptions.InvalidPath:
            raise SecretNotFound(f"secret {path} does not exist in Vault") from None
        except hvac.exceptions.Forbidden:
            raise SecretForbidden(f"Vault refused access to {path}") from None
        except hvac.exceptions.InvalidRequest as exc:
            if "check-and-set" in str(exc):
                raise SecretConflict(f"secret {path} changed meanwhile") from None
            raise InvalidInput(f"Vault refused the request on {path}") from None
        except (
            *_UNAVAILABLE,
            hvac.exceptions.VaultNotInitialized,
            hvac.exceptions.VaultError,  # rate limited, unexpected answers: not usable now
            SecretBackendUnavailable,
        ) as exc:
            unavailable = SecretBackendUnavailable(f"Vault at {self._url} is unavailable")
            unavailable.__cause__ = exc
            raise unavailable from exc

    def read(self, path: str, key: str, version: int | None = None) -> SecretValue:
        """The current value (or an older `version`); the last one read while Vault is down."""
        check_name(path, key)
        try:
            response = self._call(
                path,
                lambda: self._client.secrets.kv.v2.read_secret_version(
                    path=path, version=version, mount_point=self._mount,
                    raise_on_deleted_version=True,
                ),
            )  # fmt: skip
        except SecretBackendUnavailable as exc:
            if version is not None:
                self._cache.degraded = True
                raise
            return self._cache.fallback(path, key, exc)
        data = response["data"]["data"]
        if key not in data:
            raise SecretNotFound(f"secret {path} has no key {key!r}")
        number = int(response["data"]["metadata"]["version"])
        value = SecretValue(str(data[key]), f"vault:{self._mount}/{path}#{key} (v{number})", number)
        if version is not None:
            return value
        return self._cache.remember(path, key, value)

    def read_all(self, path: str) -> dict[str, str]:
        """Every key of the current version (to write a new version that keeps them)."""
        check_name(path, "data")
        response = self._call(
            path,
            lambda: self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self._mount, raise_on_deleted_version=True
            ),
        )
        return {str(k): str(v) for k, v in response["data"]["data"].items()}

    def versions(self, path: str) -> list[SecretVersion]:
        """Every version of a secret, oldest first; deleted or destroyed ones are not live."""
        check_name(path, "metadata")
        try:
            response = self._call(
                path,
                lambda: self._client.secrets.kv.v2.read_secret_metadata(
                    path=path, mount_point=self._mount
                ),
            )
        except SecretBackendUnavailable:
            self._cache.degraded = True
            raise
        self._cache.degraded = False
        found = []
        for number, meta in response["data"]["versions"].items():
            live = not (meta.get("destroyed") or meta.get("deletion_time"))
            found.append(SecretVersion(int(number), _timestamp(meta["created_time"]), live))
        return sorted(found, key=lambda v: v.version)

    def keys(self, path: str) -> list[str]:
        """The names under a folder (folders end with '/'); [] when there is none."""
        if path:
            check_name(path, "list")
        try:
            response = self._call(
                path or "/",
                lambda: self._client.secrets.kv.v2.list_secrets(path=path, mount_point=self._mount),
            )
        except SecretNotFound:
            return []
        return sorted(str(k) for k in response["data"]["keys"])

    def write(self, path: str, values: dict[str, str], *, cas: int | None = None) -> int:
        """Write a new KV version (rotation); its number. With `cas`, only if the current
        version is still `cas` (SecretConflict otherwise: someone else wrote first)."""
        for key in values:
            check_name(path, key)
        response = self._call(
            path,
            lambda: self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=values, cas=cas, mount_point=self._mount
            ),
        )
        return int(response["data"]["version"])

    def close(self) -> None:
        """Revoke the token this process logged in with (a configured token is left alone)."""
        if self._auth.method == "token":
            return
        try:
            self._client.auth.token.revoke_self()
        except (*_UNAVAILABLE, hvac.exceptions.Forbidden):
            pass
