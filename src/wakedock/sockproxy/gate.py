"""What the proxy does with an allowed route: check labels and create bodies, filter lists.

`Gate.decide` answers with a `Forward` (relay this request to the engine as it is, or with the
path pinned to the id the labels were checked on), an `Answered` (a list already filtered to
WakeDock's workloads, or the engine's own "not found"), or raises `Refused`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from wakedock.runtime.labels import MANAGED_LABEL, OPT_IN_LABEL, is_managed, is_opted_in
from wakedock.services.policy import PolicySettings
from wakedock.sockproxy.body import UnreadableBody, parse_body
from wakedock.sockproxy.create_check import container_create_problems
from wakedock.sockproxy.engine import Answer, Engine
from wakedock.sockproxy.routes import Action, Match
from wakedock.sockproxy.service_check import (
    network_refs,
    scale_only_problems,
    service_problems,
)

SWARM_SERVICE_LABEL = "com.docker.swarm.service.id"


class Refused(Exception):
    """The request is not one WakeDock makes; `reason` never repeats a value from it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query as the client sent them
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class Forward:
    request: Request


@dataclass(frozen=True)
class Answered:
    answer: Answer


@dataclass(frozen=True)
class FilteredEvents:
    """Relay the engine's Swarm service events, each judged by a `ServiceEvents` filter: a
    service event carries no labels, so the engine cannot filter them by WakeDock's."""

    request: Request


Decision = Forward | Answered | FilteredEvents


def _json(body: bytes) -> Any:
    try:
        return parse_body(body)
    except UnreadableBody as exc:
        raise Refused(f"body: {exc}") from None


def _labels(item: Any, *path: str) -> Mapping[str, str]:
    for key in path:
        item = item.get(key) if isinstance(item, Mapping) else None
    return item if isinstance(item, Mapping) else {}


def _filtered(answer: Answer, items: list[Any]) -> Answered:
    return Answered(replace(answer, body=json.dumps(items).encode()))


class Gate:
    def __init__(
        self, engine: Engine, *, installation: str, policy: PolicySettings, swarm: bool
    ) -> None:
        self._engine = engine
        self._installation = installation
        self._policy = policy
        self._swarm = swarm

    def _managed(self, labels: Mapping[str, str]) -> bool:
        return is_managed(labels, self._installation)

    async def decide(self, found: Match, request: Request) -> Decision:
        action = found.route.action
        if action is Action.OPEN:
            return Forward(request)
        if action is Action.CONTAINER or action is Action.SERVICE:
            return await self._pinned(found, request)
        if action is Action.CREATE_CONTAINER:
            name = parse_qs(urlsplit(request.target).query).get("name", [None])[0]
            problems = container_create_problems(
                _json(request.body), name, self._installation, self._policy
            )
            return self._checked(problems, request)
        if action is Action.CREATE_SERVICE:
            return self._checked(await self._service_problems(request.body), request)
        if action is Action.UPDATE_SERVICE:
            return await self._update(found, request)
        if action is Action.EVENTS:
            if self._swarm and (target := _service_events_target(request.target)) is not None:
                return FilteredEvents(replace(request, target=target, body=b""))
            return Forward(replace(request, target=self._events_target(request.target)))
        if action is Action.NETWORK:
            return await self._network(str(found.ref))
        return await self._list(action, request)

    async def _update(self, found: Match, request: Request) -> Decision:
        """A service WakeDock created is judged like a create; an owner's opted-in service
        (e.g. deployed with `docker stack deploy`) may only be scaled or rescheduled."""
        pinned = await self._inspected(found, request)
        if isinstance(pinned, Answered):
            return pinned
        attrs, forward = pinned
        checked = replace(forward, body=request.body)
        spec = _labels(attrs, "Spec")
        labels = _labels(spec, "Labels")
        if is_opted_in(labels) and labels.get(MANAGED_LABEL) != self._installation:
            # Clients send back the spec with the engine's defaults filled in (docker-py's
            # `fetch_current_spec`, the CLI's `docker service scale`), or as it was given.
            ref = quote(str(attrs.get("ID") or found.ref), safe="")
            full = await self._engine.request("GET", f"/services/{ref}?insertDefaults=true")
            specs = [spec, _labels(full.json(), "Spec") if full.status == 200 else spec]
            return self._checked(scale_only_problems(_json(request.body), specs), checked)
        return self._checked(await self._service_problems(request.body), checked)

    def _checked(self, problems: list[str], request: Request) -> Decision:
        if problems:
            raise Refused("the launch policy refuses: " + "; ".join(problems))
        return Forward(request)

    async def _network(self, ref: str) -> Decision:
        """docker.network's own inspect (WakeDock's start-up check), by its name only, without
        the list of who else is attached to it."""
        if self._policy.network is None:
            raise Refused("networks are inspected only with --network (docker.network)")
        if ref != self._policy.network:
            raise Refused("only the network --network names may be inspected")
        answer = await self._engine.request("GET", f"/networks/{quote(ref, safe='')}")
        attrs = answer.json() if answer.status == 200 else None
        if not isinstance(attrs, dict):
            return Answered(answer)
        for private in ("Containers", "Services", "Peers"):
            attrs.pop(private, None)
        return Answered(replace(answer, body=json.dumps(attrs).encode()))

    async def _service_problems(self, raw: bytes) -> list[str]:
        body = _json(raw)
        names = []
        for ref in network_refs(body):
            # Swarm takes a network's id as well as its name: judge the name it stands for.
            answer = await self._engine.request("GET", f"/networks/{quote(ref, safe='')}")
            names.append(str(answer.json().get("Name", ref)) if answer.status == 200 else ref)
        return service_problems(body, self._installation, self._policy, names)

    async def _pinned(self, found: Match, request: Request) -> Decision:
        """Forward only when the workload in the path carries WakeDock's labels, with the path
        pinned to the id that was checked (a rename in between cannot swap the target)."""
        inspected = await self._inspected(found, request)
        return inspected if isinstance(inspected, Answered) else Forward(inspected[1])

    async def _inspected(
        self, found: Match, request: Request
    ) -> Answered | tuple[Mapping[str, Any], Request]:
        """The workload's inspect and the request pinned to it, or the engine's own answer."""
        ref = str(found.ref)
        container = found.path.startswith("/containers/")
        inspect = f"/containers/{ref}/json" if container else f"/services/{ref}"
        answer = await self._engine.request("GET", inspect)
        if answer.status != 200:
            return Answered(answer)  # "no such container" is the engine's own answer
        attrs = answer.json()
        labels = (
            _labels(attrs, "Config", "Labels") if container else _labels(attrs, "Spec", "Labels")
        )
        if not (self._managed(labels) or (container and await self._task_of_managed(labels))):
            kind = "container" if container else "service"
            raise Refused(f"the {kind} does not carry WakeDock's labels")
        parts = urlsplit(request.target)
        segments = found.path.split("/")  # ["", "containers", ref, ...]
        segments[2] = quote(str(attrs.get("Id") or attrs.get("ID") or ref), safe="")
        version = parts.path[: len(parts.path) - len(found.path)]
        target = version + "/".join(segments) + (f"?{parts.query}" if parts.query else "")
        # No body: API versions before 1.24 applied a HostConfig sent with a start.
        return attrs, replace(request, target=target, body=b"")

    async def _task_of_managed(self, labels: Mapping[str, str]) -> bool:
        """A Swarm task's container counts when its service is WakeDock's."""
        service = labels.get(SWARM_SERVICE_LABEL)
        if not self._swarm or not service:
            return False
        answer = await self._engine.request("GET", f"/services/{quote(service, safe='')}")
        return answer.status == 200 and self._managed(_labels(answer.json(), "Spec", "Labels"))

    def service_events(self) -> ServiceEvents:
        """A filter for one stream of service events (its verdicts are that stream's own)."""
        return ServiceEvents(self._engine, self._managed)

    def _events_target(self, target: str) -> str:
        """The client's event filters, with WakeDock's label filter forced in."""
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        filters = _event_filters(query)
        labels = filters.get("label") or []
        labels = [str(label) for label in labels]  # a list, or a dict of label: true
        ours = {f"{OPT_IN_LABEL}=true", f"{MANAGED_LABEL}={self._installation}"}
        if not ours & set(labels):
            labels.append(f"{MANAGED_LABEL}={self._installation}")
        filters["label"] = labels
        query["filters"] = [json.dumps(filters)]
        return f"{parts.path}?{urlencode(query, doseq=True)}"

    async def _list(self, action: Action, request: Request) -> Decision:
        answer = await self._engine.request(
            request.method, request.target, request.body, request.headers
        )
        items = answer.json() if answer.status == 200 else None
        if not isinstance(items, list):
            return Answered(answer)
        if action is Action.LIST_CONTAINERS:
            return _filtered(answer, [c for c in items if self._managed(_labels(c, "Labels"))])
        if action is Action.LIST_SERVICES:
            return _filtered(
                answer, [s for s in items if self._managed(_labels(s, "Spec", "Labels"))]
            )
        verdicts: dict[str, bool] = {}
        for task in items:
            service = str(task.get("ServiceID", "")) if isinstance(task, Mapping) else ""
            if service not in verdicts:
                found = await self._engine.request("GET", f"/services/{quote(service, safe='')}")
                verdicts[service] = found.status == 200 and self._managed(
                    _labels(found.json(), "Spec", "Labels")
                )
        return _filtered(answer, [t for t in items if verdicts.get(str(t.get("ServiceID", "")))])


def _event_filters(query: Mapping[str, list[str]]) -> dict[str, Any]:
    """The `filters` of an events request (the first, as the engine reads it)."""
    try:
        filters = json.loads(query.get("filters", ["{}"])[0])
    except ValueError:
        raise Refused("filters: not JSON") from None
    if not isinstance(filters, dict):
        raise Refused("filters: not a JSON object")
    return filters


def _service_events_target(target: str) -> str | None:
    """For a request of service events only (`type` is exactly `service`, as the Swarm
    runtime's live discovery asks), the target rebuilt from what was read; otherwise None."""
    parts = urlsplit(target)
    query = parse_qs(parts.query)
    filters = _event_filters(query)
    kinds = filters.get("type")
    if isinstance(kinds, dict):  # the older {"service": true} form
        kinds = [kind for kind, wanted in kinds.items() if wanted is True]
    if kinds != ["service"]:
        return None
    query["filters"] = [json.dumps(filters)]
    return f"{parts.path}?{urlencode(query, doseq=True)}"


class ServiceEvents:
    """Which of the engine's service events one client may see: those of services WakeDock
    manages or that opted in, looked up by id (the event's own attributes are not trusted).

    A service's verdict is remembered for its `remove` (it can no longer be looked up then).
    A remove of a service this stream never judged (it existed before the stream opened, or
    was gone before its first event could be looked up) is passed on reduced to its id, so
    that WakeDock drops it if it was one of its own; a service that stops being WakeDock's (its
    opt-in label removed) is reported the same way, once.
    """

    def __init__(self, engine: Engine, managed: Callable[[Mapping[str, str]], bool]) -> None:
        self._engine = engine
        self._managed = managed
        self._verdicts: dict[str, bool] = {}

    async def judge(self, line: bytes) -> bytes | None:
        """The line to pass on (the event itself or its reduced form), or None."""
        try:
            event = json.loads(line)
        except ValueError:
            return None
        actor = event.get("Actor") if isinstance(event, Mapping) else None
        ref = str(actor.get("ID") or "") if isinstance(actor, Mapping) else ""
        if not ref or event.get("Type") != "service":
            return None
        if event.get("Action") == "remove":
            known = self._verdicts.pop(ref, None)
            if known is None:
                return _reduced(event, ref)
            return line if known else None
        before = self._verdicts.get(ref)
        answer = await self._engine.request("GET", f"/services/{quote(ref, safe='')}")
        if answer.status == 404:
            # Removed since (its remove is on its way): judged as it was, if it was.
            return line if before else None
        labels = _labels(_json_or_none(answer), "Spec", "Labels") if answer.status == 200 else {}
        ours = self._managed(labels)
        if len(self._verdicts) >= _MAX_VERDICTS:
            self._verdicts.clear()  # bounded; a forgotten service's remove is then reduced
        self._verdicts[ref] = ours
        if ours:
            return line
        return _reduced(event, ref) if before else None


# Services remembered per event stream (a verdict is a few dozen bytes).
_MAX_VERDICTS = 10_000


def _reduced(event: Mapping[str, Any], ref: str) -> bytes:
    """The event with nothing but its type, action, id and time."""
    kept = {"Type": "service", "Action": event.get("Action"), "Actor": {"ID": ref}}
    kept |= {key: event[key] for key in ("time", "timeNano") if key in event}
    return json.dumps(kept).encode()


def _json_or_none(answer: Answer) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None
