"""`GET /services/{name}/loading-preview`: a service's loading page, its theme as a visitor would
see it, for a signed-in user who may see the service; nothing is woken."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.context import RequestContext
from wakedock.dashboard.preview import PREVIEW_CSP
from wakedock.rbac.permissions import Role
from wakedock.services.patch import ServicePatch
from wakedock.services.snapshots import Actor

from .conftest import SignIn

PREVIEW = "/services/app/loading-preview"


def choose(h: Harness, loading_page: dict[str, str], template: bytes | None = None) -> None:
    if template is not None:
        h.components.files.write("app/loading.html", template)
    patch = ServicePatch.model_validate({"loading_page": loading_page})
    h.components.services.update(Actor("test", Role.ADMIN), "app", patch, RequestContext())


def stylesheet_of(page: str) -> str:
    [href] = re.findall(r'<link rel="stylesheet" href="([^"]+)">', page)
    return href


def test_signed_out_the_preview_sends_to_sign_in(h: Harness) -> None:
    browser = TestClient(h.app, base_url="https://testserver")
    answer = browser.get(PREVIEW, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fservices%2Fapp%2Floading-preview"


def test_a_viewer_previews_the_dark_theme_and_nothing_wakes(
    h: Harness, signed_in: SignIn, runtime: FakeRuntime
) -> None:
    choose(h, {"theme": "dark"})
    browser, _ = signed_in(Role.VIEWER)
    page = browser.get(PREVIEW)
    assert page.status_code == 200
    assert "<h1>Starting Team wiki&hellip;</h1>" in page.text
    assert "Preview of the dark loading page of Team wiki: nothing was woken." in page.text
    assert stylesheet_of(page.text) == "/assets/loading-dark.css"
    # No script at all: nothing polls, and a template's markup could run nothing here.
    assert "<script" not in page.text
    assert page.headers["content-security-policy"] == PREVIEW_CSP
    assert "script-src" not in PREVIEW_CSP and "default-src 'none'" in PREVIEW_CSP
    assert page.headers["cache-control"] == "no-store"
    assert not [call for call, _ in runtime.calls if call == "start"]
    css = browser.get("/assets/loading-dark.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_the_built_in_theme_preview_follows_the_systems_scheme(
    h: Harness, signed_in: SignIn
) -> None:
    browser, _ = signed_in(Role.DEVELOPER)
    page = browser.get(PREVIEW)
    assert "Preview of the built-in loading page" in page.text
    assert stylesheet_of(page.text) == "/assets/loading.css"
    assert "prefers-color-scheme: dark" in browser.get("/assets/loading.css").text


def test_a_custom_template_is_previewed_as_rendered(h: Harness, signed_in: SignIn) -> None:
    choose(
        h,
        {"theme": "custom", "template": "app/loading.html"},
        b"<main><h1>{{ display_name }} wakes up</h1><p>Hang on.</p></main>",
    )
    browser, _ = signed_in(Role.VIEWER)
    page = browser.get(PREVIEW).text
    assert "<main><h1>Team wiki wakes up</h1><p>Hang on.</p></main>" in page
    assert "Preview of the custom loading page" in page and 'role="alert"' not in page


@pytest.mark.security
def test_a_failing_template_previews_the_built_in_page_and_says_why(
    h: Harness, signed_in: SignIn
) -> None:
    choose(
        h,
        {"theme": "custom", "template": "app/loading.html"},
        b"{{ ''.__class__.__mro__[1].__subclasses__() }}",
    )
    browser, _ = signed_in(Role.VIEWER)
    page = browser.get(PREVIEW)
    assert page.status_code == 200
    assert "<h1>Starting Team wiki&hellip;</h1>" in page.text
    assert "The custom template could not be rendered, so visitors get the built-in page" in (
        page.text
    )
    assert "SecurityError: access to attribute &#x27;__class__&#x27;" in page.text
    assert "<class" not in page.text


@pytest.mark.parametrize("name", ["ghost", "App", "a_b", "x" * 63])
def test_an_unknown_service_is_not_found(h: Harness, signed_in: SignIn, name: str) -> None:
    browser, _ = signed_in(Role.OPERATOR)
    answer = browser.get(f"/services/{name}/loading-preview")
    assert answer.status_code == 404
    assert "No such service." in answer.text
