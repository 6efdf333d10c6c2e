"""The effective configuration as an operator may read it: every setting, and for each secret
only where it comes from (never its value, nor a hint of its length).

The same data as `wakedock config check`, for the API. Secrets are found by type (every
`SecretStr`) and by list (URLs that may carry credentials, config.SECRET_LISTS), so a secret
setting added later is hidden without anyone remembering to list it here.
"""

from __future__ import annotations

from typing import Any, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType
from wakedock.audit.service import record_alone
from wakedock.clock import Clock
from wakedock.config import (
    FILE_SUFFIX,
    SECRET_LISTS,
    SECRET_REF_PREFIX,
    Settings,
    env_name,
    secret_origin,
)
from wakedock.context import RequestContext

# Keys WakeDock generates into <data_dir>/secrets when they are not configured.
GENERATED = {("auth", "jwt_signing_key"), ("mfa", "encryption_key"), ("audit", "chain_key")}


class EffectiveSettings:
    """The configuration in force, for the operators allowed to read it."""

    def __init__(
        self,
        settings: Settings,
        sources: dict[str, str],
        factory: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._sources = sources
        self._factory = factory
        self._clock = clock

    def read(self, context: RequestContext) -> dict[str, Any]:
        """Every setting in force, each secret only as its source (see effective_settings).

        The read is audited: the configuration maps the installation's defences."""
        read = Event(EventType.DATA_ACCESS, target="configuration", details={"what": "settings"})
        record_alone(self._factory, read, context, at=self._clock.now())
        return effective_settings(self._settings, self._sources)


def effective_settings(settings: Settings, sources: dict[str, str]) -> dict[str, Any]:
    """Every setting in force; each secret replaced by a description of its origin.

    `sources` names where each resolved `secret:` reference was read (provider and path, no
    value), as built at start-up (Components.secret_sources)."""
    shown: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            shown[name] = _section(name, value, sources)
        else:
            shown[name] = _plain(value)
    return shown


def _section(section: str, part: BaseModel, sources: dict[str, str]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key, field in type(part).model_fields.items():
        value = getattr(part, key)
        if SecretStr in (field.annotation, *get_args(field.annotation)):
            shown[key] = _secret(section, key, value, part, sources)
        elif (section, key) in SECRET_LISTS:
            shown[key] = [
                _list_item(section, key, n, item, part, sources) for n, item in enumerate(value)
            ]
        else:
            shown[key] = _plain(value)
    return shown


def _secret(
    section: str, key: str, value: SecretStr | None, part: BaseModel, sources: dict[str, str]
) -> dict[str, Any]:
    name = f"{section}.{key}"
    if name in sources:
        return {"secret": True, "set": True, "source": "reference", "from": sources[name]}
    if value is None:
        # Keys not configured are generated once into the data directory (0600).
        generated = (section, key) in GENERATED
        return {"secret": True, "set": generated, "source": "generated" if generated else "not set"}
    origin = _origin(section, key, part)
    if value.get_secret_value().startswith(SECRET_REF_PREFIX):
        origin = "reference (unresolved)"
    return {"secret": True, "set": True, "source": origin}


def _list_item(
    section: str, key: str, index: int, item: str, part: BaseModel, sources: dict[str, str]
) -> dict[str, Any]:
    # Sink and webhook URLs may embed a token: only the scheme says what kind of sink it is.
    shown = {"secret": True, "set": True, "scheme": urlsplit(item).scheme or None}
    name = f"{section}.{key}[{index}]"
    if name in sources:
        return {**shown, "source": "reference", "from": sources[name]}
    return {**shown, "source": _origin(section, key, part)}


def _origin(section: str, key: str, part: BaseModel) -> str:
    """file, env, yaml (the configuration file or a command-line override) or default."""
    origin = secret_origin(section, key, {}, {})
    if origin == "default" and key in part.model_fields_set:
        return "yaml"
    if origin == "file":
        return f"file ({env_name(section, key)}{FILE_SUFFIX})"
    if origin == "env":
        return f"env ({env_name(section, key)})"
    return origin


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # paths
