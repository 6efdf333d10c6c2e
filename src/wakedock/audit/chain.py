"""The keyed hash chain over audit events (S8.2).

Each event carries `seq` (1, 2, 3, ... with no gap), the previous event's hash and its own:
HMAC-SHA256(key, previous hash || canonical JSON of the event). Changing, deleting or reordering
any event breaks the chain at that event; deleting the newest ones is caught by the chain head
(`audit_chain_head`), which always holds the last seq and hash. Appends take the head row's lock
first, so concurrent writers (threads, processes, replicas) chain in one order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from wakedock.audit.turn import Turn
from wakedock.secret_files import load_or_create_key_file

GENESIS = "0" * 64
# The Session.info key of the AuditChain (set on the session factory by components.py).
CHAIN_INFO = "audit_chain"


@dataclass(frozen=True)
class ChainedFields:
    seq: int
    occurred_at: datetime | str
    type: str
    severity: str
    actor: str | None
    ip: str | None
    user_agent: str | None
    target: str | None
    outcome: str
    request_id: str | None
    details: str


def _timestamp(value: datetime | str) -> str:
    # Databases differ in how they return time zones and microseconds (raw SQLite rows even
    # return text): one canonical form, UTC to the microsecond.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.year < 1000:
        # strftime does not pad the year to four digits where isoformat does: keep its form.
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ"), at a third of the cost (hot path).
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


# Built once: json.dumps with non-default options builds a new encoder on every call.
_ENCODE = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def canonical(fields: ChainedFields, seq: int | None = None) -> bytes:
    """The bytes an event's hash covers; `seq` stands in for `fields.seq` when given."""
    return _with_seq(fields.seq if seq is None else seq, canonical_tail(fields))


def canonical_tail(fields: ChainedFields) -> bytes:
    """`canonical` without its seq: what an event's hash covers besides its place in the chain.

    An append computes it before its turn, so that only the seq and the HMAC are left to do
    while it holds the head (`AuditChain.link_tail`).
    """
    body: list[Any] = [
        _timestamp(fields.occurred_at),
        fields.type,
        fields.severity,
        fields.actor,
        fields.ip,
        fields.user_agent,
        fields.target,
        fields.outcome,
        fields.request_id,
        fields.details,
    ]
    # "[...]" without its "[": canonical is "[" + seq + "," + this.
    return _ENCODE(body).encode()[1:]


def _with_seq(seq: int, tail: bytes) -> bytes:
    return b"[%d,%b" % (seq, tail)


class AuditChain:
    """Computes event hashes with the chain key (kept outside the database).

    It also remembers the head this process last wrote, and holds the turn that appends in
    the caller's transaction take to move the head (audit/service.py): each starts from the
    head the previous one wrote, so it usually needs one compare-and-set and no read.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the audit chain key must be at least 32 bytes")
        self._key = hashlib.sha256(b"wakedock-audit-chain:" + key).digest()
        self._guard = threading.Lock()
        self._head: tuple[int, str] | None = None
        self.turn = Turn()

    def cached_head(self) -> tuple[int, str] | None:
        with self._guard:
            return self._head

    def remember(self, seq: int, digest: str) -> None:
        # Any stale value is safe: the compare-and-set on (seq, hash) then fails and re-reads.
        with self._guard:
            self._head = (seq, digest)

    def link(self, previous: str, fields: ChainedFields, seq: int | None = None) -> str:
        """This event's hash after `previous`; at `seq` instead of `fields.seq` when given."""
        return self.link_tail(previous, fields.seq if seq is None else seq, canonical_tail(fields))

    def link_tail(self, previous: str, seq: int, tail: bytes) -> str:
        """The hash of the event whose `canonical_tail` is `tail`, at `seq` after `previous`."""
        message = previous.encode() + _with_seq(seq, tail)
        return hmac.new(self._key, message, "sha256").hexdigest()

    def matches(self, previous: str, fields: ChainedFields, stored: str) -> bool:
        return hmac.compare_digest(self.link(previous, fields), stored)


def audit_chain_key(configured: SecretStr | None, data_dir: Path) -> bytes:
    """The key of the audit hash chain: configured, or generated once (0600)."""
    if configured is not None:
        return configured.get_secret_value().encode()
    return load_or_create_key_file(data_dir / "secrets" / "audit_chain_key")
