"""SIEM sinks against real receivers started by the test: syslog over UDP, TCP and TLS (each
message checked by a strict RFC 5424 parser, the TLS certificate verified), HTTP (generic and
Splunk HEC shapes) and a JSON-lines file with ECS field names."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy.orm import Session, sessionmaker
from syslog_rfc5424_parser import SyslogMessage

from support.database import audit_database
from wakedock.audit.events import Event, EventType
from wakedock.audit.service import record_alone
from wakedock.clock import SystemClock
from wakedock.context import RequestContext
from wakedock.server.tls import generate_self_signed
from wakedock.siem.exporter import SinkWorker, sink_key
from wakedock.siem.sinks import SinkError, parse_sink

pytestmark = pytest.mark.integration


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Two audit events to ship, and only the database they are in."""
    with audit_database(f"sqlite:///{tmp_path / 'wakedock.db'}") as factory:
        now = SystemClock().now()
        record_alone(
            factory,
            Event(EventType.LOGIN_FAILURE, target="alice", details={"reason": 'bad "pw"]'}),
            RequestContext(ip="198.51.100.4", user_agent="curl/8", actor="alice"),
            at=now,
        )
        record_alone(
            factory, Event(EventType.TOKEN_REUSE), RequestContext(actor="bob\r\ninjected"), at=now
        )
        yield factory


def deliver(db: sessionmaker[Session], url: str) -> int:
    worker = SinkWorker(
        sink_key(url),
        parse_sink(url),
        db,
        SystemClock(),
        batch_size=100,
        poll_seconds=1,
        max_backoff=1,
    )
    worker._ensure_cursor()
    try:
        return worker.deliver_once()
    finally:
        worker.sink.close()


def parsed(raw: bytes) -> dict[str, Any]:
    message = SyslogMessage.parse(raw.decode("utf-8"))
    result: dict[str, Any] = message.as_dict()
    return result


def test_syslog_udp_messages_are_strict_rfc5424(db: sessionmaker[Session]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        assert deliver(db, f"syslog+udp://127.0.0.1:{port}") == 2
        first, second = (parsed(receiver.recv(65535)) for _ in range(2))
    assert first["facility"] == "audit" and first["appname"] == "wakedock"
    assert first["msgid"] == "login_failure" and first["severity"] == "notice"
    assert first["sd"]["wakedock@32473"]["seq"] == "1"
    body = json.loads(first["msg"].lstrip("\ufeff"))
    assert body["event"]["id"] == "wakedock-1" and body["source"]["ip"] == "198.51.100.4"
    assert body["wakedock"]["details"] == {"reason": 'bad "pw"]'}
    assert second["msgid"] == "token_reuse" and second["severity"] == "err"
    # The CR/LF of a hostile actor never splits a message.
    assert "\n" not in json.loads(second["msg"].lstrip("\ufeff"))["user"]["name"]


def _frames(data: bytes) -> list[bytes]:
    """Split an octet-counted stream: "<length> <message>"..."""
    frames = []
    while data:
        length, _, rest = data.partition(b" ")
        frames.append(rest[: int(length)])
        data = rest[int(length) :]
    return frames


class StreamReceiver:
    """A TCP (optionally TLS) syslog receiver that keeps every byte it gets."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.data = b""
        self._context = context
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            try:
                if self._context is not None:
                    conn = self._context.wrap_socket(conn, server_side=True)
                conn.settimeout(2)
                while chunk := conn.recv(65536):
                    self.data += chunk
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def wait_for(self, count: int) -> list[bytes]:
        for _ in range(100):
            frames = _frames(self.data) if self.data else []
            if len(frames) >= count:
                return frames
            threading.Event().wait(0.05)
        raise AssertionError(f"received {self.data!r}")

    def close(self) -> None:
        self.server.close()


def test_syslog_tcp_octet_counted(db: sessionmaker[Session]) -> None:
    receiver = StreamReceiver()
    try:
        assert deliver(db, f"syslog+tcp://127.0.0.1:{receiver.port}") == 2
        frames = receiver.wait_for(2)
    finally:
        receiver.close()
    assert [parsed(f)["msgid"] for f in frames] == ["login_failure", "token_reuse"]


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    cert, key = tmp_path / "siem.pem", tmp_path / "siem.key"
    generate_self_signed(cert, key, "localhost")
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other.key"
    generate_self_signed(other_cert, other_key, "localhost")
    return cert, key, other_cert


def test_syslog_tls_verifies_the_receiver(
    db: sessionmaker[Session], tls_files: tuple[Path, Path, Path]
) -> None:
    cert, key, other_cert = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiver = StreamReceiver(context)
    try:
        # A receiver whose certificate the configured CA did not sign is refused: no delivery.
        with pytest.raises(SinkError, match="CERTIFICATE_VERIFY_FAILED"):
            deliver(db, f"syslog+tls://localhost:{receiver.port}?ca={other_cert}")
        assert deliver(db, f"syslog+tls://localhost:{receiver.port}?ca={cert}") == 2
        frames = receiver.wait_for(2)
    finally:
        receiver.close()
    assert all(parsed(f)["appname"] == "wakedock" for f in frames)


class Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.bodies.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_http_generic_and_splunk_shapes(db: sessionmaker[Session], tmp_path: Path) -> None:
    Collector.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    token = tmp_path / "hec-token"
    token.write_text("0f5e-splunk-token\n")
    token.chmod(0o600)  # a token file follows the secret file rules
    try:
        assert deliver(db, f"http://127.0.0.1:{port}/ingest") == 2
        assert (
            deliver(
                db, f"splunk+http://127.0.0.1:{port}/services/collector/event?token_file={token}"
            )
            == 2
        )
    finally:
        server.shutdown()
        server.server_close()
    (_generic_headers, generic), (splunk_headers, splunk) = Collector.bodies
    events = json.loads(generic)["events"]
    assert [e["event"]["id"] for e in events] == ["wakedock-1", "wakedock-2"]
    assert splunk_headers["Authorization"] == "Splunk 0f5e-splunk-token"
    decoder, rest, found = json.JSONDecoder(), splunk.decode(), []
    while rest:
        obj, end = decoder.raw_decode(rest)
        found.append(obj)
        rest = rest[end:]
    assert [o["event"]["event"]["action"] for o in found] == ["login_failure", "token_reuse"]
    assert found[0]["sourcetype"] == "_json"


def test_file_sink_writes_ecs_json_lines(db: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "siem" / "audit.jsonl"
    assert deliver(db, f"file://{path}") == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"]["sequence"] for line in lines] == [1, 2]
    assert lines[0]["@timestamp"].endswith("Z") and lines[0]["user"]["name"] == "alice"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x/y", "unknown sink scheme"),
        ("file://relative/path", "absolute path"),
        ("syslog+smoke://h:1", "syslog sinks"),
        ("https://user:secret@collector/x", "token_file"),
    ],
)
def test_bad_sink_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_sink(url)
    assert "secret" not in str(caught.value)


def test_an_http_sink_is_named_without_its_path() -> None:
    """Some collectors carry a token in the URL path; the name is stored, shown and logged."""
    sink = parse_sink("https://collector.example.com:8443/hook/T0KEN-in-the-path")
    assert sink.name == "https://collector.example.com:8443"
    assert "T0KEN" not in sink.name


def test_a_worker_that_is_not_the_leader_delivers_nothing_until_it_leads(
    db: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "siem" / "audit.jsonl"
    url = f"file://{path}"
    worker = SinkWorker(
        sink_key(url),
        parse_sink(url),
        db,
        SystemClock(),
        batch_size=100,
        poll_seconds=0.05,
        max_backoff=1,
    )
    leads = threading.Event()
    worker.gate = leads.is_set
    worker._ensure_cursor()
    worker._thread.start()
    try:
        time.sleep(0.5)  # ten polls as a follower
        assert not path.exists() or path.read_text() == ""
        leads.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_lines(path)) < 2:
            time.sleep(0.05)
        assert [line["event"]["sequence"] for line in _lines(path)] == [1, 2]
    finally:
        worker.stop()


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.security
@pytest.mark.parametrize("scheme", ["https", "splunk+https"])
def test_a_failed_http_delivery_says_what_went_wrong_without_the_url_path_or_query(
    db: sessionmaker[Session], scheme: str
) -> None:
    """The error is stored and shown (`GET /api/v1/siem/sinks`) and logged: a collector's
    token in its URL's path or query must not be in it, nor in a chained exception."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens there once closed
    url = f"{scheme}://127.0.0.1:{closed}/services/collector/T0KEN-path?channel=C5ECRET"
    worker = SinkWorker(
        sink_key(url), parse_sink(url), db, SystemClock(), batch_size=100, poll_seconds=1,
        max_backoff=1,
    )  # fmt: skip
    worker._ensure_cursor()
    try:
        with pytest.raises(SinkError) as refused:
            worker.deliver_once()
    finally:
        worker.sink.close()
    assert str(refused.value) == f"{scheme}://127.0.0.1:{closed}: could not connect"
    assert refused.value.__cause__ is None
    assert "T0KEN" not in repr(refused.value.__context__)
