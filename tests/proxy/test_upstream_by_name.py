"""An endpoint that is a host name (a container's name on docker.network) is probed and proxied
to by name: the readiness probe and the upstream pool resolve it off the event loop. Here the
name is `localhost` and the upstream the local test app (the real engine's case, a container
name only Docker's DNS answers, needs WakeDock in a container: tests/integration covers the
name from a container on the network)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service, database_url, upstream_port  # noqa: F401 - fixtures
from wakedock.app import create_asgi


@pytest.fixture
def runtime(upstream_port: int) -> FakeRuntime:
    fake = FakeRuntime()
    fake.default_endpoint = ("localhost", upstream_port)
    return fake


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    return make_harness(runtime=runtime, proxy={"admin_hosts": ["localhost"]})


def test_a_service_reached_by_host_name_wakes_and_answers(h: Harness, runtime: FakeRuntime) -> None:
    add_service(h)
    with TestClient(create_asgi(h.components), base_url="https://app.localhost") as client:
        first = client.get("/")
        assert first.status_code == 200
        assert first.text == "hello from upstream\n"
        assert client.get("/").text == "hello from upstream\n"  # a pooled connection
    assert sum(1 for call, _ in runtime.calls if call == "start") == 1
