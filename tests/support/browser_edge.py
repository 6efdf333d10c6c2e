"""WAKEDOCK_TEST_THROUGH_EDGE=1 for the Chromium tests: a real edge (`wakedock edge run`: nginx
+ ModSecurity + OWASP CRS at paranoia level 2) in front of each test's `wakedock serve`, and a
failed test for any request of it the WAF refused or scored (docs/edge.md, "The test suite
through the edge"). Unset, nothing here changes a test.

Chromium starts before the test's server, so each test gets its edge's place first (an
`EdgeSlot`: a loopback address 127.0.0.x of its own and a free port there). Chromium's resolver
maps `localhost` and `*.localhost` to that address and port, whatever port a URL names: the
browser's URLs name no port (`https://localhost/login`), as behind an edge on port 443, so
the Host, the Origin and the `__Host-` cookies are those of a real installation, and WakeDock's
admin URL is `https://localhost`. Without the mapping, an edge on another port than 443 would
pass `Host` without its port (nginx's `$host`) while the browser's `Origin` names it.

The edge presents the certificate Chromium already trusts (the data directory's, which
`browser_server` copied there), and WakeDock believes its X-Forwarded-For (127.0.0.1 is a
trusted proxy). The WAF check is through_edge.py's: its `AuditLogWatch` reads ModSecurity's
audit log up to a marker request, before the edge stops.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.components import unavailable
from support.edge import TRUSTED, edge_in_front, missing_packages
from support.server import WakeDockProcess, server_env
from support.through_edge import AuditLogWatch, refusals

ENABLED = os.environ.get("WAKEDOCK_TEST_THROUGH_EDGE") == "1"
# What the browser's URLs name behind the edge (port 443 implied, as in a real installation).
ADMIN_ORIGIN = "https://localhost"


@dataclass(frozen=True)
class EdgeSlot:
    """Where a test's edge listens: chosen before Chromium starts, which is pointed at it."""

    address: str
    port: int

    def resolver_rules(self) -> str:
        """Chromium's --host-resolver-rules: `localhost` and `*.localhost`, any port, here."""
        place = f"{self.address}:{self.port}"
        return f"MAP localhost {place}, MAP *.localhost {place}"


_current: EdgeSlot | None = None


def current() -> EdgeSlot | None:
    """The running test's edge slot (None: the test's browser reaches WakeDock directly)."""
    return _current


def chromium_args() -> list[str]:
    """Where Chromium resolves `localhost` and `*.localhost`: the test's edge, or 127.0.0.1."""
    if _current is None:
        return ["--host-resolver-rules=MAP localhost 127.0.0.1, MAP *.localhost 127.0.0.1"]
    # HTTP/1.1 to the edge: on Linux, Chromium closes its HTTP/2 connections, failing the
    # requests in flight on them (ERR_NETWORK_CHANGED), whenever any interface's address
    # changes, as it does for every container Docker starts on the machine; a request in
    # flight on an HTTP/1.1 connection is left to finish. (The first run through the edge, on
    # HTTP/2, lost two tests' requests so, and saw no WAF finding HTTP/1.1 would not.)
    return [f"--host-resolver-rules={_current.resolver_rules()}", "--disable-http2"]


def _free_slot() -> EdgeSlot:
    # An address of its own: nothing else of this machine's tests listens there, so the port
    # found free stays free until the edge binds it a few seconds later.
    for _ in range(50):
        address = f"127.0.0.{secrets.randbelow(240) + 10}"
        with socket.socket() as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                continue
            return EdgeSlot(address, int(probe.getsockname()[1]))
    raise RuntimeError("no loopback address with a free port")


@contextmanager
def edge_slot_for_test(wanted: bool = ENABLED) -> Iterator[EdgeSlot | None]:
    """The test's slot while it runs (when `wanted`); then none again."""
    global _current
    if not wanted:
        yield None
        return
    if missing := missing_packages():
        unavailable(missing)
    _current = _free_slot()
    try:
        yield _current
    finally:
        _current = None


def server_settings(env: dict[str, str] | None) -> dict[str, str]:
    """The test's settings for its server, and behind an edge what that needs: 127.0.0.1 a
    trusted proxy, the admin URL the browser uses (the test's own values win)."""
    if _current is None:
        return dict(env or {})
    return {**TRUSTED, "WAKEDOCK_PROXY__ADMIN_URL": ADMIN_ORIGIN, **(env or {})}


def admin_origin(server: WakeDockProcess) -> str:
    return ADMIN_ORIGIN if _current is not None else f"https://localhost:{server.port}"


def site_origin(server: WakeDockProcess, host: str) -> str:
    """`https://<host>[:port]`: a service host (or any other) as the browser reaches it."""
    return f"https://{host}" if _current is not None else f"https://{host}:{server.port}"


def _pinned(ca: Path) -> ssl.SSLContext:
    # The certificate names localhost, the edge listens on 127.0.0.x: trust that certificate.
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    return context


@contextmanager
def edge_for(server: WakeDockProcess) -> Iterator[None]:
    """The test's edge in front of `server` (if the test has a slot); on leaving it, the test
    fails if ModSecurity refused or scored any request the edge saw."""
    slot = _current
    if slot is None:
        yield
        return
    data = server.data_dir
    with edge_in_front(
        data, server, server_env(data, server.env), address=slot.address, port=slot.port
    ) as edge:
        watch = AuditLogWatch(
            edge.out_dir / "logs" / "modsec_audit.json",
            edge.address,
            edge.port,
            _pinned(edge.ca),
            host="localhost",
        )
        offset = watch.offset()
        yield
        # Only after the test's own steps passed: a failed step is its own report.
        if findings := watch.findings_since(offset):
            pytest.fail(refusals(findings), pytrace=False)
