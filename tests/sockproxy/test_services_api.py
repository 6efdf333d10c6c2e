"""The services API on the real engine with WakeDock's runtime behind the socket proxy: the
integration tests of tests/integration/test_services_engine.py (create, start, healthy,
served, stop, remove, every hardening field in `docker inspect`; a labelled container
discovered and operated; a container removed by hand reconciled and recreated) again."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import Harness
from integration.test_services_engine import (
    test_container_removed_by_hand_is_reconciled_to_missing_then_recreated,
    test_labelled_container_is_discovered_and_operated,
    test_lifecycle_through_the_api_on_the_real_engine,
)
from support.engine import database_url
from support.socket_proxy import SocketProxy
from wakedock.runtime.docker_engine import DockerEngineRuntime

pytestmark = pytest.mark.integration

__all__ = [
    "database_url",
    "test_container_removed_by_hand_is_reconciled_to_missing_then_recreated",
    "test_labelled_container_is_discovered_and_operated",
    "test_lifecycle_through_the_api_on_the_real_engine",
]


@pytest.fixture
def h(make_harness: Callable[..., Harness], proxy: SocketProxy, installation: str) -> Harness:
    """The app in process; its runtime has only the proxy's socket."""
    runtime = DockerEngineRuntime(base_url=proxy.url, installation=installation)
    return make_harness(runtime=runtime, docker={"installation": installation})
