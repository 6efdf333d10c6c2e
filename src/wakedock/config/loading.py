"""Loading the settings: the YAML file, the environment, `*_FILE` secret files and overrides.

Sources, highest priority first: command-line overrides, `WAKEDOCK_*` environment variables
(nested keys joined by `__`, e.g. `WAKEDOCK_AUTH__PASSWORD_MIN_LENGTH`), `WAKEDOCK_*_FILE`
variables (the value is read from the named file, the Docker/Kubernetes secrets convention), then
the YAML file. Any invalid value stops start-up with a message naming the key. Loading only
reads the process environment, it never changes it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from wakedock.config.secret_origin import plain_secrets
from wakedock.config.settings import ENV_PREFIX, FILE_SUFFIX, Settings
from wakedock.secret_files import SecretFileError, read_secret_file


class ConfigError(Exception):
    """The configuration is invalid; the message names each bad key."""


class _DictSource(PydanticBaseSettingsSource):
    """A fixed mapping as a settings source (the YAML file, command-line overrides)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class _EnvWithoutFileReferences(EnvSettingsSource):
    """The `WAKEDOCK_*` variables except the `*_FILE` references: the plain source would read
    those as unknown keys, and `_file_env_values` reads the files they name."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        # The source keys variables by their lower-cased name (it is case-insensitive).
        references = {name.lower() for name in os.environ if _is_file_reference(name)}
        self.env_vars = {k: v for k, v in self.env_vars.items() if k not in references}


def _names_a_setting(name: str) -> bool:
    """True when the whole variable name is a setting whose own key ends in `_file`
    (`WAKEDOCK_SERVER__TLS_CERT_FILE` is the certificate's path, not a secret file)."""
    parts = name[len(ENV_PREFIX) :].lower().split("__")
    model: type[BaseModel] = Settings
    for part in parts[:-1]:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        model = annotation
    return parts[-1] in model.model_fields


def _is_file_reference(name: str) -> bool:
    return name.startswith(ENV_PREFIX) and name.endswith(FILE_SUFFIX) and not _names_a_setting(name)


def _file_env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """Read `WAKEDOCK_A__B_FILE=/path` into {"a": {"b": <file content>}}."""
    values: dict[str, Any] = {}
    for name, path in environ.items():
        if not _is_file_reference(name):
            continue
        dotted = name[len(ENV_PREFIX) : -len(FILE_SUFFIX)].lower().split("__")
        try:
            content = read_secret_file(Path(path), what=name)
        except SecretFileError as exc:
            raise ConfigError(str(exc)) from None
        node = values
        for part in dotted[:-1]:
            node = node.setdefault(part, {})
        node[dotted[-1]] = content
    return values


def read_yaml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of keys")
    return loaded


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        key = ".".join(str(part) for part in error["loc"]) or "(root)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        env_name = ENV_PREFIX + "__".join(str(p) for p in error["loc"]).upper()
        lines.append(f"  {key}: {message} (YAML key {key} or env {env_name})")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build Settings from the YAML file, the environment and explicit overrides.

    Raises ConfigError with a message naming every invalid key.
    """
    yaml_data = read_yaml(config_file)
    file_data = _file_env_values(os.environ)
    cli_data = overrides or {}

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                _DictSource(settings_cls, cli_data),
                _EnvWithoutFileReferences(settings_cls),
                _DictSource(settings_cls, file_data),
                _DictSource(settings_cls, yaml_data),
            )

    try:
        loaded = _Loaded()
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    problems = plain_secrets(loaded, yaml_data, cli_data)
    if problems and loaded.environment == "production":
        raise ConfigError("; ".join(problems))
    for problem in problems:
        warnings.warn(f"{problem} (refused in production)", stacklevel=2)
    return loaded
