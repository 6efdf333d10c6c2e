"""`wakedock edge run` (Debian's nginx + ModSecurity + OWASP CRS) in front of a real `wakedock
serve`, and the `waf_blocked` events it records: for the attack tests and for bench/edge.py.
No pytest here. Every address is 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyotp
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from conftest import strong_password
from support.login import access_token, bearer
from support.server import HOST, WakeDockProcess, free_port, run_cli
from support.socket_relay import TlsRelay as TlsRelay  # (for test_edge_scanners.py)
from wakedock.audit.models import AuditEvent
from wakedock.edge.render import CRS_RULES, MODSECURITY_MODULE, NGINX_BINARY

# WakeDock believes the edge's X-Forwarded-For only if 127.0.0.1 is a trusted proxy.
TRUSTED = {"WAKEDOCK_HTTP__TRUSTED_PROXIES": '["127.0.0.1/32"]'}
PACKAGES = "apt-get install nginx libnginx-mod-http-modsecurity modsecurity-crs"


@dataclass
class Edge:
    """A running edge: its port, the certificate it presents (WakeDock's) and its log."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    ca: Path
    out_dir: Path
    # The loopback address nginx listens on (another than 127.0.0.1 to hold port 443 alone).
    address: str = HOST

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    @property
    def base_url(self) -> str:
        return f"https://{self.address}:{self.port}"

    def access_log(self) -> str:
        """nginx's access log: every answer the edge gave, with its status."""
        path = self.out_dir / "logs" / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def request(
        self, method: str, path: str, body: object | None = None, host: str = HOST
    ) -> tuple[int, http.client.HTTPResponse, bytes]:
        """One request on a new connection; the path is sent exactly as given."""
        connection = http.client.HTTPSConnection(
            self.address, self.port, context=self.context(), timeout=60
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
                socket.create_connection((edge.address, edge.port), timeout=2) as raw,
                edge.context().wrap_socket(raw, server_hostname=HOST),
            ):
                return
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the edge does not listen:\n{edge.log()}") from None
            time.sleep(0.2)


@contextmanager
def run_edge(
    data_dir: Path,
    env: dict[str, str],
    *,
    wakedock_port: int,
    wakedock_https: bool,
    address: str = HOST,
    port: int | None = None,
    poll_seconds: float = 1,
    module: str = "wakedock.cli",
) -> Iterator[Edge]:
    """`wakedock edge run` (`python -m <module> edge run`) on `data_dir`, in front of WakeDock
    on 127.0.0.1:`wakedock_port`, listening on `address` (loopback) and `port` (default: a free
    one), with `env`; stopped on exit. WakeDock on plain HTTP gets `--wakedock-http`."""
    port = port or free_port()
    log_path = data_dir.parent / f"edge-{port}.log"
    args = ["edge", "run", "--listen", f"{address}:{port}", "--poll-seconds", str(poll_seconds)]
    if not wakedock_https:
        args.append("--wakedock-http")
    env = {**env, "WAKEDOCK_SERVER__PORT": str(wakedock_port)}
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    edge = Edge(port, process, log_path, data_dir / "tls" / "cert.pem", data_dir / "edge", address)
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


@contextmanager
def edge_in_front(
    data_dir: Path,
    wakedock: WakeDockProcess,
    env: dict[str, str],
    *,
    address: str = HOST,
    port: int | None = None,
    poll_seconds: float = 1,
) -> Iterator[Edge]:
    """`run_edge` in front of the server `wakedock`, with `env` (the server's environment)."""
    with run_edge(
        data_dir,
        env,
        wakedock_port=wakedock.port,
        wakedock_https=wakedock.https,
        address=address,
        port=port,
        poll_seconds=poll_seconds,
    ) as edge:
        yield edge


def waf_events(data_dir: Path) -> list[AuditEvent]:
    """The `waf_blocked` rows of the installation's audit trail (SQLite), oldest first."""
    engine = create_engine(f"sqlite:///{data_dir / 'wakedock.db'}")
    try:
        with Session(engine) as db:
            query = select(AuditEvent).where(AuditEvent.type == "waf_blocked")
            return list(db.scalars(query.order_by(AuditEvent.seq)).all())
    finally:
        engine.dispose()


def wait_waf_events(data_dir: Path, count: int, timeout: float = 60) -> list[AuditEvent]:
    """At least `count` events, or what there is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        events = waf_events(data_dir)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.3)


def missing_packages() -> str | None:
    """Why the edge cannot run here (a missing Debian package), or None."""
    if not (shutil.which("nginx") or NGINX_BINARY.exists()):
        return f"nginx is not installed ({PACKAGES})"
    if not MODSECURITY_MODULE.exists():
        return f"the nginx ModSecurity module is not installed ({PACKAGES})"
    if not (CRS_RULES / "REQUEST-949-BLOCKING-EVALUATION.conf").exists():
        return f"the OWASP CRS is not installed ({PACKAGES})"
    return None


def admin_token(edge: Edge, data_dir: Path, name: str = "root") -> str:
    """An admin created with the CLI, signed in and MFA enrolled through the edge (the role
    requires MFA before anything else); its access token."""
    password = strong_password()
    created = run_cli(
        data_dir, "user", "create", name, "--role", "admin", "--password-stdin",
        stdin=password + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with httpx.Client(base_url=edge.base_url, verify=edge.context(), timeout=60) as client:
        token = access_token(client, name, password)
        secret = client.post("/api/v1/auth/mfa/setup", headers=bearer(token)).json()["secret"]
        code = pyotp.TOTP(secret).now()
        confirmed = client.post(
            "/api/v1/auth/mfa/confirm", headers=bearer(token), json={"code": code}
        )
        assert confirmed.status_code == 200, confirmed.text
        assert client.get("/api/v1/users", headers=bearer(token)).status_code == 200
    return token
