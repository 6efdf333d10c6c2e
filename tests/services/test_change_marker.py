"""The services' change marker (`edge run` polls it to reload nginx at once): it moves when a
service is created, started, stopped or deleted, and holds still otherwise."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from support.fake_runtime import FakeRuntime
from support.proxy import add_service
from wakedock.clock import FakeClock
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.rbac.permissions import Role
from wakedock.runtime.base import State
from wakedock.services.models import Service
from wakedock.services.snapshots import Actor


def test_the_marker_moves_with_every_change_and_only_then(make_harness: Any) -> None:
    clock = FakeClock()
    h = make_harness(clock=clock, runtime=FakeRuntime())
    services = h.components.services
    actor, context = Actor("test", Role.ADMIN), RequestContext(actor="test")
    seen = [services.change_marker()]

    def moved() -> bool:
        clock.advance(1)
        seen.append(services.change_marker())
        return seen[-1] != seen[-2]

    assert not moved()
    add_service(h, "wiki")
    assert moved()
    services.start(actor, "wiki", context)
    assert moved()
    assert not moved()
    services.stop(actor, "wiki", context)
    assert moved()
    # The reconciler finding it running (started outside WakeDock) changes its state only.
    with transaction(h.components.db) as db:
        db.execute(update(Service).values(state=State.RUNNING.value))
    assert moved()
    services.delete(actor, "wiki", context)
    assert moved()
