"""`wakedock config check`: validate the configuration and say where each secret comes from."""

from __future__ import annotations

import click

from wakedock.cli_state import CliState
from wakedock.config import SECRET_FIELDS, SECRET_REF_PREFIX, env_name, secret_origin
from wakedock.errors import WakeDockError
from wakedock.secrets.resolve import make_provider, resolve_settings

GENERATED = {
    ("auth", "jwt_signing_key"): "jwt_signing_key",
    ("mfa", "encryption_key"): "mfa_encryption_key",
    ("audit", "chain_key"): "audit_chain_key",
}


@click.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.pass_obj
def config_check(state: CliState) -> None:
    """Validate the configuration; print each secret's source, never its value."""
    settings = state.settings()
    sources: dict[str, str] = {}
    try:
        provider = make_provider(settings.secrets)
        _, sources = resolve_settings(settings, provider)
    except (WakeDockError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, WakeDockError) else str(exc)
        raise click.ClickException(f"secrets: {detail}") from None
    click.echo(f"configuration OK (environment {settings.environment}, secrets from "
               f"{settings.secrets.provider})")  # fmt: skip
    yaml_data = state.yaml_data()
    for section, key, _ in SECRET_FIELDS:
        name = f"{section}.{key}"
        value = getattr(getattr(settings, section), key)
        origin = secret_origin(section, key, yaml_data, state.overrides)
        if name in sources:
            where = f"{sources[name]} (referenced from {origin})"
        elif origin == "file":
            where = f"file named by {env_name(section, key)}_FILE"
        elif origin in ("env", "yaml"):
            where = f"plain value in {'the YAML file' if origin == 'yaml' else 'the environment'}"
        elif value is not None and value.get_secret_value().startswith(SECRET_REF_PREFIX):
            where = "reference (unresolved)"
        elif (section, key) in GENERATED:
            path = settings.data_dir / "secrets" / GENERATED[(section, key)]
            where = f"generated file {path}" + ("" if path.exists() else " (created at start)")
        else:
            where = "default" if value is not None else "not set"
        click.echo(f"  {name:<28} {where}")
