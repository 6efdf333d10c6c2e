"""Which service a Host header names: `<name>.<base_domain>`, or one of a service's own hosts.

The map lives in memory and a lookup only reads it: no request ever waits for the database to
find its service. The map follows the database in two ways:

- a change made through this process's ServiceManager (the API, the proxy's own wakes and idle
  stops) patches it at once, in the thread that made the change;
- one background task (`run`, started by the app's lifespan) reads a cheap change marker of the
  services table every REFRESH_SECONDS and reloads the map only when the marker moved (a change
  by the CLI or by another worker), and in any case every FULL_RELOAD_SECONDS (a change no
  marker column shows, such as a container the reconciler adopted).

A reload builds the new map aside and swaps it in: lookups meanwhile see the previous one. A
failed reload keeps the previous map, is logged once, and is retried at the next poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from dataclasses import fields
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from wakedock.clock import Clock
from wakedock.db import transaction
from wakedock.runtime.base import State
from wakedock.services.models import Service
from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import ServiceView
from wakedock.services.spec import ServiceSpec

log = logging.getLogger(__name__)

# A service defined by another process (the CLI, another worker) is routable within this delay.
REFRESH_SECONDS = 1.0
# The whole map is read again at least this often, whatever the change marker says.
FULL_RELOAD_SECONDS = 30.0

# Moves with every create and delete (count), update (updated_at), start and stop (the start and
# stop times, set with the container reference): one aggregate row instead of every service.
_MARKER = select(
    func.count(Service.id),
    func.max(Service.updated_at),
    func.max(Service.last_started_at),
    func.max(Service.last_stopped_at),
)
# A ServiceView's fields are the row's columns: plain tuples, no ORM objects to build.
_ROWS = select(*(getattr(Service, field.name) for field in fields(ServiceView)))

_NAME = re.compile(r"^[a-z0-9.-]{1,253}$")
_PORT = re.compile(r"^[0-9]{1,5}$")


def normalise_host(raw: str | None) -> str | None:
    """The host of a Host header: lower-case, without port, brackets or a trailing dot.

    None when absent or not strictly `name[:port]` / `[ipv6][:port]`: a header such as
    `app.localhost:443@evil.example` routes nowhere rather than being guessed at.
    """
    if not raw or len(raw) > 300:
        return None
    host = raw.lower()
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :] if end > 0 else "?"
        if end <= 0 or (rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:]))):
            return None
        address = host[1:end]
        return address if re.fullmatch(r"[0-9a-f:.]+", address) else None
    name, _, port = host.partition(":")
    if port and not _PORT.fullmatch(port):
        return None
    name = name.rstrip(".")
    return name if _NAME.fullmatch(name) else None


class ServiceDirectory:
    """A host-name map of the services, kept current in the background (see the module)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        services: ServiceManager,
        base_domain: str,
        clock: Clock,
        *,
        interval: float = REFRESH_SECONDS,
        full_every: float = FULL_RELOAD_SECONDS,
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._suffix = "." + base_domain
        self._interval = interval
        self._full_every = full_every
        self._views: dict[str, ServiceView] = {}
        self._by_host: dict[str, ServiceView] = {}
        # Parsed specs by their stored JSON: a reload parses only the specs that changed.
        self._specs: dict[str, ServiceSpec] = {}
        self._marker: tuple[Any, ...] | None = None
        self._full_at = float("-inf")
        self._failure: Exception | None = None
        # Guards the map against a patch and a reload's swap crossing; held for microseconds.
        self._guard = threading.Lock()
        # Changes patched in while a reload runs: applied again on top of what it read.
        self._patched: dict[str, ServiceView | None] = {}
        self._reloading: asyncio.Future[bool] | None = None
        services.on_change(self.changed)

    # -- the request path: reads only -----------------------------------------------------

    def lookup(self, host: str) -> ServiceView | None:
        return self._by_host.get(host)

    def running(self) -> list[str]:
        """The services the map knows as running."""
        return [n for n, v in self._views.items() if v.state == State.RUNNING.value]

    def named(self, name: str) -> ServiceView | None:
        """The service called `name` as the map knows it now."""
        return self._views.get(name)

    def knows(self, host: str) -> bool:
        return host in self._by_host

    @property
    def failure(self) -> Exception | None:
        """The error of the latest reload; None once one succeeds. While the database cannot
        be read, a host missing from the map may name a service the map could not learn of."""
        return self._failure

    # -- keeping the map current ----------------------------------------------------------

    def changed(self, name: str, view: ServiceView | None) -> None:
        """A change committed through this process's ServiceManager (view None: removed).

        Patched in at once; the next poll reads the database again all the same, which then
        holds the truth should two changes of one service have been told out of order."""
        with self._guard:
            self._patched[name] = view
            views = dict(self._views)
            _apply(views, name, view)
            self._install(views)
            self._marker = None

    async def load(self) -> None:
        """The first load, before the first request is served. A database that does not answer
        yet does not keep the server from starting: `run` retries, and visitors get the outage
        answer (503) meanwhile."""
        try:
            await self.refresh(full=True)
        except Exception as exc:  # noqa: BLE001 - logged; the poller retries
            _log_failure("could not load the service host map", exc, self._interval)

    async def refresh(self, *, full: bool = False) -> bool:
        """Reload the map if the change marker moved (always when `full`); True if it did.

        Single flight: a call while a reload runs waits for that one instead of starting
        another. Raises what the reload raised (the previous map is then kept)."""
        running = self._reloading
        if (
            running is None
            or running.done()
            or running.get_loop() is not asyncio.get_running_loop()
        ):
            running = asyncio.ensure_future(run_in_threadpool(self._reload, full))
            self._reloading = running
        # A caller that gives up (cancelled) does not cancel the reload others wait for.
        return await asyncio.shield(running)

    async def run(self) -> None:
        """Poll the database until cancelled (the app's lifespan starts and stops this)."""
        failing = False
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - logged once; the map is kept, retried
                if not failing:
                    _log_failure("could not refresh the service host map", exc, self._interval)
                failing = True
                continue
            if failing:
                log.info("the service host map is refreshed again")
                failing = False

    def _reload(self, full: bool) -> bool:
        """Read the services and swap the new map in (blocking: runs in a worker thread)."""
        with self._guard:
            self._patched = {}
        now = self._clock.monotonic()
        full = full or now - self._full_at >= self._full_every
        try:
            with transaction(self._factory) as db:
                marker = tuple(db.execute(_MARKER).one())
                if not full and marker == self._marker:
                    self._failure = None
                    return False
                rows = db.execute(_ROWS).all()
            specs: dict[str, ServiceSpec] = {}
            views: dict[str, ServiceView] = {}
            for row in rows:
                columns = row._asdict()
                text = columns["spec"]
                spec = specs.get(text) or self._specs.get(text) or _parsed(text)
                specs[text] = spec
                views[row.name] = ServiceView(**{**columns, "spec": spec})
        except Exception as exc:
            self._failure = exc
            raise
        with self._guard:
            for name, view in self._patched.items():
                _apply(views, name, view)
            self._install(views)
            self._specs = specs
            # A change told while reading may or may not be in what was read: read again.
            self._marker = None if self._patched else marker
            if full:
                self._full_at = now
            self._failure = None
        return True

    def _install(self, views: dict[str, ServiceView]) -> None:
        """Swap in the map of `views` (guard held). By name order: a host two services claim
        goes to the first, and `<name>.<base_domain>` always to its service."""
        by_host: dict[str, ServiceView] = {}
        for name in sorted(views):
            view = views[name]
            by_host[name + self._suffix] = view
            for host in view.spec.hosts:
                by_host.setdefault(host, view)
        self._views = views
        self._by_host = by_host


def _log_failure(what: str, exc: Exception, interval: float) -> None:
    """Once per failing stretch. A database error is logged by the driver's own message, never
    SQLAlchemy's (which quotes the statement), and without a trace (web/errors.py logs the
    outage itself); anything else with its trace."""
    cause = getattr(exc, "orig", None) or exc
    log.warning(
        "%s (keeping the previous one, retrying every %.1f s): %s",
        what,
        interval,
        cause,
        exc_info=not isinstance(exc, DBAPIError),
    )


def _apply(views: dict[str, ServiceView], name: str, view: ServiceView | None) -> None:
    if view is None:
        views.pop(name, None)
    else:
        views[name] = view


def _parsed(text: str) -> ServiceSpec:
    return ServiceSpec.model_validate(json.loads(text))
