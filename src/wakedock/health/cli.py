"""`wakedock healthcheck`, and the same as `python -m wakedock.health` (the image's HEALTHCHECK):
exit 0 when the local server answers its liveness probe, 1 when not.

The second form loads only the configuration and this probe, not the whole `wakedock` command
(every feature's CLI, the wiring): about five times quicker to start, which matters for a
command the engine runs every interval."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wakedock.cli_state import CliState
from wakedock.health.probe import probe, probe_target


def _probe_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--timeout",
        type=click.FloatRange(min=0.1, max=60),
        default=5.0,
        show_default=True,
        help="Seconds to wait for the answer.",
    )(command)
    return click.option(
        "--insecure-http",
        is_flag=True,
        help="The server was started with `serve --insecure-http` (plain HTTP).",
    )(command)


def _check(state: CliState, insecure_http: bool, timeout: float) -> None:
    result = probe(probe_target(state.settings(), insecure_http=insecure_http), timeout)
    click.echo(result.detail, err=not result.alive)
    if not result.alive:
        raise SystemExit(1)


@click.command("healthcheck")
@_probe_options
@click.pass_obj
def healthcheck_command(state: CliState, insecure_http: bool, timeout: float) -> None:
    """Ask the local server's liveness probe (/api/v1/health/live); exit 1 unless it answers 200.

    Reads the same configuration as `serve` (port, address, certificate, admin host names).
    """
    _check(state, insecure_http, timeout)


@click.command("healthcheck")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="WAKEDOCK_CONFIG",
    help="YAML configuration file.",
)
@_probe_options
def standalone_healthcheck(config_file: Path | None, insecure_http: bool, timeout: float) -> None:
    """`wakedock healthcheck` on its own (the data directory from WAKEDOCK_DATA_DIR)."""
    _check(CliState(config_file, {}), insecure_http, timeout)
