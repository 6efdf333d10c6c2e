"""The edge's direct traffic, as the idle reaper sees it: one datagram per request, from nginx.

With `edge.direct_routes`, nginx proxies an awake service itself; WakeDock would never see that
traffic and would stop the service after its idle timeout. nginx therefore writes one access
log line per direct request (`access_log syslog:server=unix:...`, format: the host) to a unix
datagram socket in the data directory, which `wakedock serve` listens on while it runs. Lines
are gathered and handled FLUSH_SECONDS after the first one of a batch: each host seen touches
its service's activity once, with the number of its lines (the service page's requests per
minute). A host that names no service is ignored; so is anything that is
not a line of the format. Without an edge nothing arrives and the listener costs nothing but
its socket: no timer runs while no line waits (it is on by default, `edge.direct_routes: auto`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import pwd
import socket
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.directory import normalise_host
from wakedock.services.snapshots import ServiceView

log = logging.getLogger("wakedock.proxy")

SOCKET_NAME = "edge-activity.sock"
# Started as root, nginx's workers run as this user (nginx's own default; edge/render.py).
EDGE_WORKER_USER = "nobody"
# nginx's syslog tag for these lines (`tag=`), which precedes the host in each datagram.
ACTIVITY_TAG = "wakedock_edge"
FLUSH_SECONDS = 0.5
# A datagram longer than this is not one of nginx's lines (a host is at most 253 characters).
_MAX_DATAGRAM = 2048


def activity_socket(data_dir: Path) -> Path:
    """Where `wakedock serve` listens and the edge writes (both read the same data_dir): in the
    data directory; as root, in a directory of its own under the system's temporary directory
    (named after the data directory), since nginx's workers then run as EDGE_WORKER_USER, who
    may not traverse the data directory."""
    if os.geteuid() != 0:
        return data_dir / SOCKET_NAME
    digest = hashlib.sha256(str(data_dir.absolute()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"wakedock-activity-{digest}" / SOCKET_NAME


def _worker_gid() -> int | None:
    """As root: the group nginx's workers run in (EDGE_WORKER_USER's own), else None."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(EDGE_WORKER_USER).pw_gid


def parse_host(datagram: bytes) -> str | None:
    """The host of one nginx syslog line (`<PRI>TIMESTAMP TAG: host`, RFC 3164 without the
    hostname), normalised; None for anything else."""
    if len(datagram) > _MAX_DATAGRAM:
        return None
    marker = f" {ACTIVITY_TAG}: ".encode()
    _, found, host = datagram.partition(marker)
    if not found:
        return None
    return normalise_host(host.strip().decode("ascii", "replace"))


class EdgeActivity(asyncio.DatagramProtocol):
    """Listens on the activity socket; touches the tracker of each host's service."""

    def __init__(
        self,
        path: Path,
        lookup: Callable[[str], ServiceView | None],
        activity: ActivityTracker,
        *,
        adopt: Callable[[ServiceView], None] | None = None,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._path = path
        self._lookup = lookup
        self._activity = activity
        # A running service WakeDock did not wake itself (the API's start, or running before
        # this server started) is taken into the idle reaper's care by its first direct request.
        self._adopt = adopt
        self._flush_seconds = flush_seconds
        self._hosts: Counter[str] = Counter()
        self._transport: asyncio.DatagramTransport | None = None
        # The flush of the lines gathered since the first of this batch arrived; None when
        # no line waits.
        self._flushing: asyncio.TimerHandle | None = None
        self.touched = 0

    async def start(self) -> None:
        """Bind the socket (replacing a stale one: a previous server's) and start flushing."""
        gid = _worker_gid()
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if gid is not None:  # root: the workers' group may reach the socket, and only it
            os.chown(self._path.parent, 0, gid)
            # Traverse only, and only for one group.
            os.chmod(self._path.parent, 0o710)  # noqa: S103  # nosec B103
        self._path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # 0600 from the start (umask): nginx's workers run as this user. As root, 0660 and the
        # workers' group.
        previous = os.umask(0o177)
        try:
            sock.bind(str(self._path))
        finally:
            os.umask(previous)
        if gid is not None:
            os.chown(self._path, 0, gid)
            # nginx's workers' group writes its lines; nobody else (0660, root's file).
            os.chmod(self._path, 0o660)  # nosec B103
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self._transport = transport

    async def stop(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        if self._transport is not None:
            self._transport.close()
        self.flush()
        self._path.unlink(missing_ok=True)
        if _worker_gid() is not None:  # root: the directory made for the socket alone
            with contextlib.suppress(OSError):  # not empty: another server's socket
                self._path.parent.rmdir()

    def datagram_received(self, data: bytes, addr: object) -> None:
        host = parse_host(data)
        if host is None:
            return
        self._hosts[host] += 1
        if self._flushing is None:  # the first line of a batch: flush it in a moment
            loop = asyncio.get_running_loop()
            self._flushing = loop.call_later(self._flush_seconds, self._flush_batch)

    def flush(self) -> None:
        """Touch the service of each host seen since the last flush, with its request count."""
        hosts, self._hosts = self._hosts, Counter()
        for host, requests in hosts.items():
            view = self._lookup(host)
            if view is not None:
                self._activity.touch(view.name, requests)
                self.touched += 1
                if self._adopt is not None:
                    self._adopt(view)

    def _flush_batch(self) -> None:
        self._flushing = None
        try:
            self.flush()
        except Exception:
            log.exception("could not record the edge's activity")
