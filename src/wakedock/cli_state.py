"""What every `wakedock` subcommand shares: settings, progress lines, the CLI's request context.

The wiring (components.py) is cli.py's business: a command group receives the collaborators it
works on from cli.py, never the whole object graph."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wakedock.config import ConfigError, Settings, load_settings, read_yaml
from wakedock.context import RequestContext

if TYPE_CHECKING:  # transitional, see CliState.wire
    from wakedock.components import Components


@dataclass
class CliState:
    config_file: Path | None
    overrides: dict[str, Any]
    # Transitional (issue #13): `wakedock service` still asks for every component; cli.py
    # gives the wiring here. Goes once every command group receives its collaborators.
    wire: Callable[[CliState, Settings | None], Components] | None = None

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
        if self.wire is None:
            raise RuntimeError("cli.py gives the wiring")
        return self.wire(self, settings)


def step(message: str) -> None:
    click.echo(f"  ... {message}", err=True)


def cli_context() -> RequestContext:
    return RequestContext(actor=f"cli:{getpass.getuser()}", user_agent="wakedock-cli")
