"""`wakedock socket-proxy`: serve the filtered Engine API on a unix socket or a TCP address."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import click

from wakedock.config import DockerSettings
from wakedock.services.launch import policy_settings
from wakedock.sockproxy.engine import Engine
from wakedock.sockproxy.gate import Gate
from wakedock.sockproxy.server import Limits, SocketProxy

log = logging.getLogger("wakedock.sockproxy")


async def serve(listen: str, proxy: SocketProxy, socket_mode: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    if listen.startswith("/"):
        path = Path(listen)
        path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(proxy.handle, path=listen, backlog=1024)
        os.chmod(listen, socket_mode)
    else:
        host, _, port = listen.rpartition(":")
        server = await asyncio.start_server(proxy.handle, host.strip("[]"), int(port), backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.warning("socket-proxy listening on %s", listen)
    async with server:
        await stop.wait()


@click.command("socket-proxy")
@click.option("--listen", required=True, help="A unix socket path, or host:port (127.0.0.1:2375).")
@click.option("--engine", "engine_socket", default="/var/run/docker.sock", show_default=True)
@click.option(
    "--installation",
    default="wakedock",
    show_default=True,
    help="The wakedock.managed label value of the WakeDock it serves (docker.installation).",
)
@click.option("--swarm", is_flag=True, help="Also allow the Swarm runtime's service calls.")
@click.option(
    "--allow-cap",
    multiple=True,
    help="Capabilities services may add (docker.cap_allowlist); default WakeDock's.",
)
@click.option(
    "--allow-bind",
    multiple=True,
    help="Host directories bind mounts may come from (docker.bind_mount_allowlist).",
)
@click.option("--allow-privileged-host-ports", is_flag=True)
@click.option(
    "--network",
    default=None,
    help="docker.network: containers join this network (or none), and only it is inspected.",
)
@click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--max-body", default=1024 * 1024, show_default=True, type=click.IntRange(1024))
@click.option(
    "--socket-mode", default="660", show_default=True, help="Octal mode of a unix socket."
)
def socket_proxy_command(
    listen: str,
    engine_socket: str,
    installation: str,
    swarm: bool,
    allow_cap: tuple[str, ...],
    allow_bind: tuple[str, ...],
    allow_privileged_host_ports: bool,
    network: str | None,
    concurrency: int,
    max_body: int,
    socket_mode: str,
) -> None:
    """A filtering Docker Engine API proxy: the only process that needs the Docker socket."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    fields: dict[str, object] = {
        "installation": installation,
        "bind_mount_allowlist": list(allow_bind),
        "allow_privileged_host_ports": allow_privileged_host_ports,
        "network": network,
    }
    if allow_cap:
        fields["cap_allowlist"] = list(allow_cap)
    try:
        docker = DockerSettings.model_validate(fields)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    engine = Engine(engine_socket)
    gate = Gate(engine, installation=installation, policy=policy_settings(docker), swarm=swarm)
    limits = Limits(concurrency=concurrency, max_body=max_body)
    proxy = SocketProxy(gate, engine, swarm=swarm, limits=limits)
    try:
        mode = int(socket_mode, 8)
    except ValueError:
        raise click.BadParameter("an octal mode such as 660", param_hint="--socket-mode") from None
    asyncio.run(serve(listen, proxy, mode))
