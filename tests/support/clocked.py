"""A harness whose clock the test moves (token expiry, TOTP steps, setups running out) instead of
sleeping: the fixtures `clock` and `h`. A module takes them by importing them
(`from support.clocked import clock, h  # noqa: F401 - fixtures`); one that needs another clock
defines its own `clock` fixture, which `h` then uses."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import Harness
from wakedock.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(make_harness: Callable[..., Harness], clock: FakeClock) -> Harness:
    return make_harness(clock=clock)
