"""How long a stop waits between storing a service as `stopping` and stopping its container.

With the edge's direct routes (docs/edge.md), nginx proxies an awake service straight to the
port the engine published; once the container stops, the engine may give that port to another
container. So a stop first stores the service as `stopping` (the edge renders without its route
and reloads), waits the grace, and only then stops the container. The wait is needed only
while an edge that renders direct routes is attached (`edge.direct_routes: auto`: asked of the
edges' registrations at each stop, cluster/edges.py), or always (`true`), or never (`false`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from wakedock.config.sections import EdgeSettings

log = logging.getLogger("wakedock.services")
# While a grace is waited, whether it is still needed is asked again this often: an edge that
# stopped (its nginx exited, its registration released) no longer routes to anything.
RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class StopGrace:
    """The grace of a stop: `seconds`, waited when `needed()` says an edge may route to it."""

    seconds: float
    needed: Callable[[], bool]

    def wanted(self) -> bool:
        """Ask `needed`; when it cannot answer (the database away), wait: a stop that waits
        for nothing costs seconds, a route to a reused port sends a request to a stranger."""
        try:
            return self.needed()
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("could not tell whether an edge is attached; waiting the grace: %s", exc)
            return True

    def wait(self) -> None:
        """Wait the grace, if wanted; end early once no edge is attached any more (blocking:
        a stop runs in a worker thread)."""
        deadline = time.monotonic() + self.seconds
        while self.wanted():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, RECHECK_SECONDS))


def stop_grace(edge: EdgeSettings, edge_attached: Callable[[], bool]) -> StopGrace | None:
    """The stop grace the settings ask for: None without direct routes (a stop goes straight to
    the container, as without an edge), the edge's registrations deciding under `auto`."""
    if edge.direct_routes is False or edge.stop_grace_seconds <= 0:
        return None
    if edge.direct_routes is True:
        return StopGrace(edge.stop_grace_seconds, lambda: True)
    return StopGrace(edge.stop_grace_seconds, edge_attached)
