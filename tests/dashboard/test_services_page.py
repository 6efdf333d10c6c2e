"""The services page in process: who sees it, what it lists, which buttons, and that its form
posts obey the API's rules (permission, ownership, CSRF) and leave the API's audit events."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.pages import HERE, SAME_ORIGIN, events, hidden, page_client, password_step
from support.proxy import add_service
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role
from wakedock.runtime.base import State
from wakedock.services.snapshots import Actor

from .conftest import SignIn

JSON = {**SAME_ORIGIN, "Accept": "application/json"}


def start(h: Harness, name: str) -> None:
    h.components.services.start(Actor("test", Role.ADMIN), name, RequestContext(actor="test"))


def state_of(h: Harness, runtime: FakeRuntime, name: str) -> State:
    ref = h.components.services.get(name).container_ref
    assert ref is not None
    return runtime.containers[ref].state


def test_without_a_session_the_services_page_sends_to_sign_in(h: Harness) -> None:
    browser = page_client(h, 50010)
    answer = browser.get("/services")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fservices"
    landing = browser.get("/")
    assert landing.status_code == 200 and "Sign in" in landing.text
    assert "Team wiki" not in landing.text
    live = browser.get("/services/live")
    assert live.status_code == 401 and live.json()["code"] == "not_authenticated"


def test_a_viewer_sees_every_service_and_no_button(signed_in: SignIn) -> None:
    browser, _token = signed_in(Role.VIEWER)
    page = browser.get("/").text  # the root is the services page once signed in
    # The name leads to the service's page, its host beside it to the service.
    assert re.search(r'<a href="/services/app">Team wiki</a>', page)
    assert re.search(r'<a class="host" href="https://app\.localhost/">app\.localhost</a>', page)
    assert 'data-service="blog"' in page
    assert "<button" in page  # sign-out only
    assert not re.search(r">(Wake|Stop|Restart)<", page)
    assert "<strong data-awake>0</strong> of <span data-max-awake>20</span> awake" in page


def test_search_and_state_filter_narrow_the_list(h: Harness, signed_in: SignIn) -> None:
    start(h, "blog")
    browser, _token = signed_in(Role.VIEWER)
    found = browser.get("/services", params={"q": "WIKI"}).text
    assert 'data-service="app"' in found and 'data-service="blog"' not in found
    running = browser.get("/services", params={"state": "running"}).text
    assert 'data-service="blog"' in running and 'data-service="app"' not in running
    assert "<strong data-awake>1</strong>" in running
    nothing = browser.get("/services", params={"q": "<script>x"}).text
    assert "No service matches" in nothing and "<script>x" not in nothing


@pytest.mark.security
def test_a_viewers_forged_stop_is_refused_with_or_without_the_csrf_token(
    h: Harness, runtime: FakeRuntime, signed_in: SignIn
) -> None:
    start(h, "app")
    browser, token = signed_in(Role.VIEWER)
    forged = browser.post("/services/app/stop", data={"csrf_token": token}, headers=JSON)
    assert forged.status_code == 403
    assert forged.json()["code"] == "permission_denied"
    denied = events(h, "forbidden_access")
    assert [e.target for e in denied] == ["/services/app/stop"]
    assert "services:operate" in (denied[0].details or "")

    tokenless = browser.post("/services/app/stop", data={}, headers=SAME_ORIGIN)
    assert tokenless.status_code == 403
    assert "Request refused" in tokenless.text
    assert len(events(h, "csrf_failure")) == 1
    assert state_of(h, runtime, "app") is State.RUNNING
    assert events(h, "service_stop") == []


@pytest.mark.security
def test_an_operators_stop_from_another_site_is_refused(
    h: Harness, runtime: FakeRuntime, signed_in: SignIn
) -> None:
    start(h, "app")
    browser, token = signed_in(Role.OPERATOR)
    foreign = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    answer = browser.post("/services/app/stop", data={"csrf_token": token}, headers=foreign)
    assert answer.status_code == 403
    assert state_of(h, runtime, "app") is State.RUNNING


def test_an_operator_stops_a_service_as_the_api_would(
    h: Harness, runtime: FakeRuntime, signed_in: SignIn
) -> None:
    start(h, "app")
    browser, token = signed_in(Role.OPERATOR)
    page = browser.get("/services").text
    assert 'Stop<span class="visually-hidden"> app</span>' in page
    answer = browser.post("/services/app/stop", data={"csrf_token": token}, headers=SAME_ORIGIN)
    assert answer.status_code == 303 and answer.headers["location"] == "/services"
    assert state_of(h, runtime, "app") is State.STOPPED
    [stopped] = events(h, "service_stop")
    assert stopped.actor.startswith("operator-") and stopped.target == "app"
    live = browser.get("/services/live").json()
    assert live["services"]["app"]["state"] == "stopped"
    assert live["services"]["app"]["phase"] == "asleep"


def test_a_developer_operates_only_their_own_services(
    h: Harness, runtime: FakeRuntime, signed_in: SignIn
) -> None:
    start(h, "app")
    browser, token = signed_in(Role.DEVELOPER)
    page = browser.get("/services").text
    assert "not yours" in page and "Stop<span" not in page
    answer = browser.post("/services/app/stop", data={"csrf_token": token}, headers=JSON)
    assert answer.status_code == 403 and answer.json()["code"] == "not_service_owner"
    assert state_of(h, runtime, "app") is State.RUNNING


def test_the_page_has_no_inline_code_and_its_script_matches_its_integrity(
    signed_in: SignIn,
) -> None:
    browser, _token = signed_in(Role.VIEWER)
    page = browser.get("/services")
    assert page.headers["cache-control"] == "no-store"
    assert "<style" not in page.text and "style=" not in page.text
    assert re.findall(r"<script[^>]*>", page.text) == [
        re.search(r'<script src="/assets/wakedock.js" integrity="[^"]+" defer>', page.text)[0]  # type: ignore[index]
    ]
    script = browser.get("/assets/wakedock.js")
    assert script.headers["content-type"].startswith("text/javascript")
    digest = base64.b64encode(hashlib.sha256(script.content).digest()).decode()
    assert f'integrity="sha256-{digest}"' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp
    assert csp.endswith("report-uri /csp-report")


def test_sign_out_is_a_post_with_the_csrf_token(h: Harness, signed_in: SignIn) -> None:
    browser, token = signed_in(Role.VIEWER)
    refused = browser.post("/logout", data={}, headers=SAME_ORIGIN)
    assert refused.status_code == 403
    assert browser.get("/services").status_code == 200  # still signed in
    out = browser.post("/logout", data={"csrf_token": token}, headers=SAME_ORIGIN)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert len(events(h, "logout")) == 1
    assert browser.get("/services").status_code == 303


def test_a_long_list_comes_in_pages_and_the_poll_follows_the_page(
    h: Harness, signed_in: SignIn
) -> None:
    for n in range(118):
        add_service(h, f"svc-{n:03d}")
    browser, _token = signed_in(Role.VIEWER)
    first = browser.get("/services").text
    assert first.count("<tr data-service=") == 50
    assert '<a href="/services?page=2" rel="next">Next page</a>' in first
    assert "1&ndash;50 of 120" in first
    last = browser.get("/services", params={"page": 3}).text
    assert last.count("<tr data-service=") == 20
    assert 'data-live="/services/live?page=3"' in last
    assert '<a href="/services?page=2" rel="prev">' in last
    live = browser.get("/services/live", params={"page": 3}).json()
    assert sorted(live["services"]) == [f"svc-{n:03d}" for n in range(98, 118)]
    narrowed = browser.get("/services", params={"q": "svc-11", "page": 9}).text
    assert narrowed.count("<tr data-service=") == 8  # svc-110 .. svc-117: the one page there is


@pytest.mark.security
def test_the_wake_button_spends_the_addresss_wake_budget(
    make_harness: Callable[..., Harness], runtime: FakeRuntime
) -> None:
    """The proxy's wake budget per address applies to the button too (the same decision)."""
    h = make_harness(runtime=runtime, proxy={"wake_per_ip": "1/minute"})
    add_service(h, "app")
    add_service(h, "blog")
    name, password = h.create_user("olga", Role.OPERATOR)
    with TestClient(h.app, base_url=HERE, client=("203.0.113.7", 50300)) as browser:
        password_step(browser, name, password, "/services")
        token = hidden(browser.get("/services").text, "csrf_token")
        first = browser.post("/services/app/wake", data={"csrf_token": token}, headers=JSON)
        assert first.status_code == 200 and first.json()["detail"] == "Waking app."
        second = browser.post("/services/blog/wake", data={"csrf_token": token}, headers=JSON)
        assert second.status_code == 429
        assert second.json()["code"] == "too_many_attempts"
        assert int(second.headers["retry-after"]) > 0
