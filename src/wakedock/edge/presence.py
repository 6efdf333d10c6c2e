"""The edge's registration while `wakedock edge run` renders direct routes (cluster/edges.py).

`wakedock serve` waits the stop grace only while an edge is registered, so the edge renders
direct routes only while its registration is fresh: it registers before its first render, renews
in a thread of its own every HEARTBEAT_SECONDS, and counts itself registered for half the
registration's time to live after the start of its last successful renewal (the other half is a
margin for the two clocks and for a render under way). The order is what makes a stop safe
without a handshake: the server stores a service as `stopping` before it asks whether an edge
is attached, and the edge registers before it reads the services for a render; so either the
server sees the edge (and waits the grace), or the edge's render sees `stopping` (no route).
On stop, the registration is released once nginx has exited (its direct routes with it).
"""

from __future__ import annotations

import logging
import threading
import time

from wakedock.cluster.edges import EDGE_TTL_SECONDS, HEARTBEAT_SECONDS, EdgeRegistry

log = logging.getLogger("wakedock.edge")


class EdgePresence:
    """One edge's registration, renewed in the background between `start` and `stop`."""

    def __init__(
        self,
        registry: EdgeRegistry,
        holder: str,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        ttl_seconds: float = EDGE_TTL_SECONDS,
    ) -> None:
        self.holder = holder
        self._registry = registry
        self._heartbeat = heartbeat_seconds
        self._ttl = ttl_seconds
        self._fresh_until = float("-inf")  # monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def fresh(self) -> bool:
        """The server surely counts this edge as attached: direct routes may be rendered."""
        return time.monotonic() < self._fresh_until

    def renew(self) -> bool:
        """Register or renew once; False (and not fresh once the last one lapses) on failure."""
        started = time.monotonic()
        try:
            self._registry.register(self.holder, self._ttl)
        except Exception as exc:  # noqa: BLE001 - the database away: the next beat tries again
            if not self._failing:
                log.warning("edge: could not renew its registration (direct routes lapse): %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("edge: registered again")
        self._failing = False
        self._fresh_until = started + self._ttl / 2
        return True

    def start(self) -> None:
        """Register now (before the first render), then renew in a daemon thread."""
        try:
            self._registry.prune()
        except Exception as exc:  # noqa: BLE001 - housekeeping only
            log.warning("edge: could not delete expired registrations: %s", exc)
        self.renew()
        self._thread = threading.Thread(target=self._run, name="edge-presence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and unregister (call it once nginx has exited)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._fresh_until = float("-inf")
        try:
            self._registry.release(self.holder)
        except Exception as exc:  # noqa: BLE001 - it expires on its own
            log.warning("edge: could not release its registration: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self._heartbeat):
            self.renew()
