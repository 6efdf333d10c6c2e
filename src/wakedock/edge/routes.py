"""Which services the edge proxies directly: the running ones, once their upstream is ready.

A service is routed straight to its published port (`ServiceManager.endpoint`, 127.0.0.1 and
a port the engine chose at this start) when the services table says `running` and its readiness
probe, asked from here, passed once since that start. Until then, and as soon as the table says
anything else, its host goes to WakeDock, which wakes it or holds the request. The endpoint and
the probe's success are kept per start of the container (its reference and start time), and the
endpoint is looked up again every ENDPOINT_SECONDS all the same (a container the engine restarted
by its restart policy gets a new port).

An endpoint that is a host name (a container's name on `docker.network`, a Swarm service's
name) gets no direct route: nginx needs an IP literal there, or a resolver of that network.
Such a service is left to WakeDock, which resolves the name itself; it is not `waiting`
either, since no render would ever route it.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from wakedock.clock import Clock
from wakedock.proxy.readiness import upstream_port
from wakedock.runtime.base import ContainerStatus, Endpoint, Health
from wakedock.services.snapshots import ServiceView
from wakedock.services.spec import HttpProbe, TcpProbe

log = logging.getLogger("wakedock.edge")

ENDPOINT_SECONDS = 30.0
# One probe of a service not yet routed costs at most this long (the render waits for it).
PROBE_TIMEOUT_SECONDS = 1.0
RUNNING = "running"


@dataclass(frozen=True)
class DirectRoute:
    """An awake service's upstream, as nginx reaches it."""

    host: str
    port: int

    @property
    def address(self) -> str:
        """`host:port` as nginx writes it (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass
class _Known:
    endpoint: Endpoint
    looked_up: float
    ready: bool = False
    # An IP literal: nginx can be given it (a host name leaves the service to WakeDock).
    routable: bool = True


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class DirectRoutes:
    """The direct routes of the running services (see the module); call it at each render."""

    def __init__(
        self,
        endpoint: Callable[[ServiceView, int], Endpoint],
        engine_status: Callable[[ServiceView], ContainerStatus],
        clock: Clock,
    ) -> None:
        self._endpoint = endpoint
        self._engine_status = engine_status
        self._clock = clock
        self._known: dict[tuple[str, str, datetime | None], _Known] = {}
        self._waiting: frozenset[str] = frozenset()

    @property
    def waiting(self) -> frozenset[str]:
        """Running services not routed at the last call (probe not passed yet, endpoint not
        found): nothing in the services table will change when they become ready, so whoever
        renders on the table's change marker must render again while this is not empty."""
        return self._waiting

    def __call__(self, views: Iterable[ServiceView]) -> dict[str, DirectRoute]:
        routes: dict[str, DirectRoute] = {}
        waiting: set[str] = set()
        seen: set[tuple[str, str, datetime | None]] = set()
        now = self._clock.monotonic()
        for view in views:
            port = upstream_port(view.spec)
            if view.state != RUNNING or view.container_ref is None or port is None:
                continue
            key = (view.name, view.container_ref, view.last_started_at)
            seen.add(key)
            try:
                known = self._known.get(key)
                if known is None or now - known.looked_up >= ENDPOINT_SECONDS:
                    found = self._endpoint(view, port)
                    routable = _is_address(found.host)
                    if routable and not ipaddress.ip_address(found.host).is_loopback:
                        raise ValueError(f"{found.host} is not a loopback address")
                    if known is None or known.endpoint != found:
                        known = _Known(found, now, routable=routable)
                    known.looked_up = now
                    self._known[key] = known
                if not known.routable:
                    continue
                if not known.ready:
                    known.ready = self._ready(view, known.endpoint)
            except Exception as exc:  # noqa: BLE001 - no route: WakeDock serves the host
                log.info("no direct route for %s: %s", view.name, exc)
                waiting.add(view.name)
                continue
            if known.ready:
                routes[view.name] = DirectRoute(known.endpoint.host, known.endpoint.port)
            else:
                waiting.add(view.name)
        self._known = {key: known for key, known in self._known.items() if key in seen}
        self._waiting = frozenset(waiting)
        return routes

    def _ready(self, view: ServiceView, endpoint: Endpoint) -> bool:
        """The spec's readiness probe, once, against the published port (as WakeDock's wake
        asks it); a Docker healthcheck is read from the engine."""
        probe = view.spec.readiness
        timeout = min(float(probe.timeout_s), PROBE_TIMEOUT_SECONDS)
        if isinstance(probe, HttpProbe):
            connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
            try:
                connection.request("GET", probe.path, headers={"User-Agent": "wakedock-edge"})
                return 200 <= connection.getresponse().status < 400
            except (OSError, http.client.HTTPException):
                return False
            finally:
                connection.close()
        if isinstance(probe, TcpProbe):
            try:
                with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
                    return True
            except OSError:
                return False
        return self._engine_status(view).health == Health.HEALTHY
