"""How many connections the server holds at once, and which one goes when it is full.

Every accepted connection takes a slot from the moment it is accepted (TLS handshake included)
until it closes. A client address may hold at most `per_client` slots (an IPv6 client its /64;
trusted proxies are exempt, they carry many users). When all slots are taken, an idle connection
is closed to make room: one still in its TLS handshake, waiting for a request head, between
keep-alive requests or draining an unread body; the longest idle of the client holding the most
idle connections, so that a slowloris loses its own sockets first. Connections with a request in
progress are never closed for this; if every slot is busy, the newcomer is refused. As nginx does
when it runs out of connections, this keeps a server under a slowloris answering the clients
that send whole requests. Overload is logged at most once per interval.

The cap is kept below the process's open-file limit, so that accepting never fails with "Too many
open files". One limiter per process: the counts are per worker process.
"""

from __future__ import annotations

import ipaddress
import logging
import resource
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("wakedock.server")

# An IPv6 client usually owns a whole /64: it counts as one client.
_IPV6_CLIENT_PREFIX = 64
OVERLOAD_LOG_SECONDS = 10.0

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Connection(Protocol):
    """What the limiter needs of a connection: a way to close it at once."""

    def evict(self) -> None: ...


def client_key(address: str | None) -> str:
    """The unit a per-client limit counts: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "local"  # a Unix socket has no peer address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # dual-stack listener: an IPv4 client
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, _IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


@dataclass(frozen=True)
class _Slot:
    client: str
    counted: bool  # False for a trusted proxy: not held to the per-client limit


class ConnectionLimiter:
    def __init__(
        self,
        max_connections: int,
        per_client: int,
        exempt: Sequence[IpNetwork] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.per_client = per_client
        self._exempt = tuple(exempt)
        self._clock = clock
        self._open: dict[Connection, _Slot] = {}
        self._per_client: Counter[str] = Counter()
        # Each client's idle connections, longest idle first, and the clients by how many idle
        # connections they have: the victim is found without looking at every client.
        self._idle: dict[str, OrderedDict[Connection, None]] = {}
        self._by_idle_count: defaultdict[int, set[str]] = defaultdict(set)
        self._most_idle = 0
        self._refused = 0
        self._evicted = 0
        self._next_report = 0.0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, connection: Connection, address: str | None) -> bool:
        """Take a slot for a new connection (idle until its request head arrives); False: the
        caller closes it."""
        slot = _Slot(client_key(address), not self._is_exempt(address))
        if slot.counted and self._per_client[slot.client] >= self.per_client:
            self._report(refused=1)
            return False
        if len(self._open) >= self.max_connections:
            victim = self._victim()
            if victim is None:
                self._report(refused=1)
                return False
            self.release(victim)
            victim.evict()
            self._report(evicted=1)
        self._open[connection] = slot
        if slot.counted:
            self._per_client[slot.client] += 1
        self._set_idle(connection, slot.client)
        return True

    def idle(self, connection: Connection) -> None:
        """Waiting for the client (a head, the next request, the rest of a body): may be closed
        when a newcomer needs the slot. Called again, it keeps its place in the queue."""
        slot = self._open.get(connection)
        if slot is not None and connection not in self._idle.get(slot.client, ()):
            self._set_idle(connection, slot.client)

    def busy(self, connection: Connection) -> None:
        """A request is in progress: never closed to make room."""
        slot = self._open.get(connection)
        if slot is not None:
            self._unset_idle(connection, slot.client)

    def release(self, connection: Connection) -> None:
        """The connection is gone (safe to call more than once)."""
        slot = self._open.pop(connection, None)
        if slot is None:
            return
        self._unset_idle(connection, slot.client)
        if slot.counted:
            self._per_client[slot.client] -= 1
            if self._per_client[slot.client] <= 0:
                del self._per_client[slot.client]

    def _victim(self) -> Connection | None:
        """The longest-idle connection of the client with the most idle connections."""
        while self._most_idle > 0 and not self._by_idle_count[self._most_idle]:
            self._most_idle -= 1
        if self._most_idle == 0:
            return None
        client = next(iter(self._by_idle_count[self._most_idle]))
        return next(iter(self._idle[client]))

    def _set_idle(self, connection: Connection, client: str) -> None:
        queue = self._idle.setdefault(client, OrderedDict())
        self._by_idle_count[len(queue)].discard(client)
        queue[connection] = None
        self._by_idle_count[len(queue)].add(client)
        self._most_idle = max(self._most_idle, len(queue))

    def _unset_idle(self, connection: Connection, client: str) -> None:
        queue = self._idle.get(client)
        if queue is None or connection not in queue:
            return
        self._by_idle_count[len(queue)].discard(client)
        del queue[connection]
        if queue:
            self._by_idle_count[len(queue)].add(client)
        else:
            del self._idle[client]

    def _is_exempt(self, address: str | None) -> bool:
        if not self._exempt or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._exempt)

    def _report(self, *, refused: int = 0, evicted: int = 0) -> None:
        # One line per interval under a flood, not one per connection.
        self._refused += refused
        self._evicted += evicted
        now = self._clock()
        if now < self._next_report:
            return
        self._next_report = now + OVERLOAD_LOG_SECONDS
        log.warning(
            "connection limit reached: %d connections refused and %d idle ones closed since the "
            "last report (at most %d connections, %d per client)",
            self._refused,
            self._evicted,
            self.max_connections,
            self.per_client,
        )
        self._refused = self._evicted = 0


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # e.g. macOS caps it below the hard limit: keep the soft one
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(configured: int, open_files: int, reserved: int) -> int:
    """The connection cap: the configured one, lowered to fit under the open-file limit.

    Raises ValueError when the limit leaves too little room for connections at all."""
    room = open_files - reserved
    if room < 16:
        raise ValueError(
            f"the open-file limit ({open_files}) leaves no room for connections after "
            f"server.reserved_file_descriptors ({reserved}): raise `ulimit -n` or lower the reserve"
        )
    return min(configured, room)
