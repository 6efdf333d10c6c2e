"""The edge for real: Debian's nginx + ModSecurity + OWASP CRS, rendered and run by
`wakedock edge run`, in front of a real `wakedock serve`.

WakeDock's own flows pass through with no WAF block; the seed's attack payloads are answered 403
by nginx and land in WakeDock's audit trail as `waf_blocked` events (through the log ingest);
only TLS 1.3 is accepted.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from conftest import strong_password
from support.server import (
    HOST,
    WakeDockProcess,
    free_port,
    run_cli,
    server_env,
    wakedock_command,
    wakedock_server,
)
from wakedock.audit.models import AuditEvent

pytestmark = [pytest.mark.integration, pytest.mark.security]

# A host no service answers: the edge's default block, without the admin hosts' exclusions.
OTHER_HOST = "shop.localhost"
# WakeDock believes the edge's X-Forwarded-For only if 127.0.0.1 is a trusted proxy.
TRUSTED = {"WAKEDOCK_HTTP__TRUSTED_PROXIES": '["127.0.0.1/32"]'}


@dataclass
class Edge:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    ca: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def request(
        self, method: str, path: str, body: object | None = None, host: str = HOST
    ) -> tuple[int, http.client.HTTPResponse, bytes]:
        """One request on a new connection; the path is sent exactly as given."""
        connection = http.client.HTTPSConnection(
            HOST, self.port, context=self.context(), timeout=60
        )
        headers = {"Host": host, "User-Agent": "wakedock-tests", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response, response.read()
        finally:
            connection.close()


def _wait_edge(edge: Edge, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if edge.process.poll() is not None:
            raise RuntimeError(f"wakedock edge run exited early:\n{edge.log()}")
        # A handshake under our certificate: our nginx, not whatever else held the port before.
        try:
            with (
                socket.create_connection((HOST, edge.port), timeout=2) as raw,
                edge.context().wrap_socket(raw, server_hostname=HOST),
            ):
                return
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the edge does not listen:\n{edge.log()}") from None
            time.sleep(0.2)


@contextmanager
def edge_in_front(
    data_dir: Path,
    wakedock: WakeDockProcess,
    extra_env: dict[str, str] | None = None,
    poll_seconds: float = 1,
) -> Iterator[Edge]:
    port = free_port()
    log_path = data_dir.parent / f"edge-{port}.log"
    # WakeDock listens on plain HTTP on loopback here (serve --insecure-http, edge
    # --wakedock-http): the nginx -> WakeDock TLS hop is checked by nginx -t (test_render).
    env = server_env(
        data_dir, {**TRUSTED, "WAKEDOCK_SERVER__PORT": str(wakedock.port), **(extra_env or {})}
    )
    args = ["edge", "run", "--listen", f"{HOST}:{port}", "--wakedock-http"]
    args += ["--poll-seconds", str(poll_seconds)]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            wakedock_command(*args), env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    edge = Edge(port, process, log_path, data_dir / "tls" / "cert.pem")
    try:
        _wait_edge(edge)
        yield edge
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _waf_events(data_dir: Path) -> list[AuditEvent]:
    engine = create_engine(f"sqlite:///{data_dir / 'wakedock.db'}")
    try:
        with Session(engine) as db:
            query = select(AuditEvent).where(AuditEvent.type == "waf_blocked")
            return list(db.scalars(query.order_by(AuditEvent.seq)).all())
    finally:
        engine.dispose()


def _wait_events(data_dir: Path, count: int, timeout: float = 60) -> list[AuditEvent]:
    deadline = time.monotonic() + timeout
    while True:
        events = _waf_events(data_dir)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.3)


# The seed's payloads (SQL injection in `search`, XSS and command injection in a service name,
# path traversal plain and encoded), each with the path its audit event must show.
ATTACKS = [
    ("GET", "/api/v1/users?search=1'%20OR%20'1'='1", None, "/api/v1/users"),
    ("POST", "/api/v1/services", {"name": "<script>alert(1)</script>", "image": "nginx:1"},
     "/api/v1/services"),
    ("POST", "/api/v1/services", {"name": "x; cat /etc/passwd", "image": "nginx:1"},
     "/api/v1/services"),
    ("GET", "/api/v1/files/../../etc/passwd", None, "/api/v1/files/../../etc/passwd"),
    ("GET", "/api/v1/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd", None,
     "/api/v1/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
]  # fmt: skip


def test_wakedock_through_the_edge_and_the_seeds_attacks_blocked_and_audited(
    tmp_path: Path, nginx: Path
) -> None:
    data_dir = tmp_path / "data"
    # What the CRS would score as SQL injection anywhere but in a password field.
    password = strong_password() + "' OR '1'='1' --"
    created = run_cli(
        data_dir, "user", "create", "alice", "--role", "viewer", "--password-stdin",
        stdin=password + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with (
        wakedock_server(data_dir, https=False, env=TRUSTED) as wakedock,
        edge_in_front(data_dir, wakedock) as edge,
    ):
        # WakeDock's own flows pass, with WakeDock's security headers exactly once.
        status, response, body = edge.request("GET", "/api/v1/health")
        assert status == 200, body
        assert json.loads(body)["status"] == "ok"
        for header in ("strict-transport-security", "x-frame-options", "content-security-policy"):
            assert len(response.headers.get_all(header) or []) == 1, header
        status, _, body = edge.request(
            "POST", "/api/v1/auth/login", {"username": "alice", "password": password}
        )
        assert status == 200, body
        assert "access_token" in json.loads(body)

        for method, path, payload, _ in ATTACKS:
            status, response, body = edge.request(method, path, payload)
            assert status == 403, (path, body)
            assert response.headers["server"] == "nginx"  # refused at the edge
            assert response.headers["x-frame-options"] == "DENY"

        # A service spec's `command` is left out of the command-execution rules on the admin
        # hosts only: the same field in a body to any other host is inspected as usual.
        status, _, body = edge.request(
            "POST", "/", {"command": ["/bin/sh", "-c", "x; cat /etc/passwd"]}, host=OTHER_HOST
        )
        assert status == 403, body

        events = _wait_events(data_dir, len(ATTACKS) + 1)
        assert [e.details and json.loads(e.details)["path"] for e in events] == [
            *(expected for _, _, _, expected in ATTACKS),
            "/",
        ], edge.log()
        for event in events:
            details = json.loads(event.details or "{}")
            assert event.severity == "high"
            assert event.ip == HOST
            assert details["host"] in (HOST, OTHER_HOST)
            assert "949110" in details["rule_ids"]
            assert details["inbound_anomaly_score"] >= 5
            # Never a body or a query string: the path is all of the request that is kept.
            for payload in ("<script>", "cat /etc/passwd", "'1'='1", "search"):
                assert payload not in (event.details or ""), payload


def test_only_tls_1_3_is_accepted(tmp_path: Path, nginx: Path) -> None:
    data_dir = tmp_path / "data"
    with (
        wakedock_server(data_dir, https=False, env=TRUSTED) as wakedock,
        edge_in_front(data_dir, wakedock) as edge,
    ):
        old = edge.context()
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection((HOST, edge.port), timeout=30) as raw,
            pytest.raises(ssl.SSLError),
        ):
            old.wrap_socket(raw, server_hostname=HOST)
        with (
            socket.create_connection((HOST, edge.port), timeout=30) as raw,
            edge.context().wrap_socket(raw, server_hostname=HOST) as secured,
        ):
            assert secured.version() == "TLSv1.3"
