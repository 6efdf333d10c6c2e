"""A real `wakedock serve` and its certificate: replaced on disk, it is shown to new connections
while connections already open finish their requests on the old one; a configured certificate
near its end is reported by /api/v1/health; a generated one near its end is renewed at start."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from support.server import HOST, wakedock_server
from wakedock.server.tls import generate_self_signed

pytestmark = pytest.mark.integration

FAST_RELOAD = {
    "WAKEDOCK_SERVER__TLS_RELOAD_INTERVAL": "0.2",
    # Longer than the wait for the reload: the first connection must stay open across it.
    "WAKEDOCK_SERVER__KEEP_ALIVE_TIMEOUT_SECONDS": "60",
}


def _verified(cafile: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies and checks hostnames
    context.load_verify_locations(cafile=str(cafile))
    return context


def _unverified() -> ssl.SSLContext:
    # Only to see whichever certificate is served while polling for the new one.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((HOST, port), timeout=10)
    return context.wrap_socket(raw, server_hostname=HOST)


def _fingerprint(tls: ssl.SSLSocket) -> bytes:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256())


def _file_fingerprint(cert: Path) -> bytes:
    return x509.load_pem_x509_certificate(cert.read_bytes()).fingerprint(hashes.SHA256())


def _read_response(tls: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length, read off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = tls.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    assert len(body) == length, "more than one response arrived"
    return int(status_line.split()[1]), headers, body


def _get(tls: ssl.SSLSocket, path: str) -> tuple[int, dict[str, str], bytes]:
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    return _read_response(tls)


def test_replaced_certificate_is_shown_to_new_connections_while_old_ones_finish(
    tmp_path: Path,
) -> None:
    with wakedock_server(tmp_path / "data", env=FAST_RELOAD) as running:
        cert_path = running.cert_path
        key_path = cert_path.parent / "key.pem"
        old_ca = tmp_path / "old-ca.pem"
        shutil.copy(cert_path, old_ca)
        old = _file_fingerprint(cert_path)

        # Opened before the swap: one request done, a second one half sent (head and part of
        # its body), the connection kept alive.
        kept = _connect(running.port, _verified(old_ca))
        assert _fingerprint(kept) == old
        assert _get(kept, "/api/v1/health/live")[0] == 200
        body = b'{"username": "nobody", "password": "not-the-password"}'
        kept.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )

        # A new pair written beside the live one, then renamed over it (key first).
        staged_cert, staged_key = tmp_path / "new-cert.pem", tmp_path / "new-key.pem"
        generate_self_signed(staged_cert, staged_key, "localhost")
        new = _file_fingerprint(staged_cert)
        new_ca = tmp_path / "new-ca.pem"
        shutil.copy(staged_cert, new_ca)
        os.replace(staged_key, key_path)
        os.replace(staged_cert, cert_path)

        # New connections are shown the new certificate within a few reload rounds.
        seen = old
        deadline = time.monotonic() + 10
        while seen != new and time.monotonic() < deadline:
            with _connect(running.port, _unverified()) as probe:
                seen = _fingerprint(probe)
            if seen != new:
                time.sleep(0.1)
        assert seen == new, "the new certificate was never served"
        with httpx.Client(base_url=running.base_url, verify=_verified(new_ca)) as client:
            assert client.get("/api/v1/health/live").status_code == 200

        # The connection opened before finishes its request, then serves another, still on
        # the old certificate.
        kept.sendall(body[10:])
        status, _headers, answer = _read_response(kept)
        assert status == 401, answer
        assert _get(kept, "/api/v1/health/live")[0] == 200
        assert _fingerprint(kept) == old
        kept.close()
        assert running.process.poll() is None


def _pair(directory: Path, *, days_left: float) -> tuple[Path, Path]:
    """A self-signed pair for localhost and 127.0.0.1 with `days_left` days to run."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    now = datetime.now(UTC)
    begins = now - timedelta(days=300)
    ends = now + timedelta(days=days_left)
    generate_self_signed(cert, key, "localhost", now=begins, valid_for=ends - begins)
    return cert, key


def test_a_configured_certificate_near_its_end_is_reported_not_renewed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # Configured, at the path the test helper trusts (the generated one's): never renewed.
    cert, key = _pair(data_dir / "tls", days_left=10.5)
    before = cert.read_bytes()
    env = {
        "WAKEDOCK_SERVER__TLS_CERT_FILE": str(cert),
        "WAKEDOCK_SERVER__TLS_KEY_FILE": str(key),
    }
    with wakedock_server(data_dir, env=env) as running:
        with httpx.Client(base_url=running.base_url, verify=running.ssl_context()) as client:
            report = client.get("/api/v1/health").json()
        assert report["certificate"]["status"] == "warning"
        assert report["certificate"]["days_left"] == 10
        assert "(10 days left)" in running.log()
        assert cert.read_bytes() == before


def test_a_generated_certificate_near_its_end_is_renewed_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # Left by an earlier run in the data directory: WakeDock's own, generated certificate.
    cert, _key = _pair(data_dir / "tls", days_left=5)
    old = _file_fingerprint(cert)
    with wakedock_server(data_dir) as running:
        with _connect(running.port, _verified(cert)) as tls:
            served = _fingerprint(tls)
        assert served != old
        assert served == _file_fingerprint(cert)
        with httpx.Client(base_url=running.base_url, verify=running.ssl_context()) as client:
            report = client.get("/api/v1/health").json()
        assert report["certificate"]["status"] == "ok"
        assert report["certificate"]["days_left"] >= 364
        assert "was renewed until" in running.log()
