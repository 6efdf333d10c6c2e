"""`wakedock config check` (validate the configuration and say where each secret comes from)
and `wakedock secrets rotate`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import click

from wakedock.cli_state import CliState
from wakedock.config import SECRET_FIELDS, SECRET_REF_PREFIX, env_name, secret_origin
from wakedock.context import RequestContext
from wakedock.errors import WakeDockError
from wakedock.secrets.base import SecretProvider
from wakedock.secrets.keysources import KEY_SETTING
from wakedock.secrets.resolve import make_provider, resolve_settings
from wakedock.secrets.rotation import JwtKeys

GENERATED = {
    ("auth", "jwt_signing_key"): "jwt",
    ("mfa", "encryption_key"): "mfa_encryption_key",
    ("audit", "chain_key"): "audit_chain_key",
}


@dataclass(frozen=True)
class SigningKeys:
    """What `secrets rotate` works on: the JWT keys, how often servers read them again, and
    the provider to close once done."""

    keys: JwtKeys
    refresh_seconds: float
    provider: SecretProvider | None


OpenKeys = Callable[[CliState], SigningKeys]


def secrets_group(open_keys: OpenKeys) -> click.Group:
    """The `secrets` command group; `open_keys` opens the installation's signing keys."""

    @click.group("secrets")
    def secrets() -> None:
        """Rotate secrets (docs/secrets.md)."""

    @secrets.command("rotate")
    @click.argument("name", type=click.Choice(["jwt"]))
    @click.pass_obj
    def secrets_rotate(state: CliState, name: str) -> None:
        """Write a new JWT signing key version; tokens signed with the previous one stay valid
        until they expire. Running servers sign with the new key once it is published (every
        replica has read it), at their next refresh after that."""
        opened = open_keys(state)
        keys = opened.keys
        try:
            version = keys.rotate(RequestContext(actor="cli:secrets rotate"))
            kid = keys.kid(version)
        except WakeDockError as exc:
            raise click.ClickException(exc.detail) from None
        finally:
            if opened.provider is not None:
                opened.provider.close()
        publish = keys.publication_delay.total_seconds()
        refresh = opened.refresh_seconds
        click.echo(
            f"{KEY_SETTING}: version {version} written to {keys.source.origin} "
            f"(new kid {kid})\n"
            f"running servers sign with it within {publish + refresh:g} s (publication delay "
            f"{publish:g} s, so that every replica reads it first, then their next refresh, "
            f"every {refresh:g} s); tokens of the previous key stay valid until they expire"
        )

    return secrets


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
