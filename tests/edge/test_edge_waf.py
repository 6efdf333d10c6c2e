"""The edge for real: Debian's nginx + ModSecurity + OWASP CRS, rendered and run by
`wakedock edge run`, in front of a real `wakedock serve`.

WakeDock's own flows pass through with no WAF block; the seed's attack payloads are answered 403
by nginx and land in WakeDock's audit trail as `waf_blocked` events (through the log ingest);
only TLS 1.3 is accepted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import strong_password
from support.edge import TRUSTED, Edge, run_edge, wait_waf_events
from support.server import HOST, WakeDockProcess, run_cli, server_env, wakedock_server

pytestmark = [pytest.mark.integration, pytest.mark.security]

# A host no service answers: the edge's default block, without the admin hosts' exclusions.
OTHER_HOST = "shop.localhost"


@contextmanager
def edge_in_front(
    data_dir: Path,
    wakedock: WakeDockProcess,
    extra_env: dict[str, str] | None = None,
    poll_seconds: float = 1,
) -> Iterator[Edge]:
    """support/edge.py's edge in front of `wakedock`, with the installation's environment plus
    `extra_env` (also used by test_direct_engine.py). WakeDock listens on plain HTTP on loopback
    here (serve --insecure-http, edge --wakedock-http): the nginx -> WakeDock TLS hop is checked
    by nginx -t (test_render)."""
    with run_edge(
        data_dir,
        server_env(data_dir, {**TRUSTED, **(extra_env or {})}),
        wakedock_port=wakedock.port,
        wakedock_https=wakedock.https,
        poll_seconds=poll_seconds,
    ) as edge:
        yield edge


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

        events = wait_waf_events(data_dir, len(ATTACKS) + 1)
        # In the order nginx logged them: ModSecurity writes its entry after the answer went,
        # so a refusal answered by one nginx worker can be logged after the next request's,
        # answered by another.
        assert sorted(e.details and json.loads(e.details)["path"] for e in events) == sorted(
            [*(expected for _, _, _, expected in ATTACKS), "/"]
        ), edge.log()
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


def test_a_segment_an_earlier_nginx_left_at_the_audit_logs_key_does_not_silence_the_waf(
    tmp_path: Path, nginx: Path
) -> None:
    # Debian's libmodsecurity keys a System V segment on its audit log (ftok) and leaves it
    # when nginx exits. One at the new audit log's key, smaller than its path needs, made
    # ModSecurity write no audit log at all, silently: refusals that never reached the trail.
    data_dir = tmp_path / "data"
    with wakedock_server(data_dir, https=False, env=TRUSTED) as wakedock:
        audit_log = data_dir / "edge" / "logs" / "modsec_audit.json"
        audit_log.parent.mkdir(parents=True, mode=0o700)
        audit_log.touch(mode=0o600)
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        key = libc.ftok(str(audit_log).encode(), 1)
        left = libc.shmget(key, 16, 0o1000 | 0o666)  # IPC_CREAT: as an earlier nginx left it
        assert left >= 0, ctypes.get_errno()
        try:
            with edge_in_front(data_dir, wakedock) as edge:
                method, path, payload, expected = ATTACKS[0]
                status, _, body = edge.request(method, path, payload)
                assert status == 403, body
                events = wait_waf_events(data_dir, 1)
                assert [json.loads(e.details or "{}")["path"] for e in events] == [expected]
                assert "removed 1 shared memory segment(s)" in edge.log()
        finally:
            libc.shmctl(left, 0, None)  # IPC_RMID, if the edge did not


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
