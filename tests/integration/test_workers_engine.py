"""`wakedock serve` with two worker processes on loopback, the real Docker engine, a real app,
Redis for the attempt budgets: the connections spread over both workers, a burst wakes the
service once, traffic on either worker keeps it awake and the leader stops it once, and a
killed worker is replaced while the service keeps answering."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from docker import DockerClient

from support.components import RedisServer
from support.engine import AddApp, container_of, wait_for
from support.server import WakeDockProcess, wakedock_server
from support.workers import (
    WORKERS_START,
    connection_per_worker,
    connections_by_worker,
    wait_workers,
    workers_of,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env(installation: str, redis_server: RedisServer) -> Iterator[dict[str, str]]:
    yield {
        "WAKEDOCK_DOCKER__INSTALLATION": installation,
        "WAKEDOCK_PROXY__REAPER_INTERVAL_SECONDS": "0.5",
        "WAKEDOCK_SERVER__WORKERS": "2",
        "WAKEDOCK_SERVER__KEEP_ALIVE_TIMEOUT_SECONDS": "120",
        "WAKEDOCK_RATE_LIMIT__STORAGE_URL": redis_server.url,
    }
    redis_server.flush()


def two_workers(server: WakeDockProcess) -> list[int]:
    return wait_workers(server, 2)


def stops(data: Path, name: str) -> list[str]:
    with sqlite3.connect(data / "wakedock.db") as db:
        rows = db.execute(
            "SELECT details FROM audit_events WHERE type = 'service_stop' AND target = ?", (name,)
        )
        return [r[0] for r in rows]


def visit(server: WakeDockProcess, conn: http.client.HTTPSConnection, host: str) -> str:
    conn.request("GET", "/", headers={"Host": host})
    reply = conn.getresponse()
    body = reply.read().decode()
    assert reply.status == 200, body
    return body


def test_a_burst_over_two_workers_starts_the_container_once(
    data: Path, env: dict[str, str], add_app: AddApp, engine: DockerClient, installation: str
) -> None:
    add_app(data, env, "burst", {"NAME": "burst"}, idle_timeout_s=600)
    ref = container_of(engine, installation, "burst").id
    with wakedock_server(data, env=env, ready_timeout=WORKERS_START) as server:
        workers = two_workers(server)
        since = int(time.time()) - 1

        async def burst() -> tuple[list[httpx.Response], dict[int, set[int]]]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(
                base_url=server.base_url, verify=server.ssl_context(), timeout=90, limits=limits
            ) as http:
                replies = await asyncio.gather(
                    *(http.get("/", headers={"Host": "burst.localhost"}) for _ in range(200))
                )
                # Still open in the client's pool: which worker accepted each.
                return replies, connections_by_worker(workers, server.port)

        replies, spread = asyncio.run(burst())
        until = int(time.time()) + 1
    events = engine.api.events(
        since=since, until=until, decode=True, filters={"type": "container", "container": ref}
    )
    starts = [e for e in events if e.get("status") == "start" or e.get("Action") == "start"]
    assert len(starts) == 1
    assert all(r.status_code == 200 and r.text == "hello from burst\n" for r in replies)
    assert all(spread[pid] for pid in workers), spread  # both workers served connections


def test_traffic_on_either_worker_keeps_the_service_awake_and_the_leader_stops_it_once(
    data: Path, env: dict[str, str], add_app: AddApp, engine: DockerClient, installation: str
) -> None:
    add_app(data, env, "idle", {"NAME": "idle"}, idle_timeout_s=4)
    with wakedock_server(data, env=env, ready_timeout=WORKERS_START) as server:
        workers = two_workers(server)
        conns = connection_per_worker(server, workers, "idle.localhost")
        # Six seconds of requests through one worker only, then six through the other: the
        # leader is one of them, so for six seconds (longer than the idle timeout) it sees no
        # traffic of its own and must count the other worker's.
        for pid in workers:
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                assert visit(server, conns[pid], "idle.localhost") == "hello from idle\n"
                time.sleep(0.5)
            assert container_of(engine, installation, "idle").status == "running"
        assert stops(data, "idle") == []
        for conn in conns.values():
            conn.close()
        wait_for(
            lambda: container_of(engine, installation, "idle").status == "exited",
            "the idle stop by the leader",
            30,
        )
        time.sleep(2)  # a second stop would come within a few reaper passes
        assert len(stops(data, "idle")) == 1


def test_a_killed_worker_is_replaced_and_the_service_keeps_answering(
    data: Path, env: dict[str, str], add_app: AddApp
) -> None:
    add_app(data, env, "steady", {"NAME": "steady"}, idle_timeout_s=600)
    with wakedock_server(data, env=env, ready_timeout=WORKERS_START) as server:
        workers = two_workers(server)
        verify = server.ssl_context()
        with httpx.Client(base_url=server.base_url, verify=verify, timeout=60) as http:
            assert http.get("/", headers={"Host": "steady.localhost"}).status_code == 200
        os.kill(workers[0], signal.SIGKILL)
        answered = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            # A new connection each time: the kernel hands it to a live worker.
            with httpx.Client(base_url=server.base_url, verify=verify, timeout=60) as http:
                reply = http.get("/", headers={"Host": "steady.localhost"})
            assert reply.status_code == 200 and reply.text == "hello from steady\n"
            answered += 1
        assert answered > 0
        replaced = wait_workers(server, 2)
        assert workers[0] not in replaced and workers[1] in replaced
        with httpx.Client(base_url=server.base_url, verify=verify, timeout=60) as http:
            assert http.get("/api/v1/health/live").status_code == 200
        parent = server.process.pid
        server.stop()  # SIGTERM: the parent stops its workers gracefully, then exits
        assert server.process.returncode == 0
        assert workers_of(parent) == []
        for pid in replaced:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
