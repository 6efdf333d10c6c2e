"""`wakedock serve`: the built-in HTTPS server (uvicorn)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import uvicorn

from wakedock.app import create_asgi
from wakedock.components import Components
from wakedock.server.dates import DateHeader
from wakedock.server.tls import CertificateReloader, generate_self_signed


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


def serve(components: Components, *, insecure_http: bool, log_level: str = "info") -> None:
    """Run until interrupted. Prints one start-up line with the URL and the TLS floor."""
    settings = components.settings
    host, port = settings.server.host, settings.server.port
    app = DateHeader(create_asgi(components))
    shown_host = f"[{host}]" if ":" in host else host
    config_args: dict[str, object] = {}
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
        reloader = CertificateReloader(files.cert, files.key, settings.server.tls_reload_interval)
        context = reloader.listening

        def factory(
            _config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]
        ) -> ssl.SSLContext:
            return context

        config_args = {"ssl_context_factory": factory, "ssl_certfile": str(files.cert)}
        url = f"https://{shown_host}:{port}"
        tls_line = "TLS 1.3 minimum" + (" (self-signed certificate)" if files.generated else "")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        server_header=False,
        # DateHeader dates the answers: uvicorn would add a second Date to proxied ones.
        date_header=False,
        # Client addresses are resolved by WakeDock itself against trusted_proxies.
        proxy_headers=False,
        forwarded_allow_ips="",
        log_level=log_level,
        access_log=False,
        **config_args,  # type: ignore[arg-type]
    )
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    click.echo(f"WakeDock listening on {url} ({tls_line})", err=True)
    if reloader is not None:
        reloader.start()
    try:
        uvicorn.Server(config).run()
    finally:
        if reloader is not None:
            reloader.stop()
