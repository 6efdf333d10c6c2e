"""The one-time first-admin setup token."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import Harness, strong_password
from wakedock.clock import FakeClock

pytestmark = pytest.mark.security


def _setup(harness: Harness, token: str, password: str, username: str = "root-admin") -> int:
    response = harness.client.post(
        "/api/v1/auth/setup",
        json={"token": token, "username": username, "password": password},
    )
    return response.status_code


def test_token_creates_one_admin_once(harness: Harness) -> None:
    token, _ = harness.components.setup.issue()
    assert _setup(harness, "wrong-" + token, strong_password()) == 403
    # A refused password does not spend the token.
    assert _setup(harness, token, "password123") == 400
    password = strong_password()
    assert _setup(harness, token, password) == 201
    assert harness.login("root-admin", password)["user"]["role"] == "admin"
    assert _setup(harness, token, strong_password(), "second") == 403


def test_token_expires_after_15_minutes(make_harness: Callable[..., Harness]) -> None:
    clock = FakeClock()
    harness = make_harness(clock=clock)
    token, _ = harness.components.setup.issue()
    clock.advance(15 * 60 + 1)
    assert _setup(harness, token, strong_password()) == 403


def test_token_is_useless_once_a_user_exists(harness: Harness) -> None:
    token, _ = harness.components.setup.issue()
    harness.create_user("existing")
    assert _setup(harness, token, strong_password()) == 403


def test_no_token_issued_means_no_setup(harness: Harness) -> None:
    assert _setup(harness, "", strong_password()) == 422
    assert _setup(harness, "anything", strong_password()) == 403
