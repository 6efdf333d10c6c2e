"""A service's custom loading page in Chromium: uploaded through the files API, chosen in the spec,
seen by a visitor of the sleeping service (its inline script stopped by the CSP, the page still
polling and reloading into the app), and previewed from the dashboard in each theme, at 390 and
1440 px, axe-core finding nothing serious. The real `wakedock serve`, Docker engine, container.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from support.axe import WIDE, check_accessibility
from support.browser import (
    BrowserCertificate,
    Shot,
    admin_url,
    browser_server,
    create_user,
    sign_in_with_password,
    site_url,
    text,
)
from support.engine import AddApp
from support.login import access_token, bearer
from support.server import WakeDockProcess

pytestmark = pytest.mark.integration

# The template's inline script would replace this text; the CSP must keep it from running.
TEMPLATE = b"""\
<main>
<h1>{{ display_name }} is on its way</h1>
<progress id="progress" max="100" value="{{ progress }}" aria-label="Progress"></progress>
<p id="note">Hold on, this page follows the wake by itself.</p>
<p id="injected">No inline script ran.</p>
<script>document.getElementById("injected").textContent = "INLINE SCRIPT RAN";</script>
</main>
"""


def running(engine: docker.DockerClient, installation: str) -> bool:
    return any(
        c.status == "running"
        for c in engine.containers.list(
            all=True, filters={"label": f"wakedock.managed={installation}"}
        )
    )


def choose(server: WakeDockProcess, token: str, loading_page: dict[str, str]) -> None:
    """PATCH the service's `loading_page` through the API, as its manager would."""
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
        [service] = http.get("/api/v1/services", headers=bearer(token)).json()
        answer = http.patch(
            f"/api/v1/services/{service['id']}",
            json={"loading_page": loading_page},
            headers=bearer(token),
        )
        assert answer.status_code == 200, answer.text


def test_a_custom_loading_page_then_the_app_and_every_themes_preview(
    tmp_path: Path,
    certificate: BrowserCertificate,
    engine: docker.DockerClient,
    installation: str,
    add_app: AddApp,
    page: Any,
    shot: Shot,
) -> None:
    data = tmp_path / "data"
    env = {"WAKEDOCK_DOCKER__INSTALLATION": installation}
    # Slow to listen, so that the loading page is there to see; no idle stop meanwhile.
    add_app(data, env, "app", {"NAME": "the team wiki", "DELAY": "3"}, display_name="Team wiki",
            idle_timeout_s=600)  # fmt: skip
    password = create_user(data, "olga", "operator")
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    with browser_server(data, certificate, env) as server:
        with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
            token = access_token(http, "olga", password)
            put = http.put(
                "/api/v1/files/app/loading.html", content=TEMPLATE, headers=bearer(token)
            )
            assert put.status_code == 200, put.text
        choose(server, token, {"theme": "custom", "template": "app/loading.html"})
        page.set_viewport_size(WIDE)

        # A visitor of the sleeping service gets the custom page; its inline script is refused.
        service = site_url(server, "app.localhost")
        page.goto(service)
        page.get_by_role("heading", name="Team wiki is on its way").wait_for()
        assert page.locator("#injected").inner_text() == "No inline script ran."
        assert any("script-src 'self'" in message for message in refused), refused
        shot("custom-loading-page")
        # WakeDock's own script still runs: it follows the wake and reloads into the app.
        page.get_by_text("hello from the team wiki").wait_for(timeout=60_000)
        assert page.url == service
        assert running(engine, installation)
        shot("the-app")

        # The preview on the dashboard, signed in, from the service's page: each theme, woken
        # by nothing.
        page.goto(admin_url(server, "/services/app"))
        page.get_by_role("heading", name="Sign in").wait_for()
        sign_in_with_password(page, "olga", password)
        assert "(custom theme)" in text(page)
        page.get_by_role("link", name="Loading page preview of app").click()
        page.get_by_role("heading", name="Team wiki is on its way").wait_for()
        assert "Preview of the custom loading page of Team wiki" in text(page)
        assert page.locator("#injected").inner_text() == "No inline script ran."
        check_accessibility(page, shot, "preview-custom")

        choose(server, token, {"theme": "dark"})
        page.reload()
        page.get_by_role("heading", name="Starting Team wiki…").wait_for()
        assert "Preview of the dark loading page" in text(page)
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == (
            "rgb(22, 24, 29)"
        )
        check_accessibility(page, shot, "preview-dark")

        choose(server, token, {"theme": "default"})
        page.reload()
        assert "Preview of the built-in loading page" in text(page)
        check_accessibility(page, shot, "preview-built-in", dark=True)
        page.get_by_role("link", name="Back to the services").click()
        page.get_by_role("heading", name="Services").wait_for()
