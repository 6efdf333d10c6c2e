"""ContainerRuntime on a local Docker Engine (docker SDK). Only managed containers are touched."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import docker
import docker.errors
from docker.models.containers import Container

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
    State,
    WorkloadChanges,
    reported_health,
)
from wakedock.runtime.client import EngineClient, redact
from wakedock.runtime.engine_spec import container_kwargs, create_container
from wakedock.runtime.events import open_changes
from wakedock.runtime.hardening import LOOPBACK, harden
from wakedock.runtime.labels import (
    OPT_IN_LABEL,
    SERVICE_LABEL,
    created_for,
    is_managed,
    is_opted_in,
)
from wakedock.runtime.launch import Launch
from wakedock.runtime.network import endpoint_host, missing, unusable
from wakedock.runtime.stats import stats_from_sample

# What a stop waits for when a container declares no StopTimeout (the engine's own default).
DEFAULT_STOP_TIMEOUT = 10
T = TypeVar("T")


class DockerEngineRuntime:
    """Drives containers on one Docker Engine. Blocking: run every call on a worker thread."""

    kind = RuntimeKind.ENGINE

    def __init__(self, *, base_url: str, installation: str, network: str | None = None) -> None:
        self._installation = installation
        # docker.network (runtime/network.py): created containers join it, and any container
        # on it is reached by its name there.
        self._network = network
        self._engine = EngineClient(base_url)

    def _call(self, action: Callable[[docker.DockerClient], T], hidden: Iterable[str] = ()) -> T:
        """Run `action`; engine failures are mapped as runtime/client.py says."""
        return self._engine.call(action, hidden)

    def ping(self) -> None:
        self._call(lambda client: client.ping())

    def check_network(self) -> None:
        """With docker.network set: NetworkUnusable unless the engine has that network and it
        is user-defined and joinable (runtime/network.py); RuntimeUnavailable without engine."""
        network = self._network
        if network is None:
            return

        def check(client: docker.DockerClient) -> None:
            try:
                attrs = client.api.inspect_network(network)
            except docker.errors.NotFound:
                raise missing(network) from None
            problem = unusable(attrs, network)
            if problem is not None:
                raise problem

        self._call(check)

    def _managed(self, client: docker.DockerClient, container_id: str) -> Container:
        try:
            container = client.containers.get(container_id)
        except docker.errors.NotFound:
            raise ContainerNotFound("the container no longer exists in the engine") from None
        if not is_managed(container.labels, self._installation):
            raise NotManaged("WakeDock only operates containers it manages")
        return container

    def create(self, launch: Launch) -> str:
        kwargs = container_kwargs(harden(launch, self._installation), self._network)

        def create(client: docker.DockerClient) -> str:
            try:
                client.images.get(launch.image)
            except docker.errors.ImageNotFound:
                raise ImageMissing(
                    "the image is not present on the Docker host (WakeDock never pulls it)"
                ) from None
            return create_container(client, kwargs)

        return self._call(create, hidden=launch.environment.values())

    def has_image(self, image: str) -> bool:
        def present(client: docker.DockerClient) -> bool:
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                return False
            return True

        return self._call(present)

    def start(self, container_id: str) -> None:
        def start(client: docker.DockerClient) -> None:
            container = self._managed(client, container_id)
            if container.status == "paused":
                container.unpause()
            else:
                container.start()

        self._call(start)

    def stop(self, container_id: str, *, pause: bool = False) -> None:
        def stop(client: docker.DockerClient) -> None:
            container = self._managed(client, container_id)
            if pause:
                if container.status == "running":
                    container.pause()
            else:
                # The container's own StopTimeout (the spec's, or its owner's for a discovered
                # one): the daemon then sends SIGKILL, and the client waits that long for it.
                configured = (container.attrs.get("Config") or {}).get("StopTimeout")
                container.stop(timeout=int(configured or DEFAULT_STOP_TIMEOUT))

        self._call(stop)

    def remove(self, container_id: str) -> None:
        def remove(client: docker.DockerClient) -> None:
            try:
                container = self._managed(client, container_id)
            except ContainerNotFound:
                return
            container.remove(force=True)

        self._call(remove)

    def status(self, container_id: str) -> ContainerStatus:
        def status(client: docker.DockerClient) -> ContainerStatus:
            container = self._managed(client, container_id)
            attrs = container.attrs.get("State", {})
            state = _state(attrs)
            return ContainerStatus(
                id=str(container.id),
                name=str(container.name),
                state=state,
                health=reported_health(state, (attrs.get("Health") or {}).get("Status")),
                **_ended(attrs, (container.attrs.get("Config") or {}).get("Env") or ()),
            )

        return self._call(status)

    def logs(self, container_id: str, tail: int) -> str:
        def logs(client: docker.DockerClient) -> str:
            container = self._managed(client, container_id)
            raw: bytes = container.logs(tail=max(1, min(tail, 10_000)))
            return raw.decode(errors="replace")

        return self._call(logs)

    def stats(self, container_id: str) -> ContainerStats:
        def stats(client: docker.DockerClient) -> ContainerStats:
            container = self._managed(client, container_id)
            if container.status != "running":
                raise InvalidState("the service is not running; start it to see its usage")
            # stream=False: the daemon takes two samples, so precpu_stats is filled in.
            sample = container.stats(stream=False)
            if not isinstance(sample, dict):  # pragma: no cover - stream=False returns a dict
                raise InvalidState("the engine returned no usage sample")
            return stats_from_sample(sample)

        return self._call(stats)

    def discover(self) -> list[DiscoveredWorkload]:
        def discover(client: docker.DockerClient) -> list[DiscoveredWorkload]:
            found = client.containers.list(all=True, filters={"label": f"{OPT_IN_LABEL}=true"})
            return [_workload(c) for c in found if is_opted_in(c.labels)]

        return self._call(discover)

    def discovered(self, ref: str) -> DiscoveredWorkload | None:
        def discovered(client: docker.DockerClient) -> DiscoveredWorkload | None:
            try:
                container = client.containers.get(ref)
            except docker.errors.NotFound:
                return None
            return _workload(container) if is_opted_in(container.labels) else None

        return self._call(discovered)

    def follow(self) -> WorkloadChanges:
        return self._call(
            lambda client: open_changes(client.api, "container", f"{OPT_IN_LABEL}=true")
        )

    def find(self, service_name: str) -> str | None:
        def find(client: docker.DockerClient) -> str | None:
            found = client.containers.list(
                all=True, filters={"label": f"{SERVICE_LABEL}={service_name}"}
            )
            for container in found:
                if created_for(container.labels, self._installation, service_name):
                    return str(container.id)
            return None

        return self._call(find)

    def endpoint(self, container_id: str, container_port: int) -> Endpoint:
        def endpoint(client: docker.DockerClient) -> Endpoint:
            container = self._managed(client, container_id)
            if self._network is not None:
                host = endpoint_host(container.attrs, self._network)
                if host is not None:
                    return Endpoint(host, container_port)
            # Not on docker.network (or none set): the port published on the host's loopback.
            ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
            for binding in ports.get(f"{container_port}/tcp") or []:
                if binding.get("HostIp") == LOOPBACK and binding.get("HostPort"):
                    return Endpoint(LOOPBACK, int(binding["HostPort"]))
            where = f"not on {self._network} (docker.network), and " if self._network else ""
            raise InvalidState(
                f"{where}port {container_port} is not published on {LOOPBACK}; "
                "is the service running?"
            )

        return self._call(endpoint)

    def inspect(self, container_id: str) -> list[dict[str, Any]]:
        def inspect(client: docker.DockerClient) -> list[dict[str, Any]]:
            return [dict(self._managed(client, container_id).attrs)]

        return self._call(inspect)


def _workload(container: Container) -> DiscoveredWorkload:
    attrs = container.attrs
    return DiscoveredWorkload(
        ref=str(container.id),
        name=str(container.name),
        image=str(attrs.get("Config", {}).get("Image", "")),
        state=_state(attrs.get("State", {})),
        labels=dict(container.labels),
        healthcheck=_healthcheck(attrs),
    )


def _healthcheck(attrs: Mapping[str, Any]) -> tuple[str, ...] | None:
    test = ((attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test")
    return tuple(str(item) for item in test) if test else None


def _ended(state: Mapping[str, Any], environment: Iterable[str]) -> dict[str, Any]:
    """Why the last run ended (exit code, the engine's error), once a run has ended. The error
    is shown to anyone who may read the service: redacted, the container's environment values
    (secrets among them) included."""
    if state.get("Running") or str(state.get("FinishedAt", "")).startswith("0001-"):
        return {}
    values = (item.partition("=")[2] for item in environment)
    error = redact(str(state.get("Error") or ""), values)
    if not error and state.get("OOMKilled"):
        error = "killed: out of memory"
    return {"exit_code": int(state.get("ExitCode", 0)), "error": error or None}


def _state(state: Mapping[str, Any]) -> State:
    if state.get("Paused"):
        return State.PAUSED
    if state.get("Running"):
        return State.RUNNING
    if state.get("Restarting"):
        return State.STARTING
    return State.STOPPED
