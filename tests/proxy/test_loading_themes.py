"""The loading page's themes as a visitor's browser gets them from a service host: the built-in one
(light or dark as the system prefers), the dark one, and a custom template rendered in the
sandbox, or the built-in page (logged and audited once) when the template cannot be rendered."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service, database_url, runtime, upstream_port  # noqa: F401 - fixtures
from wakedock.app import create_asgi
from wakedock.audit.models import AuditEvent
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.proxy.themes import LoadingRender

HTML = {"Accept": "text/html,application/xhtml+xml"}
CUSTOM = {"theme": "custom", "template": "app/loading.html"}
SCRIPT = '<script src="/_wakedock/loading.js" defer>'


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    return make_harness(
        runtime=runtime,
        proxy={"admin_hosts": ["localhost"], "reaper_interval_seconds": 60},
    )


@pytest.fixture
def client(h: Harness) -> Iterator[TestClient]:
    with TestClient(create_asgi(h.components), base_url="https://app.localhost") as client:
        yield client


def failures(h: Harness) -> list[AuditEvent]:
    with transaction(h.components.db) as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.type == "loading_page_failed"))
        return list(rows)


def with_template(h: Harness, template: str, **extra: Any) -> None:
    h.components.files.write("app/loading.html", template.encode())
    add_service(h, loading_page=CUSTOM, **extra)


def stylesheet_of(page: str) -> str:
    [href] = re.findall(r'<link rel="stylesheet" href="([^"]+)">', page)
    return href


def test_the_built_in_theme_is_unchanged_and_follows_the_systems_scheme(
    h: Harness, client: TestClient
) -> None:
    add_service(h, display_name="Team wiki")
    page = client.get("/", headers=HTML)
    assert page.status_code == 200
    assert "<h1>Starting Team wiki&hellip;</h1>" in page.text
    assert '<progress id="progress" max="100" value="5"></progress>' in page.text
    assert re.findall(r"<script[^>]*>", page.text) == [SCRIPT]
    assert stylesheet_of(page.text) == "/_wakedock/loading.css"
    css = client.get("/_wakedock/loading.css")
    assert css.headers["content-type"].startswith("text/css")
    # Light by default; dark when the visitor's system asks for it.
    assert "background: #fff" in css.text.split("@media")[0]
    assert "@media (prefers-color-scheme: dark) { body { color: #eee; background: #16181d; }" in (
        css.text
    )


def test_the_dark_theme_has_its_own_stylesheet(h: Harness, client: TestClient) -> None:
    add_service(h, display_name="Team wiki", loading_page={"theme": "dark"})
    page = client.get("/", headers=HTML)
    assert "<h1>Starting Team wiki&hellip;</h1>" in page.text
    assert stylesheet_of(page.text) == "/_wakedock/loading-dark.css"
    css = client.get("/_wakedock/loading-dark.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "background: #16181d" in css.text and "@media" not in css.text
    assert "unsafe-inline" not in css.headers["content-security-policy"]


def test_a_custom_template_is_the_page_inside_wakedocks_own_head_and_script(
    h: Harness, client: TestClient
) -> None:
    with_template(
        h,
        '<main><h1 class="brand">{{ display_name }} is waking up</h1>'
        '<progress id="progress" max="100" value="{{ progress }}"></progress>'
        '<p id="note">Polling {{ status_url }}</p></main>',
        display_name="Team wiki",
    )
    page = client.get("/", headers=HTML)
    assert page.status_code == 200
    assert '<h1 class="brand">Team wiki is waking up</h1>' in page.text
    assert 'value="5"' in page.text and "Polling /_wakedock/status" in page.text
    assert "<title>Starting Team wiki</title>" in page.text
    # WakeDock's head and script around it, the same strict CSP.
    assert re.findall(r"<script[^>]*>", page.text) == [SCRIPT]
    assert stylesheet_of(page.text) == "/_wakedock/loading.css"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    assert failures(h) == []


def render(h: Harness) -> LoadingRender:
    """The loading page as the next visitor of `app` would get it (the service stays asleep)."""
    view = h.components.services.get("app")
    return h.components.loading_pages.render(view, RequestContext(ip="203.0.113.9"))


def test_a_new_upload_of_the_template_is_what_the_next_visitor_sees(h: Harness) -> None:
    with_template(h, "<h1>First</h1>")
    assert render(h).body == "<h1>First</h1>"
    h.components.files.write("app/loading.html", b"<h1>Second</h1>")
    assert render(h).body == "<h1>Second</h1>"


@pytest.mark.security
def test_the_display_name_is_escaped_even_if_the_template_says_safe(
    h: Harness, client: TestClient
) -> None:
    with_template(
        h,
        "<p>{{ display_name }}</p><p>{{ display_name | safe }}</p>"
        "<p>{% autoescape false %}{{ display_name }}{% endautoescape %}</p>",
        display_name='<img src=x onerror="alert(1)">',
    )
    page = client.get("/", headers=HTML).text
    assert "<img" not in page
    assert page.count("&lt;img src=x onerror=&#34;alert(1)&#34;&gt;") == 3


@pytest.mark.security
def test_a_missing_template_gives_the_built_in_page_logged_and_audited_once(
    h: Harness, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with_template(h, "<h1>Custom</h1>", display_name="Team wiki")
    (h.components.settings.data_dir / "files" / "app" / "loading.html").unlink()
    page = client.get("/", headers=HTML)
    assert page.status_code == 200
    assert "<h1>Starting Team wiki&hellip;</h1>" in page.text
    assert stylesheet_of(page.text) == "/_wakedock/loading.css"
    # More visitors: the same built-in page, no new audit event for the same failure.
    for _ in range(2):
        again = render(h)
        assert again.body.startswith("<h1>Starting Team wiki&hellip;</h1>")
        assert again.failure == "the template app/loading.html is missing or unreadable"
    [event] = failures(h)
    assert event.target == "app" and event.outcome == "failure"
    assert "app/loading.html is missing" in event.details
    assert "custom template failed" in caplog.text
