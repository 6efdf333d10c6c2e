"""SIEM outage: the collector is down while 1,000 events are produced and WakeDock restarts
once; when the collector comes back it receives every one of them exactly once, in order."""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from support.server import run_cli, wakedock_server
from support.upstream import free_port
from wakedock.audit.events import Event, EventType
from wakedock.auth.passwords import PasswordHasher
from wakedock.components import build_components
from wakedock.config import load_settings
from wakedock.context import RequestContext

pytestmark = pytest.mark.integration


class Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Collector.received.extend(body["events"])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_nothing_is_lost_across_an_outage_and_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()  # nothing listens there yet: the collector is "down"
    env = {
        "WAKEDOCK_SIEM__SINKS": json.dumps([f"http://127.0.0.1:{port}/ingest"]),
        "WAKEDOCK_SIEM__POLL_SECONDS": "0.2",
        "WAKEDOCK_SIEM__MAX_BACKOFF_SECONDS": "1",
    }
    password = secrets.token_urlsafe(18)
    created = run_cli(
        data, "user", "create", "ops", "--role", "operator", "--password-stdin",
        stdin=password, env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    settings = load_settings(None, {"data_dir": data})
    writer = build_components(settings, hasher=PasswordHasher(19456, 2, 1))
    with wakedock_server(data, env=env) as server:
        for n in range(500):  # a second writer on the same database, like another replica
            writer.auditor.record(
                Event(EventType.LOGIN_FAILURE, target=f"burst-{n}"), RequestContext(actor="x")
            )
        with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
            token = http.post(
                "/api/v1/auth/login", json={"username": "ops", "password": password}
            ).json()["access_token"]
            [sink] = http.get(
                "/api/v1/siem/sinks", headers={"Authorization": f"Bearer {token}"}
            ).json()
            # Degraded, not down: the events wait in the outbox. Nothing says where the sink is.
            health = http.get("/api/v1/health")
        assert sink["backlog"] >= 500 and sink["failures"] >= 1 and sink["last_error"]
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["components"]["siem"] == "degraded"
        assert str(port) not in health.text and "ingest" not in health.text
    for n in range(500, 1000):  # produced while WakeDock itself is down
        writer.auditor.record(
            Event(EventType.LOGIN_FAILURE, target=f"burst-{n}"), RequestContext(actor="x")
        )
    Collector.received = []
    collector = ThreadingHTTPServer(("127.0.0.1", port), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        with wakedock_server(data, env=env) as server:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                burst = [
                    e
                    for e in Collector.received
                    if str(e["wakedock"]["target"]).startswith("burst-")
                ]
                if len(burst) >= 1000:
                    break
                time.sleep(0.2)
            with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
                recovered = http.get("/api/v1/health").json()["components"]["siem"]
    finally:
        collector.shutdown()
        collector.server_close()
    assert recovered == "ok"
    ids = [str(e["event"]["id"]) for e in Collector.received]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    sequences = [int(e["event"]["sequence"]) for e in Collector.received]
    assert sequences == sorted(sequences), "delivered out of order"
    targets = [e["wakedock"]["target"] for e in Collector.received]
    assert [t for t in targets if str(t).startswith("burst-")] == [
        f"burst-{n}" for n in range(1000)
    ]
    # Every event of the trail reached the collector: nothing before or between was skipped.
    assert sequences == list(range(1, len(sequences) + 1))
