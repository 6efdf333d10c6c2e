"""The dashboard's pages in process: the app, an in-memory runtime (the services layer is
what these pages call; the real engine is tests/browser/test_dashboard.py's), signed-in
browsers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.pages import hidden, page_client, password_step
from support.proxy import add_service
from wakedock.rbac.permissions import Role


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # Pages over the services layer the API tests cover on both backends: SQLite is enough.
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    harness = make_harness(runtime=runtime)
    add_service(harness, "app", display_name="Team wiki")
    add_service(harness, "blog")
    return harness


SignIn = Callable[[Role], tuple[TestClient, str]]


@pytest.fixture
def signed_in(h: Harness) -> SignIn:
    """`signed_in(role)`: a browser of its own with a session of a new user of `role` (no MFA
    demanded of it), and the CSRF token its pages carry."""
    ports = iter(range(50100, 50200))

    def sign_in(role: Role) -> tuple[TestClient, str]:
        name, password = h.create_user(f"{role.value}-{next(ports)}", role)
        browser = page_client(h, next(ports))
        answer = password_step(browser, name, password, "/services")
        assert answer.status_code == 303, answer.text
        page = browser.get("/services")
        assert page.status_code == 200, page.text
        return browser, hidden(page.text, "csrf_token")

    return sign_in
