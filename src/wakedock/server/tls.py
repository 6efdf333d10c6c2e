"""TLS for `wakedock serve`: TLS 1.3 only, a self-signed certificate generated on first start,
and certificate files reloaded without a restart when they are replaced."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("wakedock.tls")

# The organization of every certificate WakeDock generates: how renewal knows its own.
SELF_SIGNED_ORGANIZATION = "WakeDock self-signed"


def generate_self_signed(
    cert_path: Path,
    key_path: Path,
    hostname: str,
    extra_names: tuple[str, ...] = (),
    *,
    now: datetime | None = None,
    valid_for: timedelta = timedelta(days=365),
) -> None:
    """Write an ECDSA P-256 certificate for `hostname`, `extra_names` (e.g. `*.localhost` for
    the service hosts), localhost, 127.0.0.1 and ::1, valid from `now` (five minutes earlier,
    for clocks a little behind) for `valid_for`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hostname),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SELF_SIGNED_ORGANIZATION),
        ]
    )
    dns = sorted({hostname, "localhost", *extra_names})
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    now = now or datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + valid_for)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server context that refuses anything below TLS 1.3."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_cert_chain(cert_path, key_path)
    return context


class CertificateReloader:
    """Serves the newest valid certificate pair without a restart.

    The listening context never changes. Its SNI callback (run for every handshake, with or
    without a server name) hands the connection the current context, which is rebuilt from the
    files when they change and swapped in only once the new pair has loaded and matched. A
    half-written or mismatched pair therefore never reaches a client: the old one keeps serving.
    Connections already open keep their certificate.
    """

    def __init__(self, cert_path: Path, key_path: Path, interval: float) -> None:
        self._cert = cert_path
        self._key = key_path
        self._interval = interval
        self._stamp = self._current_stamp()
        # The certificate as loaded into the current context (read just before it).
        self.served = cert_path.read_bytes()
        self._current = server_context(cert_path, key_path)
        self.listening = server_context(cert_path, key_path)
        self.listening.sni_callback = self._select
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-reloader", daemon=True)

    def _select(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        connection.context = self._current

    def _current_stamp(self) -> tuple[int, int, int, int]:
        cert, key = self._cert.stat(), self._key.stat()
        return (cert.st_mtime_ns, cert.st_ino, key.st_mtime_ns, key.st_ino)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """Reload if the files changed; True if a new certificate is now served."""
        try:
            stamp = self._current_stamp()
            if stamp == self._stamp:
                return False
            served = self._cert.read_bytes()
            fresh = server_context(self._cert, self._key)
        except (OSError, ssl.SSLError) as exc:
            # A half-written or mismatched pair: keep serving the old one, retry next time.
            log.warning("certificate reload failed, keeping the current one: %s", exc)
            return False
        self._current = fresh
        self.served = served
        self._stamp = stamp
        log.info("TLS certificate reloaded from %s", self._cert)
        return True

    def tick(self) -> None:
        """What runs every interval on the reloader's thread (subclasses add upkeep)."""
        self.check()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.tick()
