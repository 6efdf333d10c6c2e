"""What every `wakedock` subcommand shares: settings, progress lines, the CLI's request context.

The wiring (components.py) is cli.py's business: a command group receives the collaborators it
works on from cli.py, never the whole object graph."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from wakedock.config import ConfigError, Settings, load_settings, read_yaml
from wakedock.context import RequestContext


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


def step(message: str) -> None:
    click.echo(f"  ... {message}", err=True)


def cli_context() -> RequestContext:
    return RequestContext(actor=f"cli:{getpass.getuser()}", user_agent="wakedock-cli")
