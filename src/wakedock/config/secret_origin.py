"""Where secret settings came from, and which ones are plain secrets production refuses."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from wakedock.config.checks import SECRET_REF_PREFIX
from wakedock.config.settings import ENV_PREFIX, FILE_SUFFIX, Settings

# Lists whose items may be secret:<path>#<key> references (URLs that carry credentials).
SECRET_LISTS: tuple[tuple[str, str], ...] = (("siem", "sinks"), ("alerts", "webhooks"))

# Settings holding secrets. For URLs only those that embed a password count.
SECRET_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("auth", "jwt_signing_key", False),
    ("mfa", "encryption_key", False),
    ("audit", "chain_key", False),
    ("secrets", "vault_token", False),
    ("database", "url", True),
    ("rate_limit", "storage_url", True),
)


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section}__{key}".upper()


def secret_origin(section: str, key: str, yaml_data: dict[str, Any], cli: dict[str, Any]) -> str:
    """Where a secret setting came from: override, file, env, yaml or default."""
    if key in (cli.get(section) or {}):
        return "override"
    if env_name(section, key) + FILE_SUFFIX in os.environ:
        return "file"
    if env_name(section, key) in os.environ:
        return "env"
    if key in (yaml_data.get(section) or {}):
        return "yaml"
    return "default"


def plain_secrets(settings: Settings, yaml_data: dict[str, Any], cli: dict[str, Any]) -> list[str]:
    """Secrets written as plain values in the YAML file or a plain environment variable."""
    problems = []
    for section, key, only_with_password in SECRET_FIELDS:
        origin = secret_origin(section, key, yaml_data, cli)
        value = getattr(getattr(settings, section), key)
        if origin not in ("yaml", "env") or value is None:
            continue
        text = value.get_secret_value()
        if text.startswith(SECRET_REF_PREFIX):
            continue
        if only_with_password and urlsplit(text).password is None:
            continue
        where = "the YAML file" if origin == "yaml" else f"the variable {env_name(section, key)}"
        problems.append(
            f"{section}.{key} is a plain secret in {where}: use {env_name(section, key)}"
            f"{FILE_SUFFIX} (a 0600 file) or a secret:<path>#<key> reference"
        )
    return problems
