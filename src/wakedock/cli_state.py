"""What every `wakedock` subcommand shares: settings, wired components, progress lines."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from wakedock.components import Components, build_components
from wakedock.config import ConfigError, Settings, load_settings, read_yaml
from wakedock.context import RequestContext
from wakedock.errors import WakeDockError


@dataclass
class CliState:
    config_file: Path | None
    overrides: dict[str, Any]

    def settings(self, **extra: Any) -> Settings:
        merged = {**self.overrides}
        for section, values in extra.items():
            if values:
                merged.setdefault(section, {}).update(values)
        try:
            return load_settings(self.config_file, merged)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    def yaml_data(self) -> dict[str, Any]:
        """The YAML file's raw content (to tell where a setting came from)."""
        return read_yaml(self.config_file)

    def components(self, settings: Settings | None = None) -> Components:
        settings = settings or self.settings()
        step(f"opening the database in {settings.data_dir} (applying migrations)")
        try:
            return build_components(settings)
        except WakeDockError as exc:  # e.g. Vault sealed: say which, without a traceback
            raise click.ClickException(exc.detail) from None
        except ValueError as exc:  # a setting that cannot be used (webhook, sink, key...)
            raise click.ClickException(str(exc)) from None


def step(message: str) -> None:
    click.echo(f"  ... {message}", err=True)


def cli_context() -> RequestContext:
    return RequestContext(actor=f"cli:{getpass.getuser()}", user_agent="wakedock-cli")
