"""The keyed hash chains over audit events (S8.2).

Every event has a `seq` (1, 2, 3, ... with no gap): the order in which events were committed,
the order every reader follows. Events are chained on several chains (the `chain` column;
`audit_chains` holds each chain's last hash), so that appends on different chains do not wait
for one another (docs/audit.md, "Several chains, one order"). An event's hash is
HMAC-SHA256(key, previous hash || canonical JSON), where the previous hash is that of the event
before it on its own chain and the canonical JSON covers its chain, the seq of that previous
event, and every field of its own: changing, deleting or reordering any event breaks the chain
at that event or at the next one on its chain, and each chain's last hash catches the newest
ones deleted. `audit_chain_head` holds the last seq and hash of all (its lock orders the seqs);
the row of the chain whose event is the newest of all may say so instead of repeating them
(`ORDER_HEAD`).

Chain 0 holds the trail written before there were several chains: there an event's hash covers
its own seq instead of its predecessor's (`canonical`), as it always did.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from wakedock.audit.turn import Turn
from wakedock.secret_files import load_or_create_key_file

GENESIS = "0" * 64
# The chains events are appended to (1..CHAINS_MAX, rows made by the migration); 0 is the trail
# from before there were several.
CHAINS_MAX = 8
LEGACY_CHAIN = 0
# SQLite: the message of the trigger that refused an event whose chain had moved (migration
# 0010's; migration 0011 dropped the triggers).
SQLITE_MOVED = "wakedock: the audit chain moved"
# In a chain's row, in place of its last hash: the chain's newest event is the order's newest,
# whose hash and seq are the order's row's (`audit_chain_head`). SQLite writes one head row per
# event so (docs/audit.md, "SQLite: one head row"); the chain's row then changes only when
# another chain's event comes after it.
ORDER_HEAD = "order"
# PostgreSQL: events are appended on this many chains, so that appends do not wait for one
# another's round trips (docs/benchmarks.md, "Several chains, one order"). SQLite has one writer
# at a time: one chain.
POSTGRESQL_CHAINS = 8
# A chain a process has not appended to in this many of its appends is its next append's, if
# free (`AuditChain.take_lane`).
OVERDUE = 4 * CHAINS_MAX
# An event's anchor when it was appended in the same batch as the event before it on its chain,
# right after it (its seq is then that event's plus one); else its anchor is that event's seq.
IN_BATCH = -1
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


def _on_chain(chain: int, previous_seq: int, tail: bytes) -> bytes:
    # ["v2", chain, the previous event's seq, ...fields]: the first element, a string where
    # chain 0's is a number, keeps the two forms apart.
    return b'["v2",%d,%d,%b' % (chain, previous_seq, tail)


class Lane:
    """One chain as this process appends to it: its turn, and the head (hash, seq) this process
    last wrote there (None: not known, read it under its lock)."""

    __slots__ = ("chain", "head", "taken", "turn")

    def __init__(self, chain: int) -> None:
        self.chain = chain
        self.turn = Turn()
        self.head: tuple[str, int] | None = None
        # The number of this process's takes (`AuditChain.take_lane`) when one last took it.
        self.taken = 0


def _last_taken(lane: Lane) -> int:
    return lane.taken


def _taken(lane: Lane, takes: int) -> Lane:
    # Only the holder of a lane's turn writes its `taken`: no other lock needed.
    if takes > lane.taken:
        lane.taken = takes
    return lane


def start_for(pid: int, chains: int) -> int:
    """The index of the lane a process first tries: with eight chains, processes whose pids
    follow one another (workers started one after the other) start 5 chains apart (3 the
    other way round), so that each keeps mostly to chains the other does not use."""
    return (pid * 5) % chains


def chains_for(dialect: str) -> int:
    """How many chains a database of this dialect (SQLAlchemy's name) appends to."""
    return POSTGRESQL_CHAINS if dialect == "postgresql" else 1


class AuditChain:
    """Computes event hashes with the chain key (kept outside the database).

    It also holds this process's lanes (`Lane`): the chains it appends to, each with its turn
    and the head this process last wrote on it, so that an append usually needs one
    compare-and-set and no read (audit/append.py, audit/at_commit.py).
    """

    def __init__(self, key: bytes, chains: int = 1) -> None:
        if len(key) < 32:
            raise ValueError("the audit chain key must be at least 32 bytes")
        if not 1 <= chains <= CHAINS_MAX:
            raise ValueError(f"the audit trail has 1 to {CHAINS_MAX} chains, not {chains}")
        self._key = hashlib.sha256(b"wakedock-audit-chain:" + key).digest()
        self._guard = threading.Lock()
        self.lanes = [Lane(chain) for chain in range(1, chains + 1)]
        self._start = start_for(os.getpid(), chains)
        self._takes = 0

    def take_lane(self, timeout: float) -> Lane | None:
        """A lane whose turn is now the caller's (release it with `lane.turn.release()`), None
        if none was had in `timeout`: the free lane this process has taken least recently if it
        has not taken it in its last `OVERDUE` takes, else the first free one from this
        process's own first chain (`start_for`), else that one once free.

        Each process keeps to its first chains, so that processes rarely append to one chain
        (an append whose chain another process moved fails its compare-and-set and reads the
        chain under its lock); and each chain whose turn is free is taken again within about
        `OVERDUE` takes of each process (one overdue chain per take; a lane held long by one
        caller does not hold the others back), so that no chain's newest event stays old while
        events are recorded (its place in the order is covered only by the next event on its
        chain: docs/audit.md, "Several chains, one order"). A take is one append, one
        transaction's appends or one batch of them."""
        lanes = self.lanes
        with self._guard:
            self._takes += 1
            takes = self._takes
            overdue = [lane for lane in lanes if takes - lane.taken > OVERDUE]
        overdue.sort(key=_last_taken)
        for lane in overdue:
            if lane.turn.acquire(blocking=False):
                return _taken(lane, takes)
        count = len(lanes)
        for step in range(count):
            lane = lanes[(self._start + step) % count]
            if lane.turn.acquire(blocking=False):
                return _taken(lane, takes)
        lane = lanes[self._start]
        return _taken(lane, takes) if lane.turn.acquire(timeout=timeout) else None

    def cached_head(self, lane: Lane) -> tuple[str, int] | None:
        with self._guard:
            return lane.head

    def remember(self, lane: Lane, digest: str | None, seq: int = 0) -> None:
        """The head this process wrote on `lane` (None: forget it). Any stale value is safe:
        the compare-and-set from it then fails, and the head is read under its lock."""
        with self._guard:
            lane.head = None if digest is None else (digest, seq)

    def link(self, previous: str, fields: ChainedFields, seq: int | None = None) -> str:
        """Chain 0: this event's hash after `previous`; at `seq` instead of `fields.seq`."""
        return self.link_tail(previous, fields.seq if seq is None else seq, canonical_tail(fields))

    def link_tail(self, previous: str, seq: int, tail: bytes) -> str:
        """Chain 0: the hash of the event whose `canonical_tail` is `tail`, at `seq`."""
        message = previous.encode() + _with_seq(seq, tail)
        return hmac.new(self._key, message, "sha256").hexdigest()

    def link_on(self, chain: int, previous: str, previous_seq: int, tail: bytes) -> str:
        """The hash of the event whose `canonical_tail` is `tail`, on `chain` after the event
        whose hash and seq are `previous` and `previous_seq` (GENESIS and 0: the first)."""
        message = previous.encode() + _on_chain(chain, previous_seq, tail)
        return hmac.new(self._key, message, "sha256").hexdigest()

    def digest_of(self, chain: int, previous: str, previous_seq: int, fields: ChainedFields) -> str:
        """What the hash of `fields` (at `fields.seq`) on `chain` must be."""
        if chain == LEGACY_CHAIN:
            return self.link(previous, fields)
        return self.link_on(chain, previous, previous_seq, canonical_tail(fields))

    def matches(
        self, chain: int, previous: str, previous_seq: int, fields: ChainedFields, stored: str
    ) -> bool:
        return hmac.compare_digest(self.digest_of(chain, previous, previous_seq, fields), stored)


def audit_chain_key(configured: SecretStr | None, data_dir: Path) -> bytes:
    """The key of the audit hash chain: configured, or generated once (0600)."""
    if configured is not None:
        return configured.get_secret_value().encode()
    return load_or_create_key_file(data_dir / "secrets" / "audit_chain_key")
