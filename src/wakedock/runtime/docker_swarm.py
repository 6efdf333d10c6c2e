"""ContainerRuntime on Docker Swarm: one replicated Swarm service per WakeDock service, 0 or 1 task.

`create` makes the service with 0 replicas, `start` scales it to 1, `stop` (also for `pause`: Swarm
cannot pause) back to 0; the ref is the Swarm service id. Only managed or opted-in services are
touched.

What Swarm cannot enforce (CIS v1.6.0 ids), reported by cis-check rather than silently missing:
- CIS 5.26: `ContainerSpec.Privileges.NoNewPrivileges` exists from API 1.44; it is set when the
  daemon speaks 1.44, older daemons (Docker 20.10: API 1.41) run tasks without no-new-privileges.
- CIS 5.14: Swarm publishes ports on every interface (ingress or host mode), never on loopback, so
  nothing is published; the proxy reaches a service over a Swarm network (`network_mode`).
- CIS 5.15: Swarm restarts tasks itself (TaskTemplate.RestartPolicy on-failure, 5 attempts); the
  task containers' own HostConfig.RestartPolicy stays empty.
- No MemorySwap field: the engine default applies (as much swap as memory). tmpfs mount flags
  need API 1.46; the engine mounts Swarm tmpfs nosuid,nodev,noexec by default (size set here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, Protocol, TypeVar, cast

import docker
import docker.errors
from docker.types import (
    ServiceMode,
)

from wakedock.runtime.base import (
    ContainerNotFound,
    ContainerStats,
    ContainerStatus,
    DiscoveredWorkload,
    Endpoint,
    ImageMissing,
    InvalidState,
    NotManaged,
    RuntimeKind,
    RuntimeUnavailable,
    State,
    WorkloadChanges,
    reported_health,
)
from wakedock.runtime.client import EngineClient, EngineFailed
from wakedock.runtime.events import open_changes
from wakedock.runtime.hardening import harden
from wakedock.runtime.labels import (
    OPT_IN_LABEL,
    SERVICE_LABEL,
    created_for,
    is_managed,
    is_opted_in,
)
from wakedock.runtime.launch import Launch
from wakedock.runtime.stats import stats_from_sample
from wakedock.runtime.swarm_spec import pinned_image, swarm_networks, task_template

T = TypeVar("T")
NOT_A_MANAGER = "this Docker engine is not a Swarm manager: run `docker swarm init`"
NO_NEW_PRIVILEGES_API = (1, 44)
_LIVE_DESIRED = frozenset({"ready", "running"})
_GAVE_UP = frozenset({"failed", "rejected"})
_SCALE_ATTEMPTS = 3


class _SwarmApi(Protocol):
    """The slice of docker-py's low-level client used here (its stubs leave these untyped)."""

    @property
    def api_version(self) -> str: ...
    def info(self) -> dict[str, Any]: ...
    def ping(self) -> bool: ...
    def inspect_image(self, image: str) -> dict[str, Any]: ...
    def networks(self, names: list[str] | None = None) -> list[dict[str, Any]]: ...
    def create_service(self, task_template: Mapping[str, Any], **kw: Any) -> dict[str, Any]: ...
    def inspect_service(self, service: str) -> dict[str, Any]: ...
    def update_service(self, service: str, version: int, **kw: Any) -> dict[str, Any]: ...
    def remove_service(self, service: str) -> bool: ...
    def services(self, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...
    def tasks(self, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...
    def service_logs(self, service: str, **kw: Any) -> Iterable[bytes]: ...
    def inspect_container(self, container: str) -> dict[str, Any]: ...
    def stats(self, container: str, *, stream: bool) -> dict[str, Any]: ...


class DockerSwarmRuntime:
    """Drives Swarm services through a manager node. Blocking: run every call on a worker thread."""

    kind = RuntimeKind.SWARM

    def __init__(self, *, base_url: str, installation: str) -> None:
        self._base_url = base_url
        self._installation = installation
        self._engine = EngineClient(base_url)

    def _call(self, action: Callable[[_SwarmApi], T], hidden: Iterable[str] = ()) -> T:
        """Run `action` (failures mapped as runtime/client.py says); a non-manager is
        RuntimeUnavailable (503) with what to do about it."""
        try:
            return self._engine.call(lambda client: action(cast(_SwarmApi, client.api)), hidden)
        except EngineFailed as exc:
            cause = exc.__cause__
            if (
                isinstance(cause, docker.errors.APIError)
                and cause.status_code == 503
                and "swarm" in str(cause.explanation).lower()
            ):
                raise RuntimeUnavailable(NOT_A_MANAGER) from cause
            raise

    def ping(self) -> None:
        self._call(lambda api: api.ping())

    def _managed(self, api: _SwarmApi, service_id: str) -> dict[str, Any]:
        try:
            service = api.inspect_service(service_id)
        except docker.errors.NotFound:
            raise ContainerNotFound("the service no longer exists in the Swarm") from None
        if not is_managed(_labels(service), self._installation):
            raise NotManaged("WakeDock only operates services it manages")
        return service

    def has_image(self, image: str) -> bool:
        def present(api: _SwarmApi) -> bool:
            try:
                pinned_image(api, image)
            except ImageMissing:
                return False
            return True

        return self._call(present)

    def create(self, launch: Launch) -> str:
        """Create the hardened service of `launch` with 0 replicas; returns the Swarm service id.

        The hardened container is the one the Engine would create (same names, labels, volumes
        and limits); it is translated to Swarm fields here.
        """
        hardened = harden(launch, self._installation)
        namespaces = launch.namespaces
        modes = {"pid_mode": namespaces.pid, "ipc_mode": namespaces.ipc, "uts_mode": namespaces.uts}
        for field, mode in modes.items():
            if mode not in (None, "private"):
                raise ValueError(f"{field}: Swarm services always get a private namespace")

        def create(api: _SwarmApi) -> str:
            swarm = api.info().get("Swarm") or {}
            if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
                raise RuntimeUnavailable(NOT_A_MANAGER)
            template = task_template(
                hardened,
                image=pinned_image(api, launch.image),
                no_new_privileges=_at_least(api.api_version, NO_NEW_PRIVILEGES_API),
                networks=swarm_networks(api, namespaces.network),
            )
            created = api.create_service(
                template,
                name=hardened.name,
                labels=dict(hardened.labels),
                mode=ServiceMode("replicated", replicas=0),
            )
            return str(created["ID"])

        return self._call(create, hidden=launch.environment.values())

    def start(self, service_id: str) -> None:
        """Scale to 1; a service Swarm gave up on (restarts exhausted) is rescheduled."""

        def start(api: _SwarmApi) -> None:
            if _scalable(self._managed(api, service_id)) == 0:
                _update(api, service_id, replicas=1)
            elif _live_task(api.tasks(filters={"service": service_id})) is None:
                _update(api, service_id, force=True)

        self._call(start)

    def stop(self, service_id: str, *, pause: bool = False) -> None:
        """Scale to 0 (`pause` too: Swarm cannot pause). Swarm stops the task asynchronously."""

        def stop(api: _SwarmApi) -> None:
            if _scalable(self._managed(api, service_id)) != 0:
                _update(api, service_id, replicas=0)

        self._call(stop)

    def remove(self, service_id: str) -> None:
        """Remove the service (Swarm then removes its tasks); one already gone is not an error."""

        def remove(api: _SwarmApi) -> None:
            try:
                self._managed(api, service_id)
                api.remove_service(service_id)
            except (ContainerNotFound, docker.errors.NotFound):
                return

        self._call(remove)

    def status(self, service_id: str) -> ContainerStatus:
        """0 replicas: stopped; otherwise the current task's state and its container's health."""

        def status(api: _SwarmApi) -> ContainerStatus:
            service = self._managed(api, service_id)
            state, health = _service_state(api, service)
            name = str(service["Spec"]["Name"])
            return ContainerStatus(
                id=str(service["ID"]),
                name=name,
                state=state,
                health=reported_health(state, health),
            )

        return self._call(status)

    def logs(self, service_id: str, tail: int) -> str:
        """The last `tail` lines (1..10000) of the service's tasks, stdout and stderr."""

        def logs(api: _SwarmApi) -> str:
            self._managed(api, service_id)
            lines = max(1, min(tail, 10_000))
            raw = b"".join(api.service_logs(service_id, stdout=True, stderr=True, tail=str(lines)))
            # The tail applies per task; the service as a whole shows the last `lines` lines.
            return "".join(raw.decode(errors="replace").splitlines(keepends=True)[-lines:])

        return self._call(logs)

    def stats(self, service_id: str) -> ContainerStats:
        """One sample of the running task's container; InvalidState when no task runs."""

        def stats(api: _SwarmApi) -> ContainerStats:
            self._managed(api, service_id)
            containers = _running_containers(api, service_id)
            if not containers:
                raise InvalidState("the service is not running; start it to see its usage")
            # stream=False: the daemon takes two samples, so precpu_stats is filled in.
            return stats_from_sample(api.stats(containers[0], stream=False))

        return self._call(stats)

    def discover(self) -> list[DiscoveredWorkload]:
        """Services whose own labels opt in (`wakedock.enable=true`); task labels do not count."""

        def discover(api: _SwarmApi) -> list[DiscoveredWorkload]:
            found = api.services(filters={"label": f"{OPT_IN_LABEL}=true"})
            return [_workload(api, service) for service in found if is_opted_in(_labels(service))]

        return self._call(discover)

    def discovered(self, ref: str) -> DiscoveredWorkload | None:
        def discovered(api: _SwarmApi) -> DiscoveredWorkload | None:
            try:
                service = api.inspect_service(ref)
            except docker.errors.NotFound:
                return None
            except docker.errors.APIError as exc:
                # Behind the socket proxy, a service that is not (or no longer) WakeDock's is
                # refused (403): its owner removed the opt-in label. Not discoverable either.
                if exc.status_code == HTTPStatus.FORBIDDEN:
                    return None
                raise
            return _workload(api, service) if is_opted_in(_labels(service)) else None

        return self._call(discovered)

    def follow(self) -> WorkloadChanges:
        # A service event carries no labels: each is looked up (`discovered`).
        return self._call(lambda api: open_changes(api, "service", None))

    def find(self, service_name: str) -> str | None:
        """The id of the service this installation created for `service_name`, if any."""

        def find(api: _SwarmApi) -> str | None:
            for service in api.services(filters={"label": f"{SERVICE_LABEL}={service_name}"}):
                if created_for(_labels(service), self._installation, service_name):
                    return str(service["ID"])
            return None

        return self._call(find)

    def endpoint(self, service_id: str, container_port: int) -> Endpoint:
        """The service's name on its Swarm network: Swarm publishes nothing on loopback."""

        def endpoint(api: _SwarmApi) -> Endpoint:
            return Endpoint(str(self._managed(api, service_id)["Spec"]["Name"]), container_port)

        return self._call(endpoint)

    def inspect(self, service_id: str) -> list[dict[str, Any]]:
        """`docker inspect` of the running task containers (none when scaled to 0)."""

        def inspect(api: _SwarmApi) -> list[dict[str, Any]]:
            self._managed(api, service_id)
            found: list[dict[str, Any]] = []
            for container_id in _running_containers(api, service_id):
                try:
                    found.append(api.inspect_container(container_id))
                except docker.errors.NotFound:
                    continue  # the task ended between the two calls
            return found

        return self._call(inspect)


def _update(
    api: _SwarmApi, service_id: str, *, replicas: int | None = None, force: bool = False
) -> None:
    """Scale or reschedule; retried when another writer updated the service in between."""
    for attempt in range(_SCALE_ATTEMPTS):
        current = api.inspect_service(service_id)
        template: dict[str, Any] | None = None
        if force:
            template = dict(current["Spec"]["TaskTemplate"])
            template["ForceUpdate"] = int(template.get("ForceUpdate", 0)) + 1
        try:
            api.update_service(
                service_id,
                int(current["Version"]["Index"]),
                task_template=template,
                mode=ServiceMode("replicated", replicas=replicas) if replicas is not None else None,
                fetch_current_spec=True,
            )
            return
        except docker.errors.APIError as exc:
            if "out of sequence" not in str(exc) or attempt == _SCALE_ATTEMPTS - 1:
                raise


def _service_state(api: _SwarmApi, service: Mapping[str, Any]) -> tuple[State, str | None]:
    if _replicas(service) == 0:
        return State.STOPPED, None
    tasks = api.tasks(filters={"service": service["ID"]})
    task = _live_task(tasks)
    if task is None:
        latest = max(tasks, key=_task_index, default=None)
        gave_up = latest is not None and latest["Status"]["State"] in _GAVE_UP
        # Otherwise the orchestrator has not created the task yet.
        return (State.STOPPED if gave_up else State.STARTING), None
    health = _health(api, _container_id(task))
    return (State.RUNNING if task["Status"]["State"] == "running" else State.STARTING), health


def _live_task(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    # "ready": a restarted task waits out the restart delay with this desired state.
    live = [t for t in tasks if t.get("DesiredState") in _LIVE_DESIRED]
    return max(live, key=_task_index, default=None)


def _task_index(task: Mapping[str, Any]) -> int:
    return int((task.get("Version") or {}).get("Index", 0))


def _container_id(task: Mapping[str, Any]) -> str | None:
    found = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
    return str(found) if found else None


def _running_containers(api: _SwarmApi, service_id: str) -> list[str]:
    return [
        container_id
        for task in api.tasks(filters={"service": service_id})
        if task.get("DesiredState") in _LIVE_DESIRED and task["Status"]["State"] == "running"
        if (container_id := _container_id(task)) is not None
    ]


def _health(api: _SwarmApi, container_id: str | None) -> str | None:
    # The task container lives on this node when the Swarm has one node; elsewhere it is unknown.
    if container_id is None:
        return None
    try:
        state = api.inspect_container(container_id).get("State") or {}
    except docker.errors.NotFound:
        return None
    health = (state.get("Health") or {}).get("Status")
    return str(health) if health else None


def _replicas(service: Mapping[str, Any]) -> int | None:
    """Desired replicas; None for a global service (opted in), which cannot be scaled."""
    replicated = (service["Spec"].get("Mode") or {}).get("Replicated")
    return None if replicated is None else int(replicated.get("Replicas", 0))


def _scalable(service: Mapping[str, Any]) -> int:
    replicas = _replicas(service)
    if replicas is None:
        raise InvalidState("only a replicated Swarm service can be started and stopped")
    return replicas


def _at_least(api_version: str, wanted: tuple[int, int]) -> bool:
    return tuple(int(part) for part in api_version.split(".")) >= wanted


def _labels(service: Mapping[str, Any]) -> dict[str, str]:
    return dict((service.get("Spec") or {}).get("Labels") or {})


def _workload(api: _SwarmApi, service: Mapping[str, Any]) -> DiscoveredWorkload:
    container = service["Spec"]["TaskTemplate"]["ContainerSpec"]
    test = (container.get("Healthcheck") or {}).get("Test")
    return DiscoveredWorkload(
        ref=str(service["ID"]),
        name=str(service["Spec"]["Name"]),
        image=str(container.get("Image", "")),
        state=_service_state(api, service)[0],
        labels=_labels(service),
        healthcheck=tuple(str(item) for item in test) if test else None,
    )
