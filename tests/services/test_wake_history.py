"""The wake history behind the service page's time-to-ready chart: bounded per service, on
SQLite and PostgreSQL (its trim is one DELETE with a LIMITed subquery)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service
from wakedock.services.wake_history import WakeHistory


def test_the_history_keeps_the_last_wakes_of_each_service(
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(runtime=FakeRuntime())
    add_service(h, "app")
    add_service(h, "blog")
    app, blog = (h.components.services.get(n).id for n in ("app", "blog"))
    history = WakeHistory(h.components.db, keep=5)
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    for n in range(8):
        history.record(app, float(n), at + timedelta(seconds=n))
    history.record(blog, 9.5, at)
    recent = history.recent(app)
    assert [w.seconds for w in recent] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert recent[0].ready_at == at + timedelta(seconds=3)
    assert [w.seconds for w in history.recent(blog)] == [9.5]
