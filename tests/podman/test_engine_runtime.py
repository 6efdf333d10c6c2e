"""WakeDock's Docker Engine runtime on Podman: the engine integration tests
(tests/integration/test_docker_engine.py) run again with the runtime's engine URL pointed at
`podman system service`'s socket, and `engine` (the tests' own look-ups) on it too."""

from __future__ import annotations

import pytest

from integration.test_docker_engine import (
    test_launch_is_hardened_in_docker_inspect,
    test_lifecycle_stop_pause_start_remove,
    test_missing_image_is_refused_without_repeating_it,
    test_opted_in_container_is_managed,
    test_unmanaged_container_is_never_touched,
)
from support.podman import Podman
from wakedock.runtime.docker_engine import DockerEngineRuntime

pytestmark = pytest.mark.integration

__all__ = [
    "test_launch_is_hardened_in_docker_inspect",
    "test_lifecycle_stop_pause_start_remove",
    "test_missing_image_is_refused_without_repeating_it",
    "test_opted_in_container_is_managed",
    "test_unmanaged_container_is_never_touched",
]


@pytest.fixture
def runtime(podman: Podman, installation: str) -> DockerEngineRuntime:
    """The runtime under test, with only Podman's socket."""
    return DockerEngineRuntime(base_url=podman.url, installation=installation)
