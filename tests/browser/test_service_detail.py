"""A service's page in Chromium: from the services list to the page, wake it from its button and
see the phase, the time-to-ready bar and the CPU and memory lines arrive without a reload, read
the hardening the engine applied and the CIS checks, and watch the log tail grow as the service
is visited. A viewer reads the same page without a button or a log. Zero CSP violations are
reported, axe-core finds no serious or critical violation, screenshots at 390 and 1440 px.

The real `wakedock serve` over HTTPS, the real Docker engine (the Python test app, which logs
each request it serves), Debian's Chromium.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import docker
import pytest

from support.axe import check_accessibility
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
from support.engine import AddApp, container_of

from .test_dashboard import csp_violations, metrics_token

pytestmark = pytest.mark.integration

MARKER = "/seen-from-the-service-page"


def fact(page: Any, label: str) -> str:
    """The value of one of the page's label/value pairs."""
    found = page.locator(".hardening div", has=page.locator("dt", has_text=label)).locator("dd")
    return str(found.inner_text())


def test_a_services_page_shows_its_hardening_charts_and_live_log(
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
    add_app(data, env, "app", {"NAME": "the team wiki"}, display_name="Team wiki",
            idle_timeout_s=600)  # fmt: skip
    operator = create_user(data, "olga", "operator")
    viewer = create_user(data, "vera", "viewer")
    watcher = create_user(data, "mona", "operator")  # reads /metrics; never signs in a browser
    with browser_server(data, certificate, env) as server:
        token = metrics_token(server, "mona", watcher)
        secret, _codes = enrol_by_api(server, "olga", operator)
        page.set_viewport_size({"width": 1440, "height": 900})
        page.goto(admin_url(server, "/services"))
        sign_in_with_code(page, "olga", operator, next_code(secret))
        page.wait_for_url(admin_url(server, "/services"))

        # From the list to the service's page: the name leads there, the host beside it.
        host_link = page.get_by_role("link", name="app.localhost")
        assert host_link.get_attribute("href") == site_url(server, "app.localhost")
        page.get_by_role("link", name="Team wiki").click()
        page.wait_for_url(admin_url(server, "/services/app"))
        page.get_by_role("heading", name="Team wiki app").wait_for()
        assert "No wake recorded yet." in text(page)
        check_accessibility(page, shot, "detail-asleep")

        # Wake from its button: the phase, then the wake's bar and the usage lines, in place.
        page.evaluate("document.documentElement.dataset.probe = 'same page'")
        page.get_by_role("button", name="Wake app").click()
        page.get_by_role("status").filter(has_text="Waking app.").wait_for()
        page.locator('#live [data-field="phase"][data-value="ready"]').wait_for(timeout=60_000)
        page.locator("#chart-wakes rect.bar").first.wait_for(timeout=30_000)
        assert page.locator("#chart-wakes rect.bar").count() == 1
        wakes = page.locator("#chart-wakes .summary").inner_text()
        assert wakes.startswith("1 wake: the last took")
        page.locator("#chart-cpu polyline.line").wait_for(timeout=60_000)
        page.locator("#chart-memory polyline.line").wait_for(timeout=30_000)
        assert "of its 256 MiB limit" in page.locator("#chart-memory .summary").inner_text()
        assert page.evaluate("document.documentElement.dataset.probe") == "same page"

        # The hardening the engine applied, and the CIS checks (reload: read when the page is).
        page.reload()
        container = container_of(engine, installation, "app")
        assert fact(page, "Container") == container.name
        assert fact(page, "Capabilities dropped") == "ALL"
        assert fact(page, "Read-only root") == "yes"
        assert fact(page, "No new privileges") == "yes"
        assert fact(page, "Memory limit") == "256 MiB"
        ports = fact(page, "Published ports")
        assert ports.startswith("127.0.0.1:") and "loopback only" in ports
        assert "0 of 22 checks failed." in text(page)
        read_only = page.locator("table.cis tr", has=page.locator("td", has_text="5.13"))
        assert read_only.locator(".badge").inner_text() == "PASS"

        # The log tail grows while the service is visited, without a reload.
        page.evaluate("document.documentElement.dataset.probe = 'same page'")
        log = page.locator("#log-tail")
        assert MARKER not in log.inner_text()
        visitor = browser.new_page()
        visit = visitor.goto(site_url(server, "app.localhost", MARKER))
        assert visit is not None and visit.status == 404  # the app's answer, proxied
        visitor.close()
        page.locator("#log-tail", has_text=f"GET {MARKER}").wait_for(timeout=30_000)
        assert page.evaluate("document.documentElement.dataset.probe") == "same page"
        # The visit (and the browser's favicon request) counted in the requests per minute.
        proxied = re.compile(r"^[1-9][0-9]* requests? in the last 60 minutes")
        page.locator("#chart-requests .summary").filter(has_text=proxied).wait_for()
        assert page.locator("#chart-requests rect.bar").count() == 60
        check_accessibility(page, shot, "detail-awake", dark=True)

        # A viewer reads the page: no button, no log.
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in").wait_for()
        page.goto(admin_url(server, "/services/app"))
        sign_in_with_password(page, "vera", viewer)
        page.wait_for_url(admin_url(server, "/services/app"))
        page.get_by_role("heading", name="Hardening applied").wait_for()
        for action in ("Wake", "Stop", "Restart"):
            assert page.get_by_role("button", name=f"{action} app").count() == 0
        assert page.locator("#log-tail").count() == 0
        assert "Only the service's owner and operators read its logs." in text(page)
        check_accessibility(page, shot, "detail-viewer")

        # Nothing the page did was refused by its CSP.
        assert csp_violations(server, token) == 0
