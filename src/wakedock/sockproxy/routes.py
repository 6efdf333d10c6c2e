"""Which Engine API calls pass the socket proxy: the ones WakeDock's runtimes make, no others.

A route names what the handler must do before forwarding (check a label, check a create body,
filter a list). Anything not matched here is refused: attach, exec, archive, build, pull, swarm
init and every other endpoint the engine has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# `/v1.41/containers/json` and `/containers/json` are the same call.
_VERSION_PREFIX = re.compile(r"^/v1\.[0-9]{1,3}(?=/)")
# Older API versions read a HostConfig sent with `start`, past the create check: refused.
MIN_API_MINOR = 24
# Docker ids and names: no slash, no dot-segments, nothing a path could escape with.
_REF = r"(?P<ref>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})"


class Action(StrEnum):
    OPEN = "open"  # no workload involved (ping, version, image inspect)
    CONTAINER = "container"  # the container in the path must carry WakeDock's labels
    SERVICE = "service"  # the Swarm service in the path must carry WakeDock's labels
    CREATE_CONTAINER = "create_container"  # the body must pass the launch policy
    CREATE_SERVICE = "create_service"
    UPDATE_SERVICE = "update_service"  # labelled service, and the new spec passes the policy
    LIST_CONTAINERS = "list_containers"  # only WakeDock's containers are answered
    LIST_SERVICES = "list_services"
    LIST_TASKS = "list_tasks"
    EVENTS = "events"  # the stream is forced to WakeDock's label filter
    NETWORK = "network"  # only the network `--network` names (docker.network), inspected


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    action: Action
    swarm_only: bool = False
    streams: bool = False  # may answer for as long as the client listens


def _route(method: str, path: str, action: Action, **flags: bool) -> Route:
    return Route(method, re.compile(f"^{path}$"), action, **flags)


ROUTES: tuple[Route, ...] = (
    _route("GET", "/_ping", Action.OPEN),
    _route("HEAD", "/_ping", Action.OPEN),
    _route("GET", "/version", Action.OPEN),
    # Image references hold slashes and colons: `/images/wakedock-test/busybox:1/json`.
    _route("GET", r"/images/(?P<ref>[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,600})/json", Action.OPEN),
    _route("GET", "/containers/json", Action.LIST_CONTAINERS),
    _route("POST", "/containers/create", Action.CREATE_CONTAINER),
    _route("GET", f"/containers/{_REF}/json", Action.CONTAINER),
    _route("POST", f"/containers/{_REF}/(?:start|stop|pause|unpause)", Action.CONTAINER),
    _route("DELETE", f"/containers/{_REF}", Action.CONTAINER),
    _route("GET", f"/containers/{_REF}/logs", Action.CONTAINER, streams=True),
    _route("GET", f"/containers/{_REF}/stats", Action.CONTAINER, streams=True),
    _route("GET", "/events", Action.EVENTS, streams=True),
    # The start-up check of docker.network (`--network`): that network only.
    _route("GET", f"/networks/{_REF}", Action.NETWORK),
    # The Swarm runtime (`--swarm`): its manager check, overlay networks, services and tasks.
    _route("GET", "/info", Action.OPEN, swarm_only=True),
    _route("GET", "/networks", Action.OPEN, swarm_only=True),
    _route("GET", "/services", Action.LIST_SERVICES, swarm_only=True),
    _route("POST", "/services/create", Action.CREATE_SERVICE, swarm_only=True),
    _route("GET", f"/services/{_REF}", Action.SERVICE, swarm_only=True),
    _route("POST", f"/services/{_REF}/update", Action.UPDATE_SERVICE, swarm_only=True),
    _route("DELETE", f"/services/{_REF}", Action.SERVICE, swarm_only=True),
    _route("GET", f"/services/{_REF}/logs", Action.SERVICE, swarm_only=True, streams=True),
    _route("GET", "/tasks", Action.LIST_TASKS, swarm_only=True),
)


@dataclass(frozen=True)
class Match:
    route: Route
    path: str  # without the version prefix
    ref: str | None  # the container or service named in the path


def unversioned(path: str) -> str:
    return _VERSION_PREFIX.sub("", path, count=1)


def match(method: str, path: str, *, swarm: bool) -> Match | None:
    """The route of `method path` (version prefix optional), or None when it is not allowed."""
    bare = unversioned(path)
    # No dot-segments or empty ones: the engine's router would clean them into another path.
    if any(segment in ("", ".", "..") for segment in bare.split("/")[1:]):
        return None
    version = _VERSION_PREFIX.match(path)
    if version is not None and int(version.group(0).split(".")[1]) < MIN_API_MINOR:
        return None
    for route in ROUTES:
        if route.method != method or (route.swarm_only and not swarm):
            continue
        found = route.pattern.fullmatch(bare)
        if found is not None:
            ref = found.groupdict().get("ref") if route.action is not Action.OPEN else None
            return Match(route, bare, ref)
    return None
