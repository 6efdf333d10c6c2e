"""The admin host's HTML pages driven with a TestClient as a browser would: same-origin form
posts, the hidden fields of a page, the two sign-in steps, and the audit rows they leave."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import CLIENT_IP, Harness
from wakedock.audit.models import AuditEvent
from wakedock.rbac.permissions import Role

HERE = "https://testserver"
# What Chromium sends with a form posted from one of the admin host's own pages.
SAME_ORIGIN = {"Origin": HERE, "Sec-Fetch-Site": "same-origin"}


def page_client(h: Harness, port: int) -> TestClient:
    """A browser of its own (cookies, client address port): redirects are seen, not followed."""
    return TestClient(h.app, base_url=HERE, client=(CLIENT_IP, port), follow_redirects=False)


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden field {name}"
    return found.group(1)


def events(h: Harness, type_: str) -> list[AuditEvent]:
    with h.components.db() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == type_)).scalars())


def with_mfa(h: Harness, username: str, role: Role = Role.VIEWER) -> tuple[str, str]:
    """A user who has enrolled MFA (through the API): its name and password."""
    name, password = h.create_user(username, role)
    token = h.login(name, password, enrol=False)["access_token"]
    h.enrol_mfa(name, token)
    return name, password


def password_step(browser: TestClient, name: str, password: str, next_path: str = "/") -> Any:
    """The sign-in form posted, as its page does."""
    return browser.post(
        "/login",
        data={"username": name, "password": password, "next": next_path},
        headers=SAME_ORIGIN,
    )


def code_step(browser: TestClient, challenge: str, code: str, next_path: str = "/") -> Any:
    """The code form posted with the challenge the password step's page carried."""
    return browser.post(
        "/login/code",
        data={"challenge": challenge, "code": code, "next": next_path},
        headers=SAME_ORIGIN,
    )
