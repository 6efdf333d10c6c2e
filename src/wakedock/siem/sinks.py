"""SIEM sinks, configured by URL (S8.3). Each `send` delivers a batch or raises SinkError.

file:///var/log/wakedock/audit.jsonl            JSON lines, ECS field names
syslog+udp://siem.example.com:514               RFC 5424, one datagram per event
syslog+tcp://siem.example.com:601               RFC 5424, octet-counted (RFC 6587)
syslog+tls://siem.example.com:6514?ca=/ca.pem   RFC 5424 over TLS (RFC 5425), verified
https://collector.example.com/ingest            HTTP POST {"events": [...]}
splunk+https://splunk:8088/services/collector/event?token_file=/run/secrets/hec
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import httpx

from wakedock.audit.export import AuditRecord
from wakedock.secret_files import read_secret_file
from wakedock.siem.ecs import to_ecs

# RFC 5424 facility 13 ("log audit"); severity from the event's.
FACILITY = 13
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
# The RFC 5612 enterprise number reserved for documentation examples.
SD_ID = "wakedock@32473"
TIMEOUT = 10.0


class SinkError(Exception):
    """The batch was not delivered; the exporter keeps it and retries with backoff.

    Its text is stored, shown (`GET /api/v1/siem/sinks`, the console) and logged: it names the
    sink and what went wrong in words of its own, never an error's text that could quote the
    URL, whose path or query can be a credential (a Slack webhook's path, a collector's token).
    """


def http_failure(exc: httpx.HTTPError, timeout: float = TIMEOUT) -> str:
    """What went wrong with an HTTP delivery, in words that quote nothing of the request."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout:.0f} s"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    if isinstance(exc, httpx.TransportError):
        return "the connection failed"
    return "the request failed"


# A URL's authority is kept, its path and query dropped: they can hold a credential.
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*://)(?:[^\s/?#@]*@)?([^\s/?#]*)[^\s]*", re.I)


def safe_error(text: str | None) -> str | None:
    """A stored delivery error as shown: any URL cut to its scheme and host (errors stored by
    versions before the sinks chose their own words may quote one)."""
    return _URL.sub(r"\1\2", text) if text else text


class Sink(Protocol):
    # Shown in the API and logs: the URL without credentials or query.
    name: str

    def send(self, batch: Sequence[AuditRecord]) -> None: ...

    def close(self) -> None: ...


def _line(record: AuditRecord) -> str:
    return json.dumps(to_ecs(record), ensure_ascii=True, separators=(",", ":"), sort_keys=True)


class FileSink:
    def __init__(self, path: Path) -> None:
        self.name = f"file://{path}"
        self._path = path

    def send(self, batch: Sequence[AuditRecord]) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="ascii") as out:
                out.write("".join(_line(r) + "\n" for r in batch))
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise SinkError(f"{self.name}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        return None


def _sd_value(value: str) -> str:
    # RFC 5424 section 6.3.3: escape '"', '\' and ']' in PARAM-VALUE.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(record: AuditRecord, hostname: str) -> bytes:
    """One RFC 5424 message: header, structured data (seq and id) and the ECS JSON as MSG."""
    pri = FACILITY * 8 + SYSLOG_SEVERITY.get(record.severity, 6)
    at = datetime.fromisoformat(record.occurred_at.replace("Z", "+00:00")).astimezone(UTC)
    timestamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    msgid = record.type[:32] or "-"
    host = "".join(ch for ch in hostname if 33 <= ord(ch) <= 126)[:255] or "-"
    sd = (
        f'[{SD_ID} seq="{record.seq}" id="wakedock-{record.seq}" '
        f'severity="{_sd_value(record.severity)}" outcome="{_sd_value(record.outcome)}"]'
    )
    header = f"<{pri}>1 {timestamp} {host} wakedock {os.getpid()} {msgid} {sd} "
    # MSG in UTF-8 starts with the BOM (RFC 5424 section 6.4).
    return header.encode("ascii") + b"\xef\xbb\xbf" + _line(record).encode("utf-8")


class SyslogSink:
    def __init__(self, transport: str, host: str, port: int, ca_file: str | None) -> None:
        self.name = f"syslog+{transport}://{host}:{port}"
        self._transport = transport
        self._address = (host, port)
        self._hostname = socket.gethostname()
        self._tls: ssl.SSLContext | None = None
        if transport == "tls":
            # Verification is always on: a CA bundle option, never a "don't verify" switch.
            self._tls = ssl.create_default_context(cafile=ca_file)
            self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stream: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self._stream is None:
            raw = socket.create_connection(self._address, timeout=TIMEOUT)
            if self._tls is not None:
                raw = self._tls.wrap_socket(raw, server_hostname=self._address[0])
            self._stream = raw
        return self._stream

    def send(self, batch: Sequence[AuditRecord]) -> None:
        messages = [syslog_message(r, self._hostname) for r in batch]
        try:
            if self._transport == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    for message in messages:
                        udp.sendto(message, self._address)
                return
            stream = self._connect()
            # Octet counting (RFC 6587 / RFC 5425): "<length> <message>".
            stream.sendall(b"".join(str(len(m)).encode() + b" " + m for m in messages))
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise SinkError(f"{self.name}: {exc}") from exc

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            finally:
                self._stream = None


class HttpSink:
    def __init__(self, url: str, *, splunk: bool, token: str | None, ca_file: str | None) -> None:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        kind = "splunk+" if splunk else ""
        # No path: some collectors carry a token in it (the name is shown, stored and logged).
        self.name = f"{kind}{parts.scheme}://{parts.hostname}{port}"
        self._url = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self._splunk = splunk
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Splunk {token}" if splunk else f"Bearer {token}"
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file)
        self._client = httpx.Client(
            timeout=TIMEOUT, headers=headers, verify=verify, trust_env=False
        )

    def send(self, batch: Sequence[AuditRecord]) -> None:
        if self._splunk:
            # HEC accepts several event objects in one body.
            body = "".join(
                json.dumps({"event": to_ecs(r), "source": "wakedock", "sourcetype": "_json"})
                for r in batch
            )
        else:
            body = json.dumps({"events": [to_ecs(r) for r in batch]})
        try:
            reply = self._client.post(self._url, content=body)
        except httpx.HTTPError as exc:
            raise SinkError(f"{self.name}: {http_failure(exc)}") from None
        if reply.status_code >= 300:
            raise SinkError(f"{self.name}: HTTP {reply.status_code}")

    def close(self) -> None:
        self._client.close()


def parse_sink(url: str) -> Sink:
    """A sink from its URL; ValueError saying what is wrong (the URL's secrets never echoed)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    scheme = parts.scheme.lower()
    if scheme == "file":
        # file://relative/path would name host "relative": refused, not read as /path.
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError("file sinks need an absolute path: file:///var/log/wakedock.jsonl")
        return FileSink(Path(parts.path))
    if scheme.startswith("syslog+"):
        transport = scheme.removeprefix("syslog+")
        if transport not in ("udp", "tcp", "tls") or not parts.hostname:
            raise ValueError("syslog sinks are syslog+udp|tcp|tls://host:port")
        default_port = {"udp": 514, "tcp": 601, "tls": 6514}[transport]
        return SyslogSink(transport, parts.hostname, parts.port or default_port, query.get("ca"))
    if scheme in ("http", "https", "splunk+http", "splunk+https"):
        if not parts.hostname:
            raise ValueError("HTTP sinks need a host")
        if parts.username or parts.password:
            raise ValueError("put HTTP sink credentials in a token_file, not in the URL")
        token = None
        if "token_file" in query:
            # Same rules as every secret file: regular, non-empty, not world-readable.
            token = read_secret_file(Path(query["token_file"]), what="sink token_file")
        splunk = scheme.startswith("splunk+")
        real = url.split("+", 1)[1] if splunk else url
        return HttpSink(real, splunk=splunk, token=token, ca_file=query.get("ca"))
    raise ValueError(f"unknown sink scheme {parts.scheme!r} (file, syslog+udp|tcp|tls, http(s))")
