"""`wakedock serve` over real TLS: TLS 1.3 only, a verifiable self-signed certificate, security
headers on every response, certificate hot reload, and start-up refusal on a bad config."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from support.server import (
    FAST_HASH_ENV,
    WakeDockProcess,
    free_port,
    wakedock_command,
    wakedock_server,
)
from wakedock.server.tls import generate_self_signed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WakeDockProcess]:
    """One HTTPS server for the read-only checks of this module."""
    data_dir = tmp_path_factory.mktemp("tls") / "data"
    with wakedock_server(data_dir, https=True) as running:
        yield running


def _handshake(
    port: int, context: ssl.SSLContext, server_hostname: str = "127.0.0.1"
) -> tuple[str | None, bytes]:
    """Open one TLS connection; return the negotiated version and the server certificate."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return tls.version(), der


def _client_context(cafile: Path, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies and checks hostnames
    context.load_verify_locations(cafile=str(cafile))
    for attribute, value in versions.items():
        setattr(context, attribute, value)
    return context


def _serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


# -- TLS protocol floor -----------------------------------------------------------------------


def test_tls12_client_is_refused(server: WakeDockProcess) -> None:
    context = _client_context(server.cert_path, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        _handshake(server.port, context)
    # The server is still fine afterwards.
    assert server.process.poll() is None


def test_tls11_and_tls12_range_is_refused(server: WakeDockProcess) -> None:
    context = _client_context(
        server.cert_path,
        minimum_version=ssl.TLSVersion.TLSv1_2,
        maximum_version=ssl.TLSVersion.TLSv1_2,
    )
    with pytest.raises(ssl.SSLError):
        _handshake(server.port, context)


def test_tls13_client_negotiates_tls13(server: WakeDockProcess) -> None:
    context = _client_context(server.cert_path, minimum_version=ssl.TLSVersion.TLSv1_3)
    version, _der = _handshake(server.port, context)
    assert version == "TLSv1.3"
    # A client that offers everything up to 1.3 also ends on 1.3.
    version, _der = _handshake(server.port, _client_context(server.cert_path))
    assert version == "TLSv1.3"


# -- the generated certificate ------------------------------------------------------------------


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_generated_certificate_verifies_for_local_names(
    server: WakeDockProcess, hostname: str
) -> None:
    context = _client_context(server.cert_path)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    version, der = _handshake(server.port, context, server_hostname=hostname)
    assert version == "TLSv1.3"
    assert der == ssl.PEM_cert_to_DER_cert(server.cert_path.read_text())


def test_certificate_does_not_verify_for_other_names(server: WakeDockProcess) -> None:
    """Shows the verification above is real: a name not in the certificate fails."""
    context = _client_context(server.cert_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server.port, context, server_hostname="wakedock.example.com")


def test_https_request_verified_with_generated_cert(server: WakeDockProcess) -> None:
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=10) as c:
        response = c.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


# -- security headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/health", 200),
        ("/", 200),
        ("/api/v1/no-such-route", 404),
        ("/definitely/not/here", 404),
        ("/api/v1/auth/me", 401),
    ],
)
def test_security_headers_on_every_response(
    server: WakeDockProcess, path: str, status: int
) -> None:
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=10) as c:
        response = c.get(path)
    assert response.status_code == status
    headers = response.headers
    assert "server" not in headers, headers.get("server")
    assert "x-powered-by" not in headers
    hsts = headers.get("strict-transport-security", "")
    assert "max-age=" in hsts
    assert int(hsts.split("max-age=")[1].split(";")[0]) >= 15552000  # at least 180 days
    csp = headers.get("content-security-policy", "")
    for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("x-content-type-options") == "nosniff"
    if path.startswith("/api/"):
        assert headers.get("cache-control") == "no-store"
        # Errors are JSON with a detail, and never show internals.
        if status >= 400:
            assert "detail" in response.json()


def test_401_challenge_has_headers_too(server: WakeDockProcess) -> None:
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=10) as c:
        response = c.get("/api/v1/auth/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert "server" not in response.headers
    assert response.headers.get("x-frame-options") == "DENY"
    assert "strict-transport-security" in response.headers
    assert "content-security-policy" in response.headers


# -- start-up output ----------------------------------------------------------------------------


def test_startup_output_states_https_url_and_tls13(server: WakeDockProcess) -> None:
    log = server.log()
    assert f"https://127.0.0.1:{server.port}" in log
    assert "TLS 1.3" in log
    assert not any(line.startswith("WARNING: --insecure-http") for line in log.splitlines())
    assert "Traceback" not in log


def test_insecure_http_prints_a_warning(tmp_path: Path) -> None:
    with wakedock_server(tmp_path / "data", https=False) as plain:
        response = httpx.get(f"{plain.base_url}/api/v1/health", timeout=10)
        assert response.status_code == 200
        log = plain.log()
    warning_lines = [line for line in log.splitlines() if line.startswith("WARNING")]
    assert warning_lines, log
    assert any("--insecure-http" in line or "plain HTTP" in line for line in warning_lines)
    assert f"http://127.0.0.1:{plain.port}" in log
    # No certificate is generated for a plain-HTTP server.
    assert "TLS 1.3" not in log


# -- certificate hot reload ---------------------------------------------------------------------


def test_certificate_reloads_without_restart(tmp_path: Path) -> None:
    env = {"WAKEDOCK_SERVER__TLS_RELOAD_INTERVAL": "0.2"}
    with wakedock_server(tmp_path / "data", https=True, env=env) as running:
        pid = running.process.pid
        cert_path = running.cert_path
        key_path = cert_path.parent / "key.pem"
        _version, old_der = _handshake(running.port, _client_context(cert_path))
        assert old_der == ssl.PEM_cert_to_DER_cert(cert_path.read_text())

        # A renewed pair, written beside the live files, then swapped in atomically.
        new_cert = cert_path.parent / "renewed-cert.pem"
        new_key = cert_path.parent / "renewed-key.pem"
        generate_self_signed(new_cert, new_key, "localhost")
        new_der = ssl.PEM_cert_to_DER_cert(new_cert.read_text())
        assert _serial(new_der) != _serial(old_der)
        new_ca = tmp_path / "new-ca.pem"
        new_ca.write_bytes(new_cert.read_bytes())
        os.replace(new_key, key_path)
        os.replace(new_cert, cert_path)

        # The replaced certificate is served to new connections within a few seconds.
        seen = old_der
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            # CERT_NONE only here, to see whichever certificate is served while polling.
            probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            probe.check_hostname = False
            probe.verify_mode = ssl.CERT_NONE
            _version, seen = _handshake(running.port, probe)
            if seen != old_der:
                break
            time.sleep(0.1)
        assert _serial(seen) == _serial(new_der), "the new certificate was never served"
        assert seen == new_der

        # Verified with the new certificate as the only trust anchor, still TLS 1.3 only.
        version, der = _handshake(running.port, _client_context(new_ca))
        assert (version, der) == ("TLSv1.3", new_der)
        with pytest.raises(ssl.SSLError):
            _handshake(
                running.port, _client_context(new_ca, maximum_version=ssl.TLSVersion.TLSv1_2)
            )
        with httpx.Client(
            base_url=running.base_url, verify=running.ssl_context(), timeout=10
        ) as client:
            assert client.get("/api/v1/health").status_code == 200

        # Same process: no restart happened.
        assert running.process.poll() is None
        assert running.process.pid == pid


def _unverified_probe() -> ssl.SSLContext:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    return probe


def test_half_replaced_pair_keeps_serving_the_old_certificate(tmp_path: Path) -> None:
    """A certificate written before its key (or one that does not match the key at all) must
    not take the server down: the reloader keeps serving the old pair until a matching pair is
    in place (S10.3, and the reloader's own contract)."""
    env = {"WAKEDOCK_SERVER__TLS_RELOAD_INTERVAL": "0.2"}
    with wakedock_server(tmp_path / "data", https=True, env=env) as running:
        cert_path = running.cert_path
        key_path = cert_path.parent / "key.pem"
        old_ca = tmp_path / "old-ca.pem"
        old_ca.write_bytes(cert_path.read_bytes())
        _version, old_der = _handshake(running.port, _client_context(old_ca))

        new_cert = cert_path.parent / "renewed-cert.pem"
        new_key = cert_path.parent / "renewed-key.pem"
        generate_self_signed(new_cert, new_key, "localhost")
        new_der = ssl.PEM_cert_to_DER_cert(new_cert.read_text())
        # The certificate lands first; its key is not there yet.
        os.replace(new_cert, cert_path)
        time.sleep(1.0)  # five reload intervals: the reloader has seen the mismatched pair
        assert "certificate reload failed" in running.log()

        # Still served: the old, complete pair (not a broken context without a key).
        try:
            version, der = _handshake(running.port, _client_context(old_ca))
        except ssl.SSLError as exc:
            pytest.fail(f"a mismatched certificate file broke every new TLS handshake: {exc!r}")
        assert (version, der) == ("TLSv1.3", old_der)

        # Once the matching key arrives, the new pair is served.
        os.replace(new_key, key_path)
        seen = old_der
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                _version, seen = _handshake(running.port, _unverified_probe())
            except ssl.SSLError:
                seen = b""
            if seen == new_der:
                break
            time.sleep(0.1)
        assert seen == new_der
        assert running.process.poll() is None


# -- invalid configuration stops start-up -------------------------------------------------------


def _serve_with(
    tmp_path: Path, *pre_args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    full_env = {
        **os.environ,
        "WAKEDOCK_DATA_DIR": str(tmp_path / "data"),
        **FAST_HASH_ENV,
        **(env or {}),
    }
    started = time.monotonic()
    result = subprocess.run(
        wakedock_command(*pre_args, "serve", "--port", str(free_port()), "--insecure-http"),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result, time.monotonic() - started


def test_invalid_env_value_stops_startup_naming_the_key(tmp_path: Path) -> None:
    result, elapsed = _serve_with(tmp_path, env={"WAKEDOCK_AUTH__PASSWORD_MIN_LENGTH": "4"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert elapsed < 15
    assert "auth.password_min_length" in output
    assert "Traceback" not in output
    assert "listening" not in output.lower()
    # Nothing was created: the check happens before the database is opened.
    assert not (tmp_path / "data" / "wakedock.db").exists()


def test_unknown_yaml_key_stops_startup_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "wakedock.yaml"
    config.write_text(
        "server:\n  host: 127.0.0.1\n  tls_reload_intervall: 5\nauth:\n  password_min_length: 14\n"
    )
    result, elapsed = _serve_with(tmp_path, "--config", str(config))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert elapsed < 15
    assert "server.tls_reload_intervall" in output
    assert "unknown key" in output
    assert "Traceback" not in output
    assert "listening" not in output.lower()


def test_unknown_top_level_yaml_key_stops_startup(tmp_path: Path) -> None:
    config = tmp_path / "wakedock.yaml"
    config.write_text("admin_password: hunter2\n")
    result, _elapsed = _serve_with(tmp_path, "--config", str(config))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "admin_password" in output and "unknown key" in output
    # The rejected value itself is never echoed.
    assert "hunter2" not in output
