"""The edge's activity socket (proxy/edge_activity.py): nginx's syslog lines of direct requests
touch the activity of the host's service, once per flush, and count as its requests; anything
else is ignored."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path

from wakedock.clock import FakeClock
from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.edge_activity import EdgeActivity, activity_socket, parse_host
from wakedock.services.snapshots import ServiceView
from wakedock.services.spec import ServiceSpec

# What nginx 1.22 sends for `access_log syslog:server=unix:...,nohostname,tag=wakedock_edge`.
LINE = b"<190>Dec  1 05:30:16 wakedock_edge: app.localhost"


def _view(name: str) -> ServiceView:
    now = datetime.now(UTC)
    spec = ServiceSpec.model_validate(
        {"name": name, "image": "nginx:1", "readiness": {"type": "tcp", "port": 80}}
    )
    return ServiceView(
        id=1, name=name, owner_id=None, source="api", spec=spec, writable_root_granted=False,
        runtime="engine", container_ref="c", state="running", stop_reason=None, created_at=now,
        updated_at=now, last_started_at=now, last_stopped_at=None,
    )  # fmt: skip


def test_nginx_lines_are_parsed_and_anything_else_ignored() -> None:
    assert parse_host(LINE) == "app.localhost"
    assert parse_host(b"<190>Dec  1 05:30:16 wakedock_edge: App.Localhost:8444") == "app.localhost"
    assert parse_host(b"<190>Dec  1 05:30:16 other: app.localhost") is None
    assert parse_host(b"<190>Dec  1 05:30:16 wakedock_edge: a b;c") is None
    assert parse_host(b"x" * 5000 + b" wakedock_edge: app.localhost") is None


def test_datagrams_touch_the_hosts_service_once_per_flush(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = ActivityTracker(clock)
    services = {"app.localhost": _view("app")}
    path = activity_socket(tmp_path)

    async def scenario() -> int:
        listener = EdgeActivity(path, services.get, tracker, flush_seconds=0.05)
        await listener.start()
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o660 if os.geteuid() == 0 else 0o600)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as nginx:
            for _ in range(3):
                nginx.sendto(LINE, str(path))
            nginx.sendto(b"<190>Dec  1 05:30:16 wakedock_edge: nobody.localhost", str(path))
            nginx.sendto(b"junk", str(path))
            await asyncio.sleep(0.3)
        touched = listener.touched
        await listener.stop()
        assert not path.exists()
        if os.geteuid() == 0:  # its own directory under /tmp, not left behind
            assert not path.parent.exists()
        return touched

    assert tracker.idle_seconds("app") is None  # never seen
    assert asyncio.run(scenario()) == 1  # three lines, one touch
    # ... and three requests in this minute of the service page's chart.
    assert tracker.requests_per_minute("app", 2) == [0, 3]
    clock.advance(10)
    assert tracker.idle_seconds("app") == 10


def test_without_an_edge_the_listener_runs_nothing(tmp_path: Path) -> None:
    # On by default (direct_routes: auto), in every server with or without an edge: idle, it is
    # a bound socket and no task; a line arms one flush, which leaves nothing running after it.
    tracker = ActivityTracker(FakeClock())
    path = activity_socket(tmp_path)

    async def scenario() -> None:
        before = len(asyncio.all_tasks())
        listener = EdgeActivity(
            path, {"app.localhost": _view("app")}.get, tracker, flush_seconds=0.05
        )
        await listener.start()
        assert len(asyncio.all_tasks()) == before
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as nginx:
            nginx.sendto(LINE, str(path))
        await asyncio.sleep(0.3)
        assert listener.touched == 1
        assert len(asyncio.all_tasks()) == before
        await listener.stop()

    asyncio.run(scenario())
