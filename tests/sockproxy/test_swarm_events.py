"""Live discovery on Swarm through `wakedock socket-proxy --swarm`: a service event carries no
labels, so the engine cannot filter them by WakeDock's; the proxy judges each by the service it
names (looked up, never read from the event) and passes on only those of WakeDock's services."""

from __future__ import annotations

import json
import queue
import secrets
import threading
from collections.abc import Iterator

import docker
import pytest
from docker.types import ContainerSpec, ServiceMode, TaskTemplate

from integration import test_docker_swarm as swarm_tests
from sockproxy.swarm import engine, installation_name, network, proxy_flags, runtime
from support.docker_images import TEST_IMAGE
from support.engine import followed_changes, read_until
from support.socket_proxy import SocketProxy
from wakedock.runtime.base import WorkloadChange
from wakedock.runtime.docker_swarm import DockerSwarmRuntime

pytestmark = pytest.mark.integration

__all__ = ["engine", "installation_name", "network", "proxy_flags", "runtime"]


@pytest.fixture
def changes(runtime: DockerSwarmRuntime) -> Iterator[queue.Queue[WorkloadChange]]:
    with followed_changes(runtime) as seen:
        yield seen


def _service(engine: docker.DockerClient, network: str, labels: dict[str, str]) -> str:
    """A service its owner deployed (straight on the engine), at 0 replicas."""
    created = engine.api.create_service(
        TaskTemplate(
            ContainerSpec(engine.images.get(TEST_IMAGE).id, ["sleep", "300"]), networks=[network]
        ),
        name=f"{swarm_tests.BYSTANDER_PREFIX}{secrets.token_hex(4)}",
        labels=labels,
        mode=ServiceMode("replicated", replicas=0),
    )
    return str(created["ID"])


def _relabel(engine: docker.DockerClient, ref: str, labels: dict[str, str]) -> None:
    service = engine.api.inspect_service(ref)
    spec = service["Spec"]
    engine.api.update_service(
        ref,
        version=service["Version"]["Index"],
        task_template=spec["TaskTemplate"],
        name=spec["Name"],
        labels=labels,
        mode=spec["Mode"],
    )


@pytest.mark.security
def test_only_wakedocks_services_events_pass_and_a_new_one_is_discovered_live(
    engine: docker.DockerClient,
    runtime: DockerSwarmRuntime,
    changes: queue.Queue[WorkloadChange],
    network: str,
) -> None:
    opted = {"wakedock.enable": "true", "wakedock.port": "8080"}
    bystander = _service(engine, network, {"team": "payroll"})
    owned = _service(engine, network, opted)
    read = read_until(changes, owned, "create")
    # Found without a reconcile: what the watcher does on that event.
    found = runtime.discovered(owned)
    assert found is not None and found.labels["wakedock.port"] == "8080"

    _relabel(engine, bystander, {"team": "payroll", "tier": "gold"})
    _relabel(engine, owned, {**opted, "wakedock.idle_timeout": "60"})
    read += read_until(changes, owned, "update")
    # The owner opts out: the change still reaches WakeDock, which then loses sight of it.
    _relabel(engine, owned, {"team": "web"})
    read += read_until(changes, owned, "update")
    assert runtime.discovered(owned) is None

    engine.api.remove_service(bystander)
    engine.api.remove_service(owned)
    # Another opted-in service comes and goes: once its removal is read, every earlier event
    # that was passed on has been read too.
    marker = _service(engine, network, opted)
    engine.api.remove_service(marker)
    read += read_until(changes, marker, "remove")
    assert bystander not in {change.ref for change in read}, read
    # Opted out, it was no longer WakeDock's business: its removal is not passed on either.
    assert (owned, "remove") not in {(change.ref, change.action) for change in read}, read


@pytest.mark.security
def test_the_stream_says_nothing_of_other_services_beyond_an_id_removed(
    engine: docker.DockerClient, proxy: SocketProxy, network: str
) -> None:
    """A service that existed before the stream opened is unknown to it: its removal is passed
    on as an id and an action only (WakeDock may have known it), never its name or labels."""
    earlier = _service(engine, network, {"team": "payroll"})
    client = docker.APIClient(base_url=proxy.url, timeout=30)
    stream = client.events(filters={"type": ["service"]}, decode=True)
    seen: queue.Queue[dict[str, object]] = queue.Queue()
    reader = threading.Thread(target=lambda: [seen.put(e) for e in stream], daemon=True)
    reader.start()
    try:
        engine.api.remove_service(earlier)
        later = _service(engine, network, {"team": "payroll"})
        engine.api.remove_service(later)
        marker = _service(engine, network, {"wakedock.enable": "true"})
        events: list[dict[str, object]] = []
        # The marker is removed only once its create has been passed on: a service gone before
        # the proxy could look it up has its create dropped (ServiceEvents).
        for action in ("create", "remove"):
            while not any(_of(e, marker) and e.get("Action") == action for e in events):
                try:
                    events.append(seen.get(timeout=30))
                except queue.Empty:
                    missing = f"no {action} of {marker} in 30 s; only {events}"
                    raise AssertionError(missing) from None
            if action == "create":
                engine.api.remove_service(marker)
    finally:
        stream.close()
        reader.join(10)
    assert [e["Action"] for e in events if _of(e, earlier)] == ["remove"], events
    assert [e["Actor"] for e in events if _of(e, earlier)] == [{"ID": earlier}]
    assert later not in json.dumps(events)
    assert {e["Action"] for e in events if _of(e, marker)} >= {"create", "remove"}


def _of(event: dict[str, object], ref: str) -> bool:
    actor = event.get("Actor")
    return isinstance(actor, dict) and actor.get("ID") == ref
