"""`wakedock healthcheck` (the image's HEALTHCHECK): exit 0 only when the server this
configuration describes answers its liveness probe with 200 over TLS pinned to its own
certificate; exit 1 when nothing listens, when it answers an error, or when another certificate
is served (something else took the port)."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from support.server import free_port, server_env, wakedock_command, wakedock_server
from wakedock.cli import main
from wakedock.config import load_settings
from wakedock.health.probe import LIVENESS_PATH, probe, probe_target
from wakedock.server.tls import generate_self_signed


class _Answer(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the server's `status`, recording the request's path and Host."""

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers["Host"]))  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        body = b'{"status":"ok"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _answering(status: int, cert: Path | None, key: Path | None) -> Iterator[tuple[int, list]]:
    """A stand-in server on 127.0.0.1 (TLS when `cert` is given) answering `status`."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer)
    server.status = status  # type: ignore[attr-defined]
    server.seen = []  # type: ignore[attr-defined]
    if cert is not None and key is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def _certificate(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    generate_self_signed(cert, key, "localhost")
    return cert, key


def _settings(data_dir: Path, port: int, **server: object):  # type: ignore[no-untyped-def]
    return load_settings(None, {"data_dir": data_dir, "server": {"port": port, **server}})


def test_alive_when_the_server_answers_200_with_its_own_certificate(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path / "tls")
    with _answering(200, cert, key) as (port, seen):
        result = probe(probe_target(_settings(tmp_path, port)), timeout=5)
    assert result.alive, result.detail
    # The liveness path, on the first admin host name (any other Host is a service's).
    assert seen == [(LIVENESS_PATH, "localhost")]


def test_a_server_listening_on_every_address_is_probed_on_loopback(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path / "tls")
    with _answering(200, cert, key) as (port, _):
        target = probe_target(_settings(tmp_path, port, host="0.0.0.0"))  # noqa: S104
        result = probe(target, timeout=5)
    assert target.host == "127.0.0.1"
    assert result.alive, result.detail


def test_not_alive_on_an_error_answer(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path / "tls")
    with _answering(503, cert, key) as (port, _):
        result = probe(probe_target(_settings(tmp_path, port)), timeout=5)
    assert not result.alive
    assert "HTTP 503" in result.detail


@pytest.mark.security
def test_not_alive_when_another_certificate_is_served(tmp_path: Path) -> None:
    """Whatever took the port is not this WakeDock: its certificate is not the configured one."""
    _certificate(tmp_path / "tls")  # what WakeDock's configuration points at
    other_cert, other_key = _certificate(tmp_path / "other")
    with _answering(200, other_cert, other_key) as (port, seen):
        result = probe(probe_target(_settings(tmp_path, port)), timeout=5)
    assert not result.alive
    assert "TLS" in result.detail
    assert seen == []  # the request never left the client


def test_a_configured_certificate_is_the_trust_anchor(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path / "configured")
    with _answering(200, cert, key) as (port, _):
        settings = _settings(tmp_path, port, tls_cert_file=cert, tls_key_file=key)
        result = probe(probe_target(settings), timeout=5)
    assert result.alive, result.detail


def test_plain_http_when_served_insecurely(tmp_path: Path) -> None:
    with _answering(200, None, None) as (port, seen):
        result = probe(probe_target(_settings(tmp_path, port), insecure_http=True), timeout=5)
    assert result.alive, result.detail
    assert seen == [(LIVENESS_PATH, "localhost")]


def test_the_command_exits_1_when_nothing_listens(tmp_path: Path) -> None:
    _certificate(tmp_path / "tls")
    port = free_port()
    result = CliRunner().invoke(
        main,
        ["--data-dir", str(tmp_path), "healthcheck", "--timeout", "2"],
        env={"WAKEDOCK_SERVER__PORT": str(port)},
    )
    assert result.exit_code == 1
    assert "connection refused" in result.output


def test_the_command_exits_1_without_a_certificate(tmp_path: Path) -> None:
    """Before the first start no certificate exists: not alive, and it says which file."""
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "healthcheck"])
    assert result.exit_code == 1
    assert "cert.pem" in result.output


@pytest.mark.integration
def test_the_command_against_a_real_server(tmp_path: Path) -> None:
    """`wakedock healthcheck` with the configuration `wakedock serve` runs with: exit 0; and 1
    once the server has stopped."""
    data = tmp_path / "data"
    with wakedock_server(data) as server:
        env = server_env(data, {"WAKEDOCK_SERVER__PORT": str(server.port)})
        alive = subprocess.run(
            wakedock_command("healthcheck"), env=env, capture_output=True, text=True, timeout=60
        )
    assert alive.returncode == 0, alive.stderr
    assert "alive" in alive.stdout
    stopped = subprocess.run(
        wakedock_command("healthcheck"), env=env, capture_output=True, text=True, timeout=60
    )
    assert stopped.returncode == 1


def test_the_standalone_form_reads_the_same_configuration(tmp_path: Path) -> None:
    """`python -m wakedock.health` (the image's HEALTHCHECK): the data directory and port from
    the environment, as `serve` reads them."""
    cert, key = _certificate(tmp_path / "tls")
    with _answering(200, cert, key) as (port, seen):
        env = server_env(tmp_path, {"WAKEDOCK_SERVER__PORT": str(port)})
        alive = subprocess.run(
            [sys.executable, "-m", "wakedock.health", "--timeout", "5"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert alive.returncode == 0, alive.stderr
    assert seen == [(LIVENESS_PATH, "localhost")]
    refused = subprocess.run(
        [sys.executable, "-m", "wakedock.health", "--timeout", "2"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "connection refused" in refused.stderr
