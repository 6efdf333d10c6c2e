"""What the secrets feature sets up when WakeDock starts: the JWT signing keys and their
lifetime rules, the watcher that reads secrets again, and the audit of the secrets read."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType
from wakedock.audit.service import record_event
from wakedock.clock import Clock
from wakedock.config import FILE_SUFFIX, Settings, env_name, secret_origin
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.secrets.base import SecretProvider
from wakedock.secrets.keysources import KEY_SETTING, key_source
from wakedock.secrets.resolve import Resolved, make_provider, referenced, resolve_settings
from wakedock.secrets.rotation import JwtKeys
from wakedock.secrets.watch import MAX_BACKOFF, SecretWatcher
from wakedock.services.spec import parse_secret_ref

STARTUP = RequestContext(actor="system:startup")


def read_secrets(settings: Settings) -> tuple[SecretProvider, Resolved]:
    """The configured provider (it also serves the services' secret references), and the
    settings with every `secret:` reference resolved through it."""
    provider = make_provider(settings.secrets)
    if referenced(settings):
        return provider, resolve_settings(settings, provider)
    return provider, Resolved(settings)


def make_jwt_keys(
    configured: Settings,
    resolved: Resolved,
    provider: SecretProvider | None,
    factory: sessionmaker[Session],
    clock: Clock,
    *,
    longest_token_seconds: int,
) -> JwtKeys:
    """The signing keys and their rotation (S9.3); see secrets/rotation.py.

    `configured` are the settings as written (a `secret:` reference tells where the key lives);
    `longest_token_seconds` is the longest any token signed with a key can live."""
    settings = resolved.settings
    raw = configured.auth.jwt_signing_key
    reference = parse_secret_ref(raw.get_secret_value()) if raw is not None else None
    source = key_source(
        settings.auth.jwt_signing_key,
        reference,
        provider,
        resolved.sources.get(KEY_SETTING) or _origin("auth", "jwt_signing_key"),
        settings.data_dir,
        clock,
    )
    # Margins: a replica notices a new version within refresh_seconds, or later while its
    # backend is failing (backoff up to MAX_BACKOFF).
    refresh = settings.secrets.refresh_seconds
    every = settings.auth.jwt_rotation_seconds
    return JwtKeys(
        source,
        clock,
        factory,
        lifetime=timedelta(seconds=longest_token_seconds + refresh + MAX_BACKOFF + 5),
        publish=timedelta(seconds=refresh + 5),
        rotate_every=timedelta(seconds=every) if every else None,
    )


def _origin(section: str, key: str) -> str:
    """Where a fixed secret setting came from, in words (never its value)."""
    variable = env_name(section, key)
    return {
        "file": f"the file named by {variable}{FILE_SUFFIX}",
        "env": f"the variable {variable}",
    }.get(secret_origin(section, key, {}, {}), "the configuration")


def make_secret_watcher(
    keys: JwtKeys,
    provider: SecretProvider | None,
    resolved: Resolved,
    factory: sessionmaker[Session],
    clock: Clock,
) -> SecretWatcher:
    """The thread that follows the signing key and the settings' references (not started)."""
    # The signing key is followed by `keys` itself; the watcher reports the other references.
    references = {k: v for k, v in resolved.references.items() if k != KEY_SETTING}
    return SecretWatcher(
        keys,
        provider,
        references,
        resolved.versions,
        factory,
        clock,
        interval=resolved.settings.secrets.refresh_seconds,
    )


def audit_secret_reads(
    factory: sessionmaker[Session], clock: Clock, sources: dict[str, str]
) -> None:
    """Each secret read at start-up is audited: the setting and its source, never the value."""
    with transaction(factory) as db:
        for setting, source in sorted(sources.items()):
            event = Event(EventType.SECRET_ACCESS, target=setting, details={"source": source})
            record_event(db, event, STARTUP, at=clock.now())
