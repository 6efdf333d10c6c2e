"""The admin console's pages in process: the dashboard's harness (an in-memory runtime,
SQLite) and signed-in browsers of each role; admins sign in with their TOTP code, as their
role demands."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from dashboard.conftest import database_url, h, runtime
from support.pages import code_step, hidden, page_client, password_step, with_mfa
from wakedock.rbac.permissions import Role

__all__ = ["Console", "SignIn", "database_url", "h", "runtime", "signed_in"]

SignIn = Callable[[Role], "Console"]


class Console:
    """A signed-in browser: its user's name, and the CSRF token its pages carry."""

    def __init__(self, browser: TestClient, username: str, csrf: str) -> None:
        self.browser = browser
        self.username = username
        self.csrf = csrf


@pytest.fixture
def signed_in(h: Harness) -> SignIn:
    """`signed_in(role)`: a browser of its own with a session of a new user of `role`; an admin
    has enrolled MFA and passed the code step."""
    ports = iter(range(50400, 50600))

    def sign_in(role: Role) -> Console:
        port = next(ports)
        if role is Role.ADMIN:
            name, password = with_mfa(h, f"{role.value}-{port}", role)
        else:
            name, password = h.create_user(f"{role.value}-{port}", role)
        browser = page_client(h, port)
        answer = password_step(browser, name, password, "/services")
        if answer.status_code == 200 and 'name="challenge"' in answer.text:
            answer = code_step(
                browser, hidden(answer.text, "challenge"), h.totp_code(name), "/services"
            )
        assert answer.status_code == 303, answer.text
        page = browser.get("/services")
        assert page.status_code == 200, page.text
        return Console(browser, name, hidden(page.text, "csrf_token"))

    return sign_in
