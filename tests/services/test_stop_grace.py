"""The stop grace of the edge's direct routes (edge.stop_grace_seconds): a stop first stores the
service as stopping (the edge drops its route), waits, and only then stops the container; under
the default `direct_routes: auto` it waits only while an edge is registered (cluster/edges.py).
The real `wakedock serve` and edge: tests/edge/test_direct_engine.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.clock import FakeClock
from wakedock.cluster.edges import EDGE_TTL_SECONDS, EdgeRegistry
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role
from wakedock.runtime.base import State
from wakedock.services.grace import StopGrace
from wakedock.services.snapshots import Actor, ServiceView
from wakedock.services.spec import ServiceSpec

ADMIN = Actor("test", Role.ADMIN)
CONTEXT = RequestContext(actor="test")
# The longest grace the settings take: a stop that waited it would not return within the join.
LONGEST = 60
# Far shorter than LONGEST, far longer than a stop that does not wait (milliseconds).
JOIN_SECONDS = 30


@pytest.fixture
def database_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/wakedock.db"


def _started(h: Harness) -> None:
    spec = ServiceSpec.model_validate(
        {
            "name": "app",
            "image": "wakedock-test/busybox:1",
            "ports": [{"container_port": 8080}],
            "readiness": {"type": "tcp", "port": 8080},
        }
    )
    h.components.services.create(ADMIN, spec, CONTEXT, owner_id=None)
    h.components.services.start(ADMIN, "app", CONTEXT)


Seen = list[tuple[str, State, float]]


def _stop_observed(h: Harness, runtime: FakeRuntime) -> tuple[Seen, bool]:
    """Each state stored during a stop, with the container's state and the monotonic time at
    that moment; and whether the stop returned within JOIN_SECONDS (it runs in a thread)."""
    seen: Seen = []

    def changed(name: str, view: ServiceView | None) -> None:
        assert view is not None and view.container_ref is not None
        seen.append((view.state, runtime.status(view.container_ref).state, time.monotonic()))

    h.components.services.on_change(changed)
    stop = threading.Thread(
        target=h.components.services.stop, args=(ADMIN, "app", CONTEXT), daemon=True
    )
    stop.start()
    stop.join(JOIN_SECONDS)
    return seen, not stop.is_alive()


def _states(seen: Seen) -> list[tuple[str, State]]:
    return [(state, container) for state, container, _ in seen]


def test_with_direct_routes_true_the_route_goes_before_the_container(
    make_harness: Callable[..., Harness],
) -> None:
    runtime = FakeRuntime()
    h = make_harness(runtime=runtime, edge={"direct_routes": True, "stop_grace_seconds": 0.5})
    _started(h)
    seen, returned = _stop_observed(h, runtime)
    assert returned
    assert _states(seen) == [("stopping", State.RUNNING), ("stopped", State.STOPPED)]
    assert seen[1][2] - seen[0][2] >= 0.5  # the grace, between the two


def test_without_direct_routes_a_stop_does_not_wait(make_harness: Callable[..., Harness]) -> None:
    runtime = FakeRuntime()
    h = make_harness(runtime=runtime, edge={"direct_routes": False, "stop_grace_seconds": LONGEST})
    _started(h)
    seen, returned = _stop_observed(h, runtime)
    assert returned
    assert _states(seen) == [("stopped", State.STOPPED)]


def test_by_default_without_an_edge_a_stop_does_not_wait(
    make_harness: Callable[..., Harness],
) -> None:
    runtime = FakeRuntime()
    h = make_harness(runtime=runtime, edge={"stop_grace_seconds": LONGEST})
    assert h.components.settings.edge.direct_routes == "auto"
    _started(h)
    seen, returned = _stop_observed(h, runtime)
    # Stored as stopping first (an edge registering meanwhile renders no route), then stopped
    # at once: the 60 s grace was not waited.
    assert returned
    assert _states(seen) == [("stopping", State.RUNNING), ("stopped", State.STOPPED)]


def test_by_default_a_stop_waits_while_an_edge_is_attached(
    make_harness: Callable[..., Harness],
) -> None:
    runtime = FakeRuntime()
    h = make_harness(runtime=runtime, edge={"stop_grace_seconds": 1})
    _started(h)
    edges = EdgeRegistry(h.components.db, h.components.clock)
    edges.register("edge-host:1")
    seen, returned = _stop_observed(h, runtime)
    assert returned
    assert _states(seen) == [("stopping", State.RUNNING), ("stopped", State.STOPPED)]
    assert seen[1][2] - seen[0][2] >= 1  # the grace was waited


def test_an_edge_that_stopped_no_longer_holds_stops(make_harness: Callable[..., Harness]) -> None:
    runtime = FakeRuntime()
    h = make_harness(runtime=runtime, edge={"stop_grace_seconds": LONGEST})
    edges = EdgeRegistry(h.components.db, h.components.clock)
    edges.register("edge-host:1")
    edges.release("edge-host:1")  # `edge run` stopped: nginx exited, then it unregistered
    _started(h)
    seen, returned = _stop_observed(h, runtime)
    assert returned  # the 60 s grace was not waited
    assert _states(seen)[-1] == ("stopped", State.STOPPED)


def test_an_edge_that_stopped_renewing_counts_until_its_registration_expires(
    make_harness: Callable[..., Harness],
) -> None:
    clock = FakeClock()
    runtime = FakeRuntime()
    h = make_harness(clock=clock, runtime=runtime, edge={"stop_grace_seconds": LONGEST})
    edges = EdgeRegistry(h.components.db, clock)
    edges.register("edge-host:2")
    clock.advance(EDGE_TTL_SECONDS - 1)
    assert [e.holder for e in edges.attached()] == ["edge-host:2"]
    clock.advance(2)  # its supervisor died: no renewal since
    assert edges.attached() == []
    _started(h)
    seen, returned = _stop_observed(h, runtime)
    assert returned  # the 60 s grace was not waited
    assert _states(seen)[-1] == ("stopped", State.STOPPED)


def test_a_grace_that_cannot_ask_waits() -> None:
    def database_away() -> bool:
        raise ConnectionError("database away")

    assert StopGrace(3, database_away).wanted()
    assert not StopGrace(3, lambda: False).wanted()


def test_an_edge_leaving_during_the_grace_ends_the_wait(
    make_harness: Callable[..., Harness],
) -> None:
    runtime = FakeRuntime()
    h = make_harness(runtime=runtime, edge={"stop_grace_seconds": LONGEST})
    _started(h)
    edges = EdgeRegistry(h.components.db, h.components.clock)
    edges.register("edge-host:3")
    stopping = threading.Event()
    h.components.services.on_change(
        lambda name, view: stopping.set() if view and view.state == "stopping" else None
    )
    stop = threading.Thread(
        target=h.components.services.stop, args=(ADMIN, "app", CONTEXT), daemon=True
    )
    stop.start()
    assert stopping.wait(JOIN_SECONDS)
    assert stop.is_alive()  # waiting the grace: the edge is attached
    assert runtime.status(h.components.services.get("app").container_ref or "").state == (
        State.RUNNING
    )
    edges.release("edge-host:3")  # its nginx exited: no route left to drop
    stop.join(JOIN_SECONDS)
    assert not stop.is_alive()  # well before the 60 s grace
    assert h.components.services.get("app").state == "stopped"
