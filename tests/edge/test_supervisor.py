"""`wakedock edge run`'s supervisor with a real nginx: a changed service list is written,
checked and reloaded into the running nginx (within about a second of the change, one reload for
a burst); a replaced certificate is served to new connections while open ones finish, a broken
one is refused; nginx killed is restarted, nginx that keeps dying ends the supervisor; a stop
ends nginx."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.server import HOST, free_port, server_env, wakedock_command
from wakedock.config import Settings
from wakedock.edge.modsec_log import WafLogIngest
from wakedock.edge.render import EdgeConfig, EdgeOptions, render_edge
from wakedock.edge.supervisor import EdgeSupervisor
from wakedock.edge.tls import served_pair
from wakedock.edge.upkeep import nginx_processes, read_applied
from wakedock.services.snapshots import ServiceView
from wakedock.services.spec import ServiceSpec

pytestmark = pytest.mark.integration

TWO_MIB = b"x" * (2 * 1024 * 1024)


def _view(name: str) -> ServiceView:
    now = datetime.now(UTC)
    spec = ServiceSpec.model_validate(
        {"name": name, "image": "nginx:1", "readiness": {"type": "tcp", "port": 80}}
    )
    return ServiceView(
        id=1, name=name, owner_id=None, source="api", spec=spec, writable_root_granted=False,
        runtime="engine", container_ref=None, state="stopped", stop_reason=None, created_at=now,
        updated_at=now, last_started_at=None, last_stopped_at=None,
    )  # fmt: skip


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-days", "1",
         "-addext", "subjectAltName=DNS:localhost,DNS:*.localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _post(port: int, host: str, cert: Path) -> int:
    """A 2 MiB body to `host` through the edge: the answer's status."""
    context = ssl.create_default_context(cafile=str(cert))
    connection = http.client.HTTPSConnection(HOST, port, context=context, timeout=60)
    try:
        connection.request("POST", "/upload", body=TWO_MIB, headers={"Host": host})
        return connection.getresponse().status
    except (ConnectionError, ssl.SSLError):
        return 0  # nginx may close while the body is still being sent
    finally:
        connection.close()


def test_a_new_service_is_reloaded_into_the_running_nginx(tmp_path: Path, nginx: Path) -> None:
    cert, key = _certificate(tmp_path)
    port = free_port()
    # WakeDock itself is not running: only nginx's own answers are looked at.
    settings = Settings(data_dir=tmp_path / "data", server={"port": free_port()})
    options = EdgeOptions(
        out_dir=tmp_path / "edge", cert=cert, key=key, wakedock_ca=cert, listen=f"{HOST}:{port}"
    )
    services: list[ServiceView] = []

    def render() -> EdgeConfig:
        return render_edge(settings, list(services), options)

    ingest = WafLogIngest(options.audit_log, lambda event, context: None)
    supervisor = EdgeSupervisor(render, ingest, nginx, poll_seconds=0.3)
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(supervisor.run()))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        # Unknown host: the default block, whose body limit is 1 MiB (the admin API's).
        while (answer := _post(port, "wiki.localhost", cert)) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer == 413
        services.append(_view("wiki"))  # a service is created
        while supervisor.reloads == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert supervisor.reloads == 1
        assert "server_name wiki.localhost;" in options.conf_path.read_text()
        # Its own block now (16 MiB for services): the body passes nginx, whose upstream (no
        # WakeDock here) fails. New workers take the new configuration: poll until they do.
        while (
            answer := _post(port, "wiki.localhost", cert)
        ) == 413 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer not in (0, 413), answer
    finally:
        supervisor.request_stop()
        thread.join(60)
    assert status == [0]
    pid_file = options.out_dir / "nginx.pid"
    assert not pid_file.exists()  # nginx stopped with the supervisor


class Edge:
    """A supervisor running in a thread over a list of services the test edits, WakeDock's
    place taken by `upstream_port` (plain HTTP) or by nothing."""

    def __init__(self, tmp_path: Path, nginx: Path, upstream_port: int | None = None, **knobs: Any):
        self.cert, self.key = _certificate(tmp_path)
        self.port = free_port()
        self.services: list[ServiceView] = []
        self.messages: list[str] = []
        settings = Settings(
            data_dir=tmp_path / "data", server={"port": upstream_port or free_port()}
        )
        self.options = EdgeOptions(
            out_dir=tmp_path / "edge", cert=self.cert, key=self.key, wakedock_ca=self.cert,
            listen=f"{HOST}:{self.port}", wakedock_http=upstream_port is not None,
        )  # fmt: skip
        ingest = WafLogIngest(self.options.audit_log, lambda event, context: None)
        self.supervisor = EdgeSupervisor(
            lambda: render_edge(settings, list(self.services), self.options), ingest, nginx,
            progress=self.messages.append,
            services_marker=lambda: tuple(view.name for view in self.services), **knobs,
        )  # fmt: skip
        self.status: list[int] = []
        self._thread = threading.Thread(target=lambda: self.status.append(self.supervisor.run()))

    def __enter__(self) -> Edge:
        self._thread.start()
        _wait(lambda: read_applied(self.options.out_dir) is not None, "nginx started")
        return self

    def __exit__(self, *exc: object) -> None:
        self.supervisor.request_stop()
        self._thread.join(60)

    def generation(self) -> int:
        applied = read_applied(self.options.out_dir)
        return applied.generation if applied else 0

    def answer(self, host: str = "wiki.localhost", path: str = "/") -> tuple[int, bytes]:
        """A GET on a new connection: the status (0 when refused) and the served certificate."""
        connection = http.client.HTTPSConnection(HOST, self.port, context=_any_cert(), timeout=10)
        try:
            connection.request("GET", path, headers={"Host": host})
            served = _served(connection)  # before an answer that closes the connection
            return connection.getresponse().status, served
        except (OSError, ssl.SSLError):
            return 0, b""
        finally:
            connection.close()


def _any_cert() -> ssl.SSLContext:
    # Which certificate is served is the question, not whether it is trusted: it is compared.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _served(connection: http.client.HTTPSConnection) -> bytes:
    sock = connection.sock
    assert isinstance(sock, ssl.SSLSocket)
    return sock.getpeercert(binary_form=True) or b""


def _der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def _wait(condition: Callable[[], bool], what: str, seconds: float = 30) -> float:
    """Poll `condition` until true; the seconds it took (AssertionError after `seconds`)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_service_change_is_applied_within_about_a_second(tmp_path: Path, nginx: Path) -> None:
    # poll_seconds is long: only the change marker can make this prompt.
    with Edge(tmp_path, nginx, poll_seconds=600, watch_seconds=0.5) as edge:
        before, reloads = edge.generation(), edge.supervisor.reloads
        changed = time.monotonic()
        edge.services.append(_view("wiki"))
        took = _wait(lambda: edge.generation() > before, "the new configuration applied")
        # Up to one watch interval, the debounce, and nginx parsing the CRS again: about a
        # second (bench/edge_upkeep.py). The bound leaves room for a busy machine; the poll
        # alone would have taken ten minutes.
        assert took < 5.0, took
        applied = read_applied(edge.options.out_dir)
        assert applied is not None and "wiki" in applied.services_marker
        assert applied.reason == "services changed"
        assert "server_name wiki.localhost;" in edge.options.conf_path.read_text()
        print(f"service change applied {time.monotonic() - changed:.2f} s after it")
        assert edge.supervisor.reloads == reloads + 1
        # A burst: five services created 50 ms apart cost one reload.
        for name in ("a1", "a2", "a3", "a4", "a5"):
            edge.services.append(_view(name))
            time.sleep(0.05)
        _wait(lambda: edge.generation() > before + 1, "the burst applied")
        time.sleep(1.5)  # a second reload would have happened by now
        assert edge.supervisor.reloads == reloads + 2
        assert "server_name a5.localhost;" in edge.options.conf_path.read_text()
    assert edge.status == [0]


class _SlowUpstream(BaseHTTPRequestHandler):
    """WakeDock's stand-in: `/slow` answers once the test releases it."""

    arrived = threading.Event()
    release = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.arrived.set()
            self.release.wait(30)
        body = b"done"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_replaced_certificate_is_served_to_new_connections_while_open_ones_finish(
    tmp_path: Path, nginx: Path
) -> None:
    upstream = ThreadingHTTPServer((HOST, free_port()), _SlowUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with Edge(tmp_path, nginx, upstream.server_port, watch_seconds=0.2) as edge:
            old = _der(edge.cert)
            assert edge.answer() == (200, old)
            # A kept-alive connection: one request answered, a second one held by the upstream
            # while the certificate is replaced under it.
            kept = http.client.HTTPSConnection(HOST, edge.port, context=_any_cert(), timeout=30)
            kept.request("GET", "/", headers={"Host": "wiki.localhost"})
            assert kept.getresponse().read() == b"done"
            assert _served(kept) == old
            held: list[bytes] = []
            request = threading.Thread(target=lambda: held.append(_get(kept, "/slow")))
            request.start()
            # In flight (on that connection: http.client would only reconnect for a new request).
            assert _SlowUpstream.arrived.wait(30)
            before = edge.generation()
            new_dir = tmp_path / "new"
            new_dir.mkdir()
            cert, key = _certificate(new_dir)
            # As a renewal tool does: each file replaced whole (the key first; the moment in
            # between, with a mismatched pair, may be refused and is tried again).
            key.replace(edge.key)
            cert.replace(edge.cert)
            new = _der(edge.cert)
            assert new != old
            took = _wait(lambda: edge.answer()[1] == new, "the new certificate served")
            assert edge.generation() > before
            applied = read_applied(edge.options.out_dir)
            assert applied is not None and "certificate replaced" in applied.reason
            print(f"new certificate served {took:.2f} s after it was replaced")
            _SlowUpstream.release.set()
            request.join(30)
            assert held == [b"done"]  # the connection open before finished its request
            kept.close()
    finally:
        _SlowUpstream.release.set()
        upstream.shutdown()
        upstream.server_close()


def _get(connection: http.client.HTTPSConnection, path: str) -> bytes:
    connection.request("GET", path, headers={"Host": "wiki.localhost"})
    return connection.getresponse().read()


def test_a_broken_certificate_is_refused_and_a_restart_serves_the_last_good_one(
    tmp_path: Path, nginx: Path
) -> None:
    with Edge(tmp_path, nginx, watch_seconds=0.2, max_quick_failures=2, stable_seconds=600) as edge:
        old = _der(edge.cert)
        edge.cert.write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        _wait(lambda: any("certificate or key was refused" in m for m in edge.messages), "refusal")
        assert edge.answer()[1] == old  # the old certificate keeps serving
        # nginx killed now starts again, with the last good pair (edge/tls.py).
        pid = edge.supervisor.nginx_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _wait(
            lambda: edge.supervisor.nginx_pid not in (pid, None) and edge.answer()[0] != 0,
            "the edge answering again",
        )
        assert edge.answer()[1] == old
        assert edge.supervisor.restarts == 1 and edge.status == []
        assert any("starts with the last good certificate" in m for m in edge.messages)


def test_nginx_that_keeps_dying_ends_the_edge(tmp_path: Path, nginx: Path) -> None:
    with Edge(tmp_path, nginx, watch_seconds=0.2, max_quick_failures=2, stable_seconds=600) as edge:
        # No usable pair at all, the last good one gone too: nginx killed cannot start again,
        # and after two quick failures the supervisor gives up, with a failure status.
        edge.cert.write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        _wait(lambda: any("certificate or key was refused" in m for m in edge.messages), "refusal")
        for served in served_pair(edge.options.out_dir):
            served.unlink()
        pid = edge.supervisor.nginx_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: bool(edge.status), "the supervisor gave up")
    assert edge.status == [1]
    assert any("giving up" in m for m in edge.messages)
    assert edge.answer()[0] == 0  # no nginx left behind, orphaned workers included
    _wait(lambda: not nginx_processes(edge.options.out_dir / "logs/error.log"), "no nginx left")


def test_nginx_killed_is_restarted(tmp_path: Path, nginx: Path) -> None:
    with Edge(tmp_path, nginx, watch_seconds=0.2) as edge:
        assert edge.answer()[0] != 0
        pid = edge.supervisor.nginx_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the master; its workers are orphaned
        took = _wait(
            lambda: edge.supervisor.nginx_pid not in (pid, None) and edge.answer()[0] != 0,
            "the edge answering again",
        )
        print(f"answering again {took:.2f} s after nginx was killed")
        assert edge.supervisor.restarts == 1
        assert any("died unexpectedly" in m for m in edge.messages)
        # The edge still stops cleanly, as on SIGTERM.
        new_pid = edge.supervisor.nginx_pid
    assert edge.status == [0]
    assert new_pid is not None and not Path(f"/proc/{new_pid}").exists()
    # The killed master's workers were told to stop too (they had the listening socket).
    _wait(lambda: not nginx_processes(edge.options.out_dir / "logs/error.log"), "no nginx left")


def test_edge_run_restarts_a_killed_nginx_and_stops_on_sigterm(tmp_path: Path, nginx: Path) -> None:
    """The real command: `wakedock edge run` (its database, generated certificate and services
    marker), nginx's master killed, then SIGTERM."""
    port = free_port()
    data_dir = tmp_path / "data"
    env = server_env(data_dir, {"WAKEDOCK_HTTP__TRUSTED_PROXIES": '["127.0.0.1/32"]'})
    args = ["edge", "run", "--listen", f"{HOST}:{port}", "--wakedock-http"]
    log_path = tmp_path / "edge.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            wakedock_command(*args), env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    out_dir = data_dir / "edge"
    try:
        _wait(lambda: read_applied(out_dir) is not None, "nginx started", seconds=120)
        first = read_applied(out_dir)
        assert first is not None and first.reason == "started"
        os.kill(first.nginx_pid, signal.SIGKILL)
        _wait(
            lambda: (
                (applied := read_applied(out_dir)) is not None and applied.reason == "restarted"
            ),
            "nginx restarted",
        )
        context = _any_cert()
        with (
            socket.create_connection((HOST, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost"),
        ):
            pass  # the edge answers again
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    log = log_path.read_text()
    assert "died unexpectedly" in log and "edge stopped" in log
    _wait(lambda: not nginx_processes(out_dir / "logs/error.log"), "no nginx left")
