"""The Account page driven as a browser would (TestClient): sign in through the forms (with the
code step for an account with MFA), read the page, post its forms with the page's CSRF token."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from conftest import Harness
from support.pages import SAME_ORIGIN, code_step, hidden, page_client, password_step

ACCOUNT = "/account"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def signed_in(h: Harness, name: str, password: str, port: int, agent: str = FIREFOX) -> TestClient:
    """A browser of its own, signed in through the sign-in form (and code step) to /account."""
    browser = page_client(h, port)
    browser.headers["User-Agent"] = agent
    reply = password_step(browser, name, password, ACCOUNT)
    if reply.status_code == 200 and 'name="challenge"' in reply.text:
        reply = code_step(browser, hidden(reply.text, "challenge"), h.totp_code(name), ACCOUNT)
    assert reply.status_code == 303, reply.text
    assert reply.headers["location"] == ACCOUNT
    return browser


def page(browser: TestClient) -> str:
    shown = browser.get(ACCOUNT)
    assert shown.status_code == 200, shown.status_code
    return str(shown.text)


def post(browser: TestClient, path: str, **fields: str) -> Any:
    """A form of the page posted as its page does: same origin, the page's CSRF token."""
    token = hidden(page(browser), "csrf_token")
    return browser.post(path, data={"csrf_token": token, **fields}, headers=SAME_ORIGIN)


def session_ids(html: str) -> list[str]:
    """The sessions the page offers to revoke (every one but this one)."""
    return re.findall(r'name="session" value="([^"]+)"', html)


def field_errors(html: str, field_id: str) -> list[str]:
    """The problems listed next to one field (`<ul id="<field>-error">`)."""
    found = re.search(rf'<ul class="field-error" id="{field_id}-error">(.*?)</ul>', html, re.S)
    return re.findall(r"<li>(.*?)</li>", found.group(1)) if found else []


def signed_out(browser: TestClient) -> bool:
    """The browser's next request to the page is sent to sign in."""
    reply = browser.get(ACCOUNT)
    return reply.status_code == 303 and reply.headers["location"].startswith("/login")
