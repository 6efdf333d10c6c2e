"""ModSecurity's JSON audit log, read by WakeDock: every block becomes a `waf_blocked` event.

The edge writes one JSON document per line (SecAuditLogFormat JSON, Serial). Its parts are
A, H and Z only (no headers, no request body), and even so this module copies into the trail
only what says *what was refused and why*: the rule ids and their titles, the anomaly scores,
the client address, the host, the method and the path (truncated, without its query string).
Never the matched data, the query string or any body: the payload of an attack, or the data of
a false positive, stays out of WakeDock's trail and its SIEM copies.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.context import RequestContext

log = logging.getLogger("wakedock.edge")

# The CRS rules that refuse a request (inbound) or an answer (outbound) in anomaly mode.
INBOUND_EVALUATION = "949110"
OUTBOUND_EVALUATION = "959100"
_EVALUATIONS = (INBOUND_EVALUATION, OUTBOUND_EVALUATION)
_SCORE = re.compile(r"Total Score: (\d+)")
_HOST = re.compile(r"[a-z0-9.-]{1,253}|\[[0-9a-f:.]{2,45}\]")
_RULE_ID = re.compile(r"\d{1,9}")
MAX_PATH = 200
MAX_RULES = 20
MAX_TITLE = 120
# A line longer than this is not one of ours (ModSecurity's own entries are a few KiB).
MAX_LINE = 1024 * 1024


@dataclass(frozen=True)
class WafBlock:
    """One request (or answer) the edge refused, as much of it as the trail may keep."""

    client_ip: str | None
    host: str | None
    method: str
    path: str
    status: int
    rules: tuple[tuple[str, str], ...]  # (rule id, rule title), in the order they matched
    inbound_score: int | None
    outbound_score: int | None
    request_id: str | None

    def event(self) -> Event:
        details: dict[str, Any] = {
            "rule_ids": [rule_id for rule_id, _ in self.rules],
            "rules": [{"id": rule_id, "title": title} for rule_id, title in self.rules],
            "inbound_anomaly_score": self.inbound_score,
            "outbound_anomaly_score": self.outbound_score,
            "client_ip": self.client_ip,
            "host": self.host,
            "method": self.method,
            "path": self.path,
            "status": self.status,
        }
        return Event(EventType.WAF_BLOCKED, Outcome.DENIED, target=self.host, details=details)

    def context(self) -> RequestContext:
        return RequestContext(ip=self.client_ip, request_id=self.request_id, actor="system:edge")


def _address(value: object) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return None


def _path(uri: object) -> str:
    path = str(uri or "").split("?", 1)[0]
    return path if len(path) <= MAX_PATH else path[: MAX_PATH - 3] + "..."


def _method(value: object) -> str:
    method = str(value or "")
    return method if re.fullmatch(r"[A-Z]{1,16}", method) else "?"


def parse_block(line: str | bytes) -> WafBlock | None:
    """The block a log line records, or None: not JSON, or a logged transaction that was not
    refused by the CRS's anomaly evaluation (ModSecurity also logs other 4xx/5xx answers)."""
    try:
        document = json.loads(line)
        transaction = document["transaction"]
        messages = transaction.get("messages") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    rules: list[tuple[str, str]] = []
    scores: dict[str, int] = {}
    for message in messages:
        details = message.get("details") if isinstance(message, dict) else None
        if not isinstance(details, dict):
            continue
        rule_id = str(details.get("ruleId", ""))
        if not _RULE_ID.fullmatch(rule_id):
            continue
        title = str(message.get("message", ""))[:MAX_TITLE]
        rules.append((rule_id, title))
        found = _SCORE.search(title)
        if rule_id in _EVALUATIONS and found:
            scores[rule_id] = int(found.group(1))
    if not scores:
        return None
    request = transaction.get("request") or {}
    response = transaction.get("response") or {}
    unique_id = str(transaction.get("unique_id", ""))
    # The edge sets the transaction id to "<host> <request id>" (the log keeps no header).
    host, _, request_id = unique_id.partition(" ")
    return WafBlock(
        client_ip=_address(transaction.get("client_ip")),
        host=host if _HOST.fullmatch(host) else None,
        method=_method(request.get("method")),
        path=_path(request.get("uri")),
        status=int(response.get("http_code") or 0),
        rules=tuple(rules[:MAX_RULES]),
        inbound_score=scores.get(INBOUND_EVALUATION),
        outbound_score=scores.get(OUTBOUND_EVALUATION),
        request_id=request_id[:64] if re.fullmatch(r"[0-9a-f]{1,64}", request_id) else None,
    )


class LogFollower:
    """Complete new lines of a file that grows, like `tail -F`: a replaced file (rotated) or a
    truncated one (copytruncate, seen when the file is found shorter than what was read) is read
    again from its start, after the rest of the old one."""

    def __init__(self, path: Path, *, from_start: bool = False) -> None:
        self._path = path
        self._file: BinaryIO | None = None
        self._inode: int | None = None
        self._partial = b""
        self._open(at_end=not from_start)

    def _open(self, *, at_end: bool) -> None:
        try:
            handle = self._path.open("rb")
        except FileNotFoundError:
            return
        if at_end:
            handle.seek(0, os.SEEK_END)
        self._file = handle
        self._inode = os.fstat(handle.fileno()).st_ino
        self._partial = b""

    def _read(self) -> list[bytes]:
        if self._file is None:
            return []
        data = self._partial + self._file.read()
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > MAX_LINE:
            self._partial = b""  # not a log entry: drop it rather than grow without bound
        return [line for line in lines if line.strip()]

    def read_new(self) -> list[bytes]:
        """The lines completed since the last call."""
        lines = self._read()
        try:
            current = os.stat(self._path)
        except FileNotFoundError:
            return lines  # rotated away, not yet recreated: keep the old file until it is
        if self._file is None:
            self._open(at_end=False)
            return lines + self._read()
        if current.st_ino != self._inode or current.st_size < self._file.tell():
            self._file.close()
            self._open(at_end=False)
            lines += self._read()
        return lines

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


RecordEvent = Callable[[Event, RequestContext], None]


class WafLogIngest:
    """Follows the edge's audit log in a thread and records each block through `record`
    (`Auditor.record`: the audit table, hence /metrics, SIEM delivery and alerts)."""

    def __init__(self, path: Path, record: RecordEvent, *, interval: float = 0.5) -> None:
        self._follower = LogFollower(path)
        self._record = record
        self._interval = interval
        self._pending: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wakedock-waf-log", daemon=True)
        self.recorded = 0

    def start(self) -> None:
        self._thread.start()

    def drain(self) -> int:
        """Record every block written so far; how many."""
        self._pending += self._follower.read_new()
        count = 0
        while self._pending:  # a line leaves the queue only once recorded (or not a block)
            block = parse_block(self._pending[0])
            if block is not None:
                self._record(block.event(), block.context())
                count += 1
                self.recorded += 1
            self._pending.pop(0)
        return count

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.drain()
            except Exception:  # a database hiccup must not end the ingest: retry next round
                log.exception("could not record the edge's WAF blocks; retrying")

    def stop(self) -> None:
        """Stop following, after recording what nginx wrote before it stopped."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.drain()
        self._follower.close()
