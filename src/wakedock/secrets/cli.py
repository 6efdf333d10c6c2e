"""`wakedock config check`: validate the configuration and say where each secret comes from."""

from __future__ import annotations

import click

from wakedock.cli_state import CliState
from wakedock.config import SECRET_FIELDS, SECRET_REF_PREFIX, env_name, secret_origin
from wakedock.context import RequestContext
from wakedock.errors import WakeDockError
from wakedock.secrets.keysources import KEY_SETTING
from wakedock.secrets.resolve import make_provider, resolve_settings

GENERATED = {
    ("auth", "jwt_signing_key"): "jwt",
    ("mfa", "encryption_key"): "mfa_encryption_key",
    ("audit", "chain_key"): "audit_chain_key",
}


@click.group("secrets")
def secrets_group() -> None:
    """Rotate secrets (docs/secrets.md)."""


@secrets_group.command("rotate")
@click.argument("name", type=click.Choice(["jwt"]))
@click.pass_obj
def secrets_rotate(state: CliState, name: str) -> None:
    """Write a new JWT signing key version; tokens signed with the previous one stay valid
    until they expire. Running servers sign with the new key once it is published (every
    replica has read it), at their next refresh after that."""
    c = state.components()
    try:
        version = c.jwt_keys.rotate(RequestContext(actor="cli:secrets rotate"))
        kid = c.jwt_keys.kid(version)
    except WakeDockError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        if c.secret_provider is not None:
            c.secret_provider.close()
    publish = c.jwt_keys.publication_delay.total_seconds()
    refresh = c.settings.secrets.refresh_seconds
    click.echo(
        f"{KEY_SETTING}: version {version} written to {c.jwt_keys.source.origin} "
        f"(new kid {kid})\n"
        f"running servers sign with it within {publish + refresh:g} s (publication delay "
        f"{publish:g} s, so that every replica reads it first, then their next refresh, every "
        f"{refresh:g} s); tokens of the previous key stay valid until they expire"
    )


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
        sources = resolve_settings(settings, provider).sources
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
    for name, source in sorted(sources.items()):
        if "[" in name:  # an item of a list setting (sink or webhook URL)
            click.echo(f"  {name:<28} {source} (referenced)")
