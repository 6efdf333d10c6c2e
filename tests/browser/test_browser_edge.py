"""The Chromium tests' edge of WAKEDOCK_TEST_THROUGH_EDGE=1 (support/browser_edge.py), here
always on: Chromium's requests really cross nginx + ModSecurity + OWASP CRS to the test's
`wakedock serve`, the `__Host-` session cookie and the CSRF-checked forms work through it on
URLs without a port, and a browser test one of whose requests the WAF refused fails, naming the
rules (what keeps that pass honest).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.browser import (
    BrowserCertificate,
    Shot,
    admin_url,
    browser_server,
    create_user,
    sign_in_with_password,
    text,
)
from support.browser_edge import EdgeSlot, edge_slot_for_test

pytestmark = [pytest.mark.integration, pytest.mark.security]


@pytest.fixture
def edge_slot() -> Iterator[EdgeSlot | None]:
    """conftest.py's, wanted whatever the environment says."""
    with edge_slot_for_test(wanted=True) as slot:
        yield slot


def sign_in_then_send_markup(
    data: Path, certificate: BrowserCertificate, page: Any, shot: Shot, password: str
) -> None:
    """A sign-in and a page through the edge, then a request the CRS refuses."""
    with browser_server(data, certificate) as server:
        # Signed in (a form with its CSRF token, then the session cookie) on URLs with no port:
        # the edge's (Chromium resolves localhost to it), not the server's.
        assert admin_url(server, "/") == "https://localhost/"
        answer = page.goto(admin_url(server, "/login?next=/api/v1/auth/me"))
        assert answer is not None and answer.headers["server"] == "nginx"
        sign_in_with_password(page, "wanda", password)
        page.wait_for_url(admin_url(server, "/api/v1/auth/me"))
        assert '"username":"wanda"' in text(page)
        [cookie] = page.context.cookies()
        assert cookie["name"].startswith("__Host-")
        assert (cookie["domain"], cookie["path"], cookie["secure"]) == ("localhost", "/", True)
        shot("signed-in-through-the-edge")

        # Markup in `next`: WakeDock would escape it, the CRS refuses it first.
        refused = page.goto(admin_url(server, "/login?next=<script>alert(1)</script>"))
        assert refused is not None and refused.status == 403
        assert refused.headers["server"] == "nginx"


def test_chromium_through_the_edge_and_a_waf_refusal_fails_the_test(
    tmp_path: Path, certificate: BrowserCertificate, edge_slot: EdgeSlot, page: Any, shot: Shot
) -> None:
    data = tmp_path / "data"
    password = create_user(data, "wanda", "viewer")
    with pytest.raises(pytest.fail.Exception) as failed:
        sign_in_then_send_markup(data, certificate, page, shot, password)
    report = str(failed.value)
    assert report.startswith("the WAF refused or scored requests of this test")
    assert "403 GET localhost /login?next=" in report
    assert "941100" in report  # XSS Attack Detected via libinjection
    assert "/api/v1/auth/me" not in report  # what passed is not reported
