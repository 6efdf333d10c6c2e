"""The secrets API's rules (S9, issue #7 point 6): list, describe, write, and reveal secrets.

Only the folder `secrets.service_prefix` of the provider is reachable (the services' secrets);
WakeDock's own keys are managed in Vault/OpenBao directly. Descriptions never hold values.
Revealing a value needs `secrets:reveal` and a fresh MFA proof (checked by the router) and is
audited; so is every write (the key names and the new version, never the values).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import record_alone
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.errors import Conflict, InvalidInput, WakeDockError
from wakedock.secrets.base import SecretNotFound, SecretProvider, check_name
from wakedock.secrets.providers import vault_of
from wakedock.secrets.vault import VaultProvider


class SecretsReadOnly(Conflict):
    code = "secrets_read_only"


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at: datetime
    live: bool


@dataclass(frozen=True)
class SecretInfo:
    path: str
    # Folders below this path (ending with '/') and secrets beside them.
    children: list[str]
    keys: list[str] | None = None
    version: int | None = None
    versions: list[VersionInfo] | None = None


class SecretStore:
    def __init__(
        self,
        provider: SecretProvider | None,
        prefix: str,
        factory: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        self._provider = provider
        self._prefix = prefix
        self._factory = factory
        self._clock = clock

    def _vault(self) -> VaultProvider:
        vault = vault_of(self._provider)
        if vault is None:
            name = self._provider.name if self._provider is not None else "no"
            raise SecretsReadOnly(
                f"the {name} secrets provider cannot be listed or written through WakeDock: "
                "manage those secrets where they live, or use Vault/OpenBao"
            )
        return vault

    def _full(self, path: str) -> str:
        path = path.strip("/")
        if path:
            try:
                check_name(path, "key")
            except ValueError:
                raise InvalidInput("a secret path is segments of letters, digits, _ . -") from None
        return f"{self._prefix}/{path}" if path else self._prefix

    def describe(self, path: str, context: RequestContext) -> SecretInfo:
        """Folders and secrets under `path`, and the secret at `path` (key names, versions).
        KV v2 has no key listing: the values are read, never returned, and the read audited."""
        vault = self._vault()
        full = self._full(path)
        children = vault.keys(full)
        info = SecretInfo(path=path.strip("/"), children=children)
        if not path.strip("/"):
            return info
        try:
            history = vault.versions(full)
            data = vault.read_all(full)
        except SecretNotFound:
            if not children:
                raise SecretNotFound("no such secret or folder") from None
            return info
        self._record(EventType.SECRET_ACCESS, full, {"purpose": "key names"}, context)
        return SecretInfo(
            path=info.path,
            children=children,
            keys=sorted(data),
            version=max((v.version for v in history if v.live), default=None),
            versions=[VersionInfo(v.version, v.created_at, v.live) for v in history],
        )

    def reveal(self, path: str, context: RequestContext) -> dict[str, str]:
        """The values of the current version (the caller checked permission and MFA)."""
        full = self._full(path)
        if full == self._prefix:
            raise InvalidInput("name a secret to reveal")
        values = self._vault().read_all(full)
        self._record(EventType.SECRET_REVEAL, full, {"keys": sorted(values)}, context)
        return values

    def write(
        self, path: str, values: dict[str, str], context: RequestContext, cas: int | None = None
    ) -> int:
        """Write a new version (all keys of the secret); its number."""
        full = self._full(path)
        if full == self._prefix:
            raise InvalidInput("name a secret to write")
        try:
            version = self._vault().write(full, values, cas=cas)
        except WakeDockError as exc:
            refused: dict[str, object] = {"keys": sorted(values), "error": exc.code}
            self._record(EventType.SECRET_WRITE, full, refused, context, Outcome.FAILURE)
            raise
        details = {"keys": sorted(values), "version": version}
        self._record(EventType.SECRET_WRITE, full, details, context)
        return version

    def _record(
        self,
        kind: EventType,
        path: str,
        details: dict[str, object],
        context: RequestContext,
        outcome: Outcome = Outcome.SUCCESS,
    ) -> None:
        event = Event(kind, outcome, target=f"secret:{path}", details=details)
        record_alone(self._factory, event, context, at=self._clock.now())
