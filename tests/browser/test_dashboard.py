"""The services page in Chromium, as the people who run services use it: sign in with a TOTP code,
see the list, wake a real container from its button and watch the phase change in place, find it
by search and filter, stop it, watch an idle one go back to sleep; a viewer finds no button and
a forged stop is refused. Zero CSP violations are reported (the counter the CSP report endpoint
keeps), axe-core finds no serious or critical accessibility violation, and screenshots at 390 and
1440 px are saved.

The real `wakedock serve` over HTTPS, the real Docker engine (the Python test app, slow to listen
so that the waking phase shows), Debian's Chromium.
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
    enrol_by_api,
    next_code,
    sign_in_with_code,
    sign_in_with_password,
    site_url,
    text,
)
from support.engine import AddApp, container_of, wait_for
from support.login import access_token, bearer
from support.server import WakeDockProcess

pytestmark = pytest.mark.integration


def csp_violations(server: WakeDockProcess, token: str) -> int:
    """`wakedock_csp_violations_total` of /metrics: what browsers reported to /csp-report."""
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
        metrics = http.get("/metrics", headers=bearer(token))
        assert metrics.status_code == 200, metrics.text
    name = "wakedock_csp_violations_total "
    [line] = [x for x in metrics.text.splitlines() if x.startswith(name)]
    return int(line.split()[1])


def metrics_token(server: WakeDockProcess, name: str, password: str) -> str:
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
        return access_token(http, name, password)


def cell(page: Any, service: str, field: str) -> Any:
    return page.locator(f'tr[data-service="{service}"] [data-field="{field}"]')


def running(engine: docker.DockerClient, installation: str, name: str) -> bool:
    container = container_of(engine, installation, name)
    container.reload()
    return bool(container.status == "running")


def started_at(engine: docker.DockerClient, installation: str, name: str) -> str:
    container = container_of(engine, installation, name)
    return str(container.attrs["State"]["StartedAt"])


def keyboard_path(page: Any, presses: int) -> list[str]:
    """What Tab reaches, in order, from the top of the page: each control's accessible name
    (its text, or its label's)."""
    # The first Tab of a fresh page lands on the skip link; start there (a click moved the
    # browser's starting point of sequential focus).
    page.locator(".skip").focus()
    reached = []
    for step in range(presses):
        if step:
            page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                """() => { const e = document.activeElement;
                   const label = e.labels && e.labels.length ? e.labels[0].innerText : '';
                   return (label || e.innerText || '').replace(/\\s+/g, ' ').trim(); }"""
            )
        )
    return reached


def test_the_services_page_wakes_and_stops_a_service_live(
    tmp_path: Path,
    certificate: BrowserCertificate,
    engine: docker.DockerClient,
    installation: str,
    add_app: AddApp,
    browser: Any,
    page: Any,
    shot: Shot,
) -> None:
    data = tmp_path / "data"
    env = {"WAKEDOCK_DOCKER__INSTALLATION": installation}
    # Slow to listen (3 s), so that the waking phase is there to see; no idle stop meanwhile.
    add_app(data, env, "app", {"NAME": "the team wiki", "DELAY": "3"}, display_name="Team wiki",
            idle_timeout_s=600)  # fmt: skip
    add_app(data, env, "blog", idle_timeout_s=600)
    add_app(data, env, "nap")  # stopped after 3 idle seconds
    operator = create_user(data, "olga", "operator")
    viewer = create_user(data, "vera", "viewer")
    watcher = create_user(data, "mona", "operator")  # reads /metrics; never signs in a browser
    with browser_server(data, certificate, env) as server:
        token = metrics_token(server, "mona", watcher)
        secret, _codes = enrol_by_api(server, "olga", operator)
        page.set_viewport_size(WIDE)

        # Signed out, the services page sends to sign-in, and comes back after the code step.
        page.goto(admin_url(server, "/services"))
        page.get_by_role("heading", name="Sign in").wait_for()
        sign_in_with_code(page, "olga", operator, next_code(secret))
        page.wait_for_url(admin_url(server, "/services"))
        page.get_by_role("heading", name="Services").wait_for()
        # The name leads to the service's page, the host beside it to the service.
        assert page.get_by_role("link", name="Team wiki").get_attribute("href") == "/services/app"
        assert page.get_by_role("link", name="app.localhost").get_attribute("href") == (
            site_url(server, "app.localhost")
        )
        assert cell(page, "app", "phase").inner_text() == "asleep"
        assert "0 of 20 awake" in text(page)
        check_accessibility(page, shot, "services-asleep")

        # Wake from the button: the phase changes in place, the page is never reloaded.
        page.evaluate("document.documentElement.dataset.probe = 'same page'")
        page.get_by_role("button", name="Wake app").click()
        phase = cell(page, "app", "phase")
        page.locator('tr[data-service="app"] [data-field="phase"][data-value="waking"]').wait_for()
        assert phase.inner_text() == "waking"
        shot("waking")
        page.locator('tr[data-service="app"] [data-field="phase"][data-value="ready"]').wait_for(
            timeout=60_000
        )
        assert phase.inner_text() == "ready"
        assert cell(page, "app", "state").inner_text() == "running"
        assert cell(page, "app", "time_to_ready_s").inner_text().endswith(" s")
        assert page.get_by_role("status").inner_text() == "Waking app."
        assert page.evaluate("document.documentElement.dataset.probe") == "same page"
        page.locator("[data-awake]", has_text="1").wait_for()
        assert running(engine, installation, "app")
        check_accessibility(page, shot, "services-awake", dark=True)
        assert keyboard_path(page, 15) == [
            "Skip to content", "WakeDock", "Services", "Account", "Sign out", "New service",
            "Search", "State", "Filter", "Team wiki", "app.localhost", "Wake app", "Stop app",
            "Restart app", "Edit app",
        ]  # fmt: skip

        # Restart: the container is started again (a new start time), and the page is back at
        # ready by itself.
        started = started_at(engine, installation, "app")
        page.get_by_role("button", name="Restart app").click()
        wait_for(lambda: started_at(engine, installation, "app") != started, "a new start")
        page.locator('tr[data-service="app"] [data-field="phase"][data-value="ready"]').wait_for(
            timeout=60_000
        )
        assert page.get_by_role("status").inner_text() == "Waking app."
        assert page.evaluate("document.documentElement.dataset.probe") == "same page"

        # Search narrows as one types; the state filter asks the server.
        page.get_by_label("Search").fill("wiki")
        assert page.locator('tr[data-service="blog"]').is_hidden()
        assert page.locator('tr[data-service="app"]').is_visible()
        page.get_by_label("Search").fill("")
        page.get_by_label("State").select_option("stopped")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**/services?q=&state=stopped")
        assert page.locator('tr[data-service="app"]').count() == 0
        assert page.locator('tr[data-service="blog"]').is_visible()
        page.goto(admin_url(server, "/services"))

        # Stop from the button: asleep again, in place.
        page.evaluate("document.documentElement.dataset.probe = 'same page'")
        page.get_by_role("button", name="Stop app").click()
        page.locator('tr[data-service="app"] [data-field="state"][data-value="stopped"]').wait_for()
        assert phase.inner_text() == "asleep"
        assert page.evaluate("document.documentElement.dataset.probe") == "same page"
        assert not running(engine, installation, "app")
        shot("stopped")

        # A service nobody uses goes back to sleep by itself, and the page shows it.
        page.get_by_role("button", name="Wake nap").click()
        nap = 'tr[data-service="nap"] [data-field="phase"]'
        page.locator(f'{nap}[data-value="ready"]').wait_for(timeout=60_000)
        assert running(engine, installation, "nap")
        page.locator(f'{nap}[data-value="asleep"]').wait_for(timeout=60_000)
        assert cell(page, "nap", "state").inner_text() == "stopped"
        assert cell(page, "nap", "last_activity").inner_text() != "never"
        assert not running(engine, installation, "nap")
        assert page.evaluate("document.documentElement.dataset.probe") == "same page"
        shot("back-to-sleep")

        # A viewer: the list, no button; a forged stop (with and without the CSRF token) refused.
        page.get_by_role("button", name="Wake app").click()
        page.locator('tr[data-service="app"] [data-field="phase"][data-value="ready"]').wait_for(
            timeout=60_000
        )
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in").wait_for()
        page.goto(admin_url(server, "/services"))
        sign_in_with_password(page, "vera", viewer)
        page.wait_for_url(admin_url(server, "/services"))
        assert page.get_by_role("link", name="Team wiki").is_visible()
        for action in ("Wake", "Stop", "Restart"):
            assert page.get_by_role("button", name=f"{action} app").count() == 0
        check_accessibility(page, shot, "services-viewer")
        forged = page.evaluate(
            """async () => {
                const token = document.querySelector('input[name="csrf_token"]').value;
                const post = (body) => fetch('/services/app/stop', {method: 'POST', body,
                    headers: {Accept: 'application/json'}}).then(async (r) => [r.status,
                    (await r.json().catch(() => ({}))).code || null]);
                return [await post(new URLSearchParams({csrf_token: token})),
                        await post(new URLSearchParams({}))];
            }"""
        )
        assert forged == [[403, "permission_denied"], [403, "csrf_failed"]]
        assert running(engine, installation, "app")

        # Nothing the pages did was refused by their CSP. The counter can move: an inline
        # script (which the CSP forbids) is reported and counted.
        assert csp_violations(server, token) == 0
        page.evaluate(
            """() => { const s = document.createElement('script');
                       s.textContent = 'window.injected = true'; document.body.append(s); }"""
        )
        wait_for(lambda: csp_violations(server, token) == 1, "the CSP report of the inline script")
        assert page.evaluate("window.injected === undefined")
