"""Resolve `secret:<path>#<key>` references in the settings through the configured provider."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydantic import SecretStr, ValidationError

from wakedock.config import (
    SECRET_FIELDS,
    SECRET_LISTS,
    SECRET_REF_PREFIX,
    SecretsSettings,
    Settings,
)
from wakedock.secrets.base import SecretBackendUnavailable, SecretProvider
from wakedock.secrets.providers import EnvProvider, FileProvider, WithFallback
from wakedock.secrets.vault import VaultAuth, VaultProvider
from wakedock.services.spec import parse_secret_ref

log = logging.getLogger(__name__)
KEY_FIELDS = {("auth", "jwt_signing_key"), ("mfa", "encryption_key"), ("audit", "chain_key")}


def make_provider(config: SecretsSettings) -> SecretProvider:
    """The configured provider; a Vault one is checked (reachable, initialised, unsealed)."""
    if config.provider == "env":
        return EnvProvider()
    if config.provider == "file":
        return FileProvider(config.directory)
    token = config.vault_token.get_secret_value() if config.vault_token else None
    auth = VaultAuth(
        config.vault_auth,
        token=token,
        role_id=config.vault_role_id,
        secret_id_file=config.vault_secret_id_file,
        kubernetes_role=config.vault_kubernetes_role,
    )
    vault = VaultProvider(
        config.vault_url or "",
        auth,
        mount=config.vault_mount,
        namespace=config.vault_namespace,
        ca_file=config.vault_ca_file,
    )
    if config.vault_fallback is None:
        vault.check()
        return vault
    fallback = EnvProvider() if config.vault_fallback == "env" else FileProvider(config.directory)
    try:
        vault.check()
    except SecretBackendUnavailable as exc:
        log.warning("%s; reading secrets from the configured fallback %s", exc.detail,
                    fallback.name)  # fmt: skip
        return WithFallback(vault, fallback, ready=False)
    return WithFallback(vault, fallback, ready=True)


def referenced(settings: Settings) -> bool:
    return any(
        (value := getattr(getattr(settings, section), key)) is not None
        and value.get_secret_value().startswith(SECRET_REF_PREFIX)
        for section, key, _ in SECRET_FIELDS
    ) or any(
        item.startswith(SECRET_REF_PREFIX)
        for section, key in SECRET_LISTS
        for item in getattr(getattr(settings, section), key)
    )


def _reference(name: str, text: str) -> tuple[str, str]:
    ref = parse_secret_ref(text)
    if ref is None:
        raise ValueError(f"{name}: a reference is secret:<path>#<key>")
    return ref


@dataclass(frozen=True)
class Resolved:
    settings: Settings
    # setting -> where its value came from (printable, never the value)
    sources: dict[str, str] = field(default_factory=dict)
    # setting -> (path, key) it references, and the version read (for the refresh thread)
    references: dict[str, tuple[str, str]] = field(default_factory=dict)
    versions: dict[str, int | None] = field(default_factory=dict)


def resolve_settings(settings: Settings, provider: SecretProvider) -> Resolved:
    """Settings with every reference replaced by its value, and where each came from."""
    sources: dict[str, str] = {}
    references: dict[str, tuple[str, str]] = {}
    versions: dict[str, int | None] = {}
    for section, key, _ in SECRET_FIELDS:
        value = getattr(getattr(settings, section), key)
        if value is None or not value.get_secret_value().startswith(SECRET_REF_PREFIX):
            continue
        ref = _reference(f"{section}.{key}", value.get_secret_value())
        secret = provider.read(*ref)
        if (section, key) in KEY_FIELDS and len(secret.value.encode()) < 32:
            raise ValueError(
                f"{section}.{key}: the secret {ref[0]}#{ref[1]} is shorter than 32 bytes"
            )
        part = getattr(settings, section).model_copy(update={key: SecretStr(secret.value)})
        settings = settings.model_copy(update={section: part})
        sources[f"{section}.{key}"] = secret.source
        references[f"{section}.{key}"] = ref
        versions[f"{section}.{key}"] = secret.version
    for section, key in SECRET_LISTS:
        part = getattr(settings, section)
        items: list[str] = list(getattr(part, key))
        for n, item in enumerate(items):
            if not item.startswith(SECRET_REF_PREFIX):
                continue
            name = f"{section}.{key}[{n}]"
            ref = _reference(name, item)
            secret = provider.read(*ref)
            items[n] = secret.value
            sources[name], references[name], versions[name] = secret.source, ref, secret.version
        if items != getattr(part, key):
            try:  # validated again: the resolved URLs must be valid too (never echoed)
                fresh = type(part).model_validate({**dict(part), key: items})
            except ValidationError:
                raise ValueError(f"{section}.{key}: a referenced URL is not valid") from None
            settings = settings.model_copy(update={section: fresh})
    return Resolved(settings, sources, references, versions)
