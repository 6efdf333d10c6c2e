"""An in-memory ContainerRuntime for fast API tests. Integration tests use the real engine."""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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
    WorkloadChange,
)
from wakedock.runtime.engine_spec import container_kwargs
from wakedock.runtime.hardening import harden
from wakedock.runtime.launch import Launch


@dataclass
class FakeContainer:
    name: str
    image: str
    labels: dict[str, str]
    environment: dict[str, str] = field(default_factory=dict)
    state: State = State.STOPPED
    kwargs: dict[str, Any] = field(default_factory=dict)
    healthcheck: tuple[str, ...] | None = None


class FakeEvents:
    """An event stream the test feeds (`FakeRuntime.emit`) and ends (`close`, `cut`)."""

    def __init__(self) -> None:
        self.changes: queue.Queue[WorkloadChange | None] = queue.Queue()

    def __iter__(self) -> Iterator[WorkloadChange]:
        while (change := self.changes.get()) is not None:
            yield change

    def close(self) -> None:
        self.changes.put(None)


class FakeRuntime:
    kind = RuntimeKind.ENGINE

    def __init__(self, installation: str = "wakedock", images: set[str] | None = None) -> None:
        self.installation = installation
        self.images = images if images is not None else {"wakedock-test/busybox:1"}
        self.containers: dict[str, FakeContainer] = {}
        self.calls: list[tuple[str, str]] = []
        self.down = False
        self.endpoints: dict[str, tuple[str, int]] = {}
        # Where every workload "listens": a real local server in the proxy tests.
        self.default_endpoint: tuple[str, int] | None = None
        self.fail_start = False
        self.stop_delay = 0.0
        self.cpu_percent = 12.5
        self._ids = (f"c{n:063d}" for n in itertools.count(1))
        self.streams: list[FakeEvents] = []

    def ping(self) -> None:
        self._up()

    def _up(self) -> None:
        if self.down:
            raise RuntimeUnavailable("the Docker daemon cannot be reached")

    def _get(self, ref: str) -> FakeContainer:
        self._up()
        container = self.containers.get(ref)
        if container is None:
            raise ContainerNotFound("the container no longer exists in the engine")
        if not (
            container.labels.get("wakedock.managed") == self.installation
            or container.labels.get("wakedock.enable") == "true"
        ):
            raise NotManaged("WakeDock only operates containers it manages")
        return container

    def add_foreign(self, name: str, labels: dict[str, str], **extra: Any) -> str:
        """A container someone else created (opted in or not)."""
        ref = next(self._ids)
        self.containers[ref] = FakeContainer(name, "wakedock-test/busybox:1", labels, **extra)
        return ref

    def has_image(self, image: str) -> bool:
        self._up()
        return image in self.images

    def create(self, launch: Launch) -> str:
        self._up()
        # What the Engine runtime would hand to docker-py, for tests to read.
        kwargs = container_kwargs(harden(launch, self.installation))
        if launch.image not in self.images:
            raise ImageMissing()
        ref = next(self._ids)
        self.containers[ref] = FakeContainer(
            kwargs["name"],
            launch.image,
            dict(kwargs["labels"]),
            dict(launch.environment),
            kwargs=kwargs,
        )
        self.calls.append(("create", ref))
        return ref

    def start(self, ref: str) -> None:
        if self.fail_start:
            raise RuntimeUnavailable("the Docker daemon cannot be reached")
        self._get(ref).state = State.RUNNING
        self.calls.append(("start", ref))

    def stop(self, ref: str, *, pause: bool = False) -> None:
        if self.stop_delay:
            time.sleep(self.stop_delay)
        self._get(ref).state = State.PAUSED if pause else State.STOPPED
        self.calls.append(("stop", ref))

    def remove(self, ref: str) -> None:
        try:
            self._get(ref)
        except ContainerNotFound:
            return
        del self.containers[ref]
        self.calls.append(("remove", ref))

    def status(self, ref: str) -> ContainerStatus:
        container = self._get(ref)
        health = "healthy" if container.state is State.RUNNING else None
        return ContainerStatus(ref, container.name, container.state, health)

    def logs(self, ref: str, tail: int) -> str:
        self._get(ref)
        return "\n".join(f"line {n}" for n in range(tail))

    def stats(self, ref: str) -> ContainerStats:
        if self._get(ref).state is not State.RUNNING:
            raise InvalidState("the service is not running; start it to see its usage")
        return ContainerStats(self.cpu_percent, 50 * 2**20, 256 * 2**20, 1000, 2000)

    def discover(self) -> list[DiscoveredWorkload]:
        self._up()
        return [
            DiscoveredWorkload(ref, c.name, c.image, c.state, dict(c.labels), c.healthcheck)
            for ref, c in self.containers.items()
            if c.labels.get("wakedock.enable") == "true"
        ]

    def discovered(self, ref: str) -> DiscoveredWorkload | None:
        self._up()
        return next((w for w in self.discover() if w.ref == ref), None)

    def follow(self) -> FakeEvents:
        self._up()
        stream = FakeEvents()
        self.streams.append(stream)
        return stream

    def emit(self, ref: str, action: str) -> None:
        """The engine reports `action` on `ref` to every open event stream."""
        for stream in self.streams:
            stream.changes.put(WorkloadChange(ref, action))

    def cut(self) -> None:
        """The engine goes away: every open event stream ends."""
        for stream in self.streams:
            stream.close()
        self.streams.clear()

    def find(self, service_name: str) -> str | None:
        self._up()
        for ref, c in self.containers.items():
            labels = c.labels
            if (
                labels.get("wakedock.service") == service_name
                and labels.get("wakedock.managed") == self.installation
            ):
                return ref
        return None

    def endpoint(self, ref: str, container_port: int) -> Endpoint:
        self._get(ref)
        host, port = self.endpoints.get(ref, self.default_endpoint or ("127.0.0.1", container_port))
        return Endpoint(host, port)

    def inspect(self, ref: str) -> list[dict[str, Any]]:
        return [{"Name": self._get(ref).name}]
