"""The services tests' harness: the app over an in-memory container runtime the test can read."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    return make_harness(runtime=runtime)
