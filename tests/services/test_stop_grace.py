"""The stop grace of the edge's direct routes (edge.stop_grace_seconds): a stop first stores the
service as stopping (the edge drops its route), waits, and only then stops the container."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role
from wakedock.runtime.base import State
from wakedock.services.snapshots import Actor, ServiceView
from wakedock.services.spec import ServiceSpec

ADMIN = Actor("test", Role.ADMIN)
CONTEXT = RequestContext(actor="test")


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


def _stop_observed(h: Harness, runtime: FakeRuntime) -> tuple[list[tuple[str, State]], float]:
    """Each state stored during a stop, with the container's state at that moment."""
    seen: list[tuple[str, State]] = []

    def changed(name: str, view: ServiceView | None) -> None:
        assert view is not None and view.container_ref is not None
        seen.append((view.state, runtime.status(view.container_ref).state))

    h.components.services.on_change(changed)
    started = time.monotonic()
    h.components.services.stop(ADMIN, "app", CONTEXT)
    return seen, time.monotonic() - started


def test_with_direct_routes_the_route_goes_before_the_container(
    make_harness: Callable[..., Harness],
) -> None:
    runtime = FakeRuntime()
    h = make_harness(runtime=runtime, edge={"direct_routes": True, "stop_grace_seconds": 0.5})
    _started(h)
    seen, took = _stop_observed(h, runtime)
    assert seen == [("stopping", State.RUNNING), ("stopped", State.STOPPED)]
    assert took >= 0.5


def test_without_direct_routes_a_stop_does_not_wait(make_harness: Callable[..., Harness]) -> None:
    runtime = FakeRuntime()
    h = make_harness(runtime=runtime, edge={"stop_grace_seconds": 5})
    _started(h)
    seen, took = _stop_observed(h, runtime)
    assert seen == [("stopped", State.STOPPED)]
    assert took < 5
