"""`wakedock serve`: the built-in HTTPS server (uvicorn)."""

from __future__ import annotations

import gc
import logging
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import uvicorn

from wakedock.app import create_asgi
from wakedock.cluster.leadership import Leadership
from wakedock.cluster.leases import Leases, process_name
from wakedock.components import Components
from wakedock.server.certificates import maintained_certificate
from wakedock.server.connections import ConnectionLimiter, connection_cap, raise_open_file_limit
from wakedock.server.dates import DateHeader
from wakedock.server.protocol import (
    ConnectionRules,
    choose_loop,
    choose_parser,
    guarded_protocol,
)
from wakedock.server.tls import CertificateReloader, generate_self_signed
from wakedock.web.headers import protocol_answer_headers


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    generated: bool


def ensure_tls_files(components: Components, progress: Callable[[str], None]) -> TlsFiles:
    """The configured certificate, or a self-signed one generated on first start."""
    server = components.settings.server
    if server.tls_cert_file is not None and server.tls_key_file is not None:
        return TlsFiles(server.tls_cert_file, server.tls_key_file, generated=False)
    tls_dir = components.settings.data_dir / "tls"
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    if not (cert.exists() and key.exists()):
        progress(f"generating a self-signed certificate for {server.tls_hostname} in {tls_dir}")
        generate_self_signed(
            cert, key, server.tls_hostname, (f"*.{components.settings.proxy.base_domain}",)
        )
    return TlsFiles(cert, key, generated=True)


# The listen backlog, which is also how many sockets asyncio accepts in one go before the
# protocol looks at them. Under a flood about three such bursts hold file descriptors beyond the
# connection cap at once, so they must fit in server.reserved_file_descriptors (at least 256).
ACCEPT_BACKLOG = 64


def connection_rules(components: Components, tls: ssl.SSLContext | None) -> ConnectionRules:
    """The limits every connection is held to (server/protocol.py), sized to the open-file limit."""
    settings = components.settings
    server = settings.server
    open_files = raise_open_file_limit()
    try:
        cap = connection_cap(server.max_connections, open_files, server.reserved_file_descriptors)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if cap < server.max_connections:
        click.secho(
            f"WARNING: the open-file limit ({open_files}) allows {cap} connections, fewer than "
            f"server.max_connections ({server.max_connections}); raise `ulimit -n` for more.",
            fg="yellow",
            err=True,
        )
    limiter = ConnectionLimiter(
        cap, min(cap, server.max_connections_per_client), components.trusted_proxies
    )
    https = tls is not None or settings.http.hsts_behind_proxy
    headers = protocol_answer_headers(hsts_max_age=settings.http.hsts_max_age if https else None)
    return ConnectionRules(
        limiter,
        tls,
        server.header_timeout_seconds,
        server.body_timeout_seconds,
        server.max_header_bytes,
        tuple(headers),
    )


def serve(
    components: Components,
    *,
    insecure_http: bool,
    log_level: str = "info",
    listening: socket.socket | None = None,
) -> None:
    """Run until interrupted. Prints one start-up line with the URL and the TLS floor.

    `listening`: this process is one of several workers (server/workers.py) serving a socket
    their parent bound; it says so in one line with its process id.
    """
    settings = components.settings
    host, port = settings.server.host, settings.server.port
    leadership: Leadership | None = None
    if listening is not None:
        clock = components.clock
        leadership = Leadership(Leases(components.db, clock), process_name(), clock)
    app = DateHeader(create_asgi(components, leadership))
    shown_host = f"[{host}]" if ":" in host else host
    reloader: CertificateReloader | None = None
    if insecure_http:
        click.secho(
            "WARNING: --insecure-http serves plain HTTP: for local testing only, never expose it.",
            fg="yellow",
            err=True,
        )
        url = f"http://{shown_host}:{port}"
        tls_line = "plain HTTP, NO TLS"
    else:
        files = ensure_tls_files(components, lambda m: click.echo(f"  ... {m}", err=True))
        reloader = maintained_certificate(
            components,
            files.cert,
            files.key,
            generated=files.generated,
            leading=(lambda: leadership.leading) if leadership is not None else None,
        )
        url = f"https://{shown_host}:{port}"
        tls_line = "TLS 1.3 minimum" + (" (self-signed certificate)" if files.generated else "")
    # TLS is set up by the protocol, per connection, under the connection limits.
    rules = connection_rules(components, reloader.listening if reloader is not None else None)
    try:
        parser = choose_parser(settings.server.http_parser)
        loop = choose_loop(settings.server.event_loop)  # named in the start-up output
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    # uvloop reads a new socket whatever its protocol asked in connection_made, so the protocol
    # hands the ClientHello it may get that way to the TLS layer itself (server/protocol.py,
    # _with_hello_first).
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(rules, parser),
        loop=loop,
        h11_max_incomplete_event_size=settings.server.max_header_bytes,
        timeout_keep_alive=settings.server.keep_alive_timeout_seconds,
        backlog=ACCEPT_BACKLOG,
        server_header=False,
        # DateHeader dates the answers: uvicorn would add a second Date to proxied ones.
        date_header=False,
        # Client addresses are resolved by WakeDock itself against trusted_proxies.
        proxy_headers=False,
        forwarded_allow_ips="",
        log_level=log_level,
        access_log=False,
    )
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # uvicorn announces "running on http://..." since TLS is the protocol's, not its own: the
    # line above says where WakeDock really listens.
    logging.getLogger("uvicorn.error").addFilter(_NoAddressLine())
    if listening is None:
        click.echo(f"  ... HTTP/1.1 parser {parser}, event loop {loop}", err=True)
        click.echo(f"WakeDock listening on {url} ({tls_line})", err=True)
    else:
        click.echo(f"  ... worker {os.getpid()} on {url} (parser {parser}, loop {loop})", err=True)
    if reloader is not None:
        reloader.start()
    try:
        _SettledServer(config).run(sockets=[listening] if listening is not None else None)
    finally:
        if reloader is not None:
            reloader.stop()


class _SettledServer(uvicorn.Server):
    """uvicorn's server, with the heap set aside once started (`settle_heap`)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        settle_heap()


def settle_heap() -> None:
    """Collect once, then move every object alive now out of the garbage collector's sight.

    What exists once the server has started (modules, the app, settings, the host map) lives
    until the process ends. Left to the collector, each full collection walked all of it: about
    190 ms with the loop stopped, every few seconds under load, which was the proxy's tail
    latency (p99 3x Caddy's at 1 KiB and 64 connections, docs/benchmarks.md). Frozen objects
    are never collected (nor freed, which they would not be anyway); later ones are as usual.
    """
    gc.collect()
    gc.freeze()


class _NoAddressLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Uvicorn running on")
