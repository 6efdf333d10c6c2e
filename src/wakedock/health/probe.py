"""`wakedock healthcheck`: does the WakeDock server on this host answer its liveness probe?

The container image's HEALTHCHECK runs this every interval, so it is small and uses the
standard library only (http.client and ssl): no HTTP library in the image for it, no
component built, no database opened. It reads the same settings as `wakedock serve` (port,
listening address, certificate, admin host names) and asks `GET /api/v1/health/live`.

TLS is verified against the certificate the server is configured to serve (the generated
self-signed one in the data directory, or `server.tls_cert_file`), taken as the trust anchor
itself: the probe then knows it reached this WakeDock, whatever host name the certificate names,
without trusting anything else.
"""

from __future__ import annotations

import http.client
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from wakedock.config import Settings

LIVENESS_PATH = "/api/v1/health/live"
# A liveness answer is a few bytes; never read more than this of whatever answers.
_MAX_BODY = 4096
# Where a server listening on every address is reached from inside its own host or container
# (these are addresses the server may bind, mapped to loopback here, never bound).
_ANY = "0.0.0.0"  # noqa: S104  # nosec B104
_LOOPBACK = {_ANY: "127.0.0.1", "": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True)
class ProbeTarget:
    """Where the liveness probe goes: an address, a port, the Host header, the trust anchor."""

    host: str
    port: int
    # The Host header (and, for a DNS name, the TLS server name): an admin host name, since any
    # other host is a service's or unknown to the server.
    host_header: str
    # The certificate to trust (PEM); None for plain HTTP (`serve --insecure-http`).
    certificate: Path | None


@dataclass(frozen=True)
class ProbeResult:
    """Alive or not, with one line saying why (printed by the command, never a secret)."""

    alive: bool
    detail: str


def probe_target(settings: Settings, *, insecure_http: bool = False) -> ProbeTarget:
    """The target for the server `settings` describe (`insecure_http`: it serves plain HTTP)."""
    server = settings.server
    host = _LOOPBACK.get(server.host, server.host)
    certificate = None
    if not insecure_http:
        certificate = server.tls_cert_file or settings.data_dir / "tls" / "cert.pem"
    return ProbeTarget(host, server.port, settings.proxy.admin_hosts[0], certificate)


def probe(target: ProbeTarget, timeout: float) -> ProbeResult:
    """One `GET /api/v1/health/live`; alive only on a 200 within `timeout` seconds."""
    url = f"{'https' if target.certificate else 'http'}://{_authority(target)}{LIVENESS_PATH}"
    connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    if target.certificate is not None:
        try:
            context = _pinned_context(target.certificate)
        except (OSError, ssl.SSLError) as exc:
            return ProbeResult(False, f"cannot load the certificate {target.certificate}: {exc}")
        server_name = target.host_header if _is_dns_name(target.host_header) else None
        connection = _TlsConnection(target.host, target.port, timeout, context, server_name)
    try:
        connection.request(
            "GET",
            LIVENESS_PATH,
            headers={"Host": _host_header(target), "User-Agent": "wakedock-healthcheck"},
        )
        response = connection.getresponse()
        response.read(_MAX_BODY)
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(False, f"{url}: {_reason(exc)}")
    finally:
        connection.close()
    if response.status != 200:
        return ProbeResult(False, f"{url}: HTTP {response.status}")
    return ProbeResult(True, f"{url}: alive")


class _TlsConnection(http.client.HTTPConnection):
    """HTTPS to an address, with the admin host name (not the address) as the TLS server name,
    which http.client's HTTPSConnection cannot send."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        context: ssl.SSLContext,
        server_name: str | None,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._tls = context
        self._server_name = server_name

    def connect(self) -> None:
        super().connect()
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)


def _pinned_context(certificate: Path) -> ssl.SSLContext:
    """TLS 1.3 only, trusting exactly the certificate (chain) in `certificate`.

    VERIFY_X509_PARTIAL_CHAIN lets the served certificate itself be the trust anchor, so a
    certificate from a public CA verifies without the system's CA store. The host name is not
    checked: the anchor is this server's own certificate, not a name.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cafile=str(certificate))
    return context


def _is_dns_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def _authority(target: ProbeTarget) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


def _host_header(target: ProbeTarget) -> str:
    host = target.host_header
    return f"[{host}]" if ":" in host else host


def _reason(exc: BaseException) -> str:
    """A short reason: the SSL library's, or the socket's, without a traceback."""
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens)"
    return str(exc) or type(exc).__name__
