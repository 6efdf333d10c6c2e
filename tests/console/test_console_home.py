"""`/admin`, the console's home: admins only, a card per page, the header's link."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.pages import events, page_client
from wakedock.console.routes.index import SECTIONS
from wakedock.rbac.permissions import Role

from .conftest import SignIn


def test_an_admin_sees_every_console_page_and_the_header_links_there(signed_in: SignIn) -> None:
    browser = signed_in(Role.ADMIN).browser
    home = browser.get("/admin")
    assert home.status_code == 200, home.text
    assert home.headers["cache-control"] == "no-store"
    for section in SECTIONS:
        assert f'<a href="{section.path}">{section.title}</a>' in home.text
    assert '<a href="/admin" aria-current="page">Admin</a>' in home.text
    services = browser.get("/services")
    assert '<a href="/admin">Admin</a>' in services.text


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.DEVELOPER, Role.VIEWER])
def test_other_roles_get_a_403_page_and_no_link(signed_in: SignIn, h: Harness, role: Role) -> None:
    browser = signed_in(role).browser
    refused = browser.get("/admin")
    assert refused.status_code == 403
    assert "Only administrators may open the admin console." in refused.text
    assert "Users and roles" not in refused.text
    assert 'href="/admin"' not in browser.get("/services").text
    assert 'href="/admin"' not in browser.get("/account").text
    denied = events(h, "forbidden_access")
    assert denied and "console:read" in str(denied[-1].details)


def test_without_a_session_the_console_sends_to_sign_in_then_back(h: Harness) -> None:
    browser: TestClient = page_client(h, 50300)
    answer = browser.get("/admin", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login")
    assert "next=%2Fadmin" in answer.headers["location"]
