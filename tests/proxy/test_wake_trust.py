"""Zero trust on service hosts (docs/zerotrust.md, "On service hosts"), in process behind a
trusted proxy (the visitor's address in X-Forwarded-For):

- a session used from another continent is asked for a fresh code before it wakes a protected
  service: a browser is sent to the admin host's code page, which sends it back once the code
  is given; no code, no wake;
- a denied country is refused on a protected service (the page names only a reference, which
  finds the decision in the audit trail), and by the edge's access check;
- a public service's opt-in network filter refuses a denied country before any wake, and
  weighs nothing but the network (a script's user agent passes); without the option, nothing
  is weighed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.pages import events, hidden
from support.proxy import add_service, database_url, runtime, upstream_port  # noqa: F401 - fixtures
from wakedock.app import create_asgi
from wakedock.rbac.permissions import Role
from wakedock.services.spec import Access

pytestmark = pytest.mark.security
PROXY = "10.0.0.5"
PARIS, SYDNEY = "80.67.169.12", "1.1.1.1"
ADMIN = "https://localhost"
APP = "https://app.localhost"
HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
CHECK = "/_wakedock/edge-auth"


@pytest.fixture
def make(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Callable[..., Harness]:
    def build(**zerotrust: Any) -> Harness:
        return make_harness(
            runtime=runtime,
            client_ip=PROXY,
            proxy={"admin_hosts": ["localhost"]},
            http={"trusted_proxies": [f"{PROXY}/32"]},
            zerotrust=zerotrust,
        )

    return build


@pytest.fixture
def visitor(make: Callable[..., Harness]) -> Iterator[Callable[[Harness], TestClient]]:
    clients: list[TestClient] = []

    def open_for(h: Harness) -> TestClient:
        client = TestClient(
            create_asgi(h.components), base_url=APP, client=(PROXY, 40000), follow_redirects=False
        )
        client.__enter__()
        clients.append(client)
        return client

    yield open_for
    for client in clients:
        client.__exit__(None, None, None)


def _from(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


def _sign_in_with_mfa(h: Harness, client: TestClient, name: str, password: str) -> None:
    """Enrol MFA, then sign the browser in from Paris with a code, and take the hand-off to
    the service host from there (its own cookie)."""
    token = h.login(name, password)["access_token"]
    h.enrol_mfa(name, token)
    origin = {**_from(PARIS), "Origin": ADMIN}
    body = {"username": name, "password": password, "mode": "cookie"}
    challenge = client.post(f"{ADMIN}/api/v1/auth/login", json=body, headers=origin).json()
    verified = client.post(
        f"{ADMIN}/api/v1/auth/mfa/verify",
        json={
            "challenge_token": challenge["challenge_token"],
            "code": h.totp_code(name),
            "mode": "cookie",
        },
        headers=origin,
    )
    assert verified.status_code == 200, verified.text
    _hand_off(client, PARIS)


def _hand_off(client: TestClient, address: str) -> None:
    handoff = client.get(f"{ADMIN}/auth/proxy", params={"next": f"{APP}/"}, headers=_from(address))
    assert handoff.status_code == 303, handoff.text
    redeemed = client.get(handoff.headers["location"], headers=_from(address))
    assert redeemed.status_code == 303, redeemed.text


def _protected_app(
    make: Callable[..., Harness],
    visitor: Callable[[Harness], TestClient],
    username: str,
    **zerotrust: Any,
) -> tuple[Harness, TestClient, str, str]:
    """A protected service `app`, a viewer `username` (and her password), and a browser."""
    h = make(**zerotrust)
    add_service(h, "app", access={"policy": "authenticated"})
    name, password = h.create_user(username, Role.VIEWER)
    return h, visitor(h), name, password


def _starts(runtime: FakeRuntime) -> int:
    return sum(call == "start" for call, _ in runtime.calls)


def test_a_session_from_another_continent_gives_a_fresh_code_before_it_wakes_a_service(
    make: Callable[..., Harness],
    visitor: Callable[[Harness], TestClient],
    runtime: FakeRuntime,
) -> None:
    h, client, name, password = _protected_app(make, visitor, "nadia")
    _sign_in_with_mfa(h, client, name, password)
    # Minutes later, the same browser's cookie from Sydney: a script is told, nothing wakes.
    scripted = client.get(f"{APP}/", headers=_from(SYDNEY, **JSON))
    assert scripted.status_code == 403
    assert "open this address in a browser" in scripted.text
    assert _starts(runtime) == 0
    # A browser is sent to the admin host for a code, then comes back.
    page = client.get(f"{APP}/", headers=_from(SYDNEY, **HTML))
    assert page.status_code == 303
    sent = urlsplit(page.headers["location"])
    assert (sent.hostname, sent.path) == ("localhost", "/auth/proxy")
    assert sent.query.endswith("&step_up=1")
    asked = client.get(f"{ADMIN}{sent.path}?{sent.query}", headers=_from(SYDNEY))
    assert asked.status_code == 200 and "Confirm it is you" in asked.text
    assert asked.headers["cache-control"] == "no-store"
    csrf = hidden(asked.text, "csrf_token")
    action = f"{ADMIN}/auth/proxy?next={APP}/"
    wrong = client.post(
        action, data={"csrf_token": csrf, "code": "000000"}, headers=_from(SYDNEY, Origin=ADMIN)
    )
    assert wrong.status_code == 400 and "not accepted" in wrong.text
    forged = client.post(
        action,
        data={"code": h.backup_codes[name][0]},
        headers=_from(SYDNEY, Origin="https://evil.test"),
    )
    assert forged.status_code == 403 and "ticket" not in forged.headers.get("location", "")
    assert client.get(f"{APP}/", headers=_from(SYDNEY, **JSON)).status_code == 403
    assert _starts(runtime) == 0
    given = client.post(
        action,
        data={"csrf_token": csrf, "code": h.backup_codes[name][0]},
        headers=_from(SYDNEY, Origin=ADMIN),
    )
    # A page that moves on by itself (a redirect of the post would break the page's CSP
    # `form-action 'self'` in a browser): to the hand-off, which gives the ticket.
    assert given.status_code == 200 and "Verified" in given.text
    assert f'content="0; url=/auth/proxy?next={quote(f"{APP}/", safe="")}"' in given.text
    _hand_off(client, SYDNEY)
    woke = client.get(f"{APP}/", headers=_from(SYDNEY, **JSON))
    assert woke.status_code == 200 and woke.text == "hello from upstream\n"
    assert _starts(runtime) == 1
    [asked_for] = [e for e in events(h, "zero_trust_decision") if '"purpose": "wake"' in e.details]
    assert asked_for.ip == SYDNEY and '"decision": "step_up"' in asked_for.details
    assert "the session signed in from FR and is now used from AU" in asked_for.details
    assert [e.ip for e in events(h, "mfa_step_up")] == [SYDNEY]


def test_a_denied_country_is_refused_with_a_reference_and_by_the_edges_check(
    make: Callable[..., Harness],
    visitor: Callable[[Harness], TestClient],
    runtime: FakeRuntime,
) -> None:
    h, client, name, password = _protected_app(make, visitor, "odile", deny_countries=["AU"])
    _sign_in_with_mfa(h, client, name, password)
    for accept in (HTML, JSON):
        refused = client.get(f"{APP}/", headers=_from(SYDNEY, **accept))
        assert refused.status_code == 403, refused.text
        assert "The access policy refused this visit" in refused.text
        assert "AU" not in refused.text and "country" not in refused.text  # never the rule
    assert _starts(runtime) == 0
    [denied] = [e for e in events(h, "zero_trust_decision") if e.ip == SYDNEY]
    assert denied.outcome == "denied" and '"purpose": "wake"' in denied.details
    # The reference shown, on every refusal while the decision is kept, finds that event.
    assert f"Reference: {denied.request_id}." in refused.text
    # The edge's access check refuses the same visitor, and admits the one from Paris.
    assert client.get(f"{APP}{CHECK}", headers=_from(SYDNEY)).status_code == 403
    assert client.get(f"{APP}{CHECK}", headers=_from(PARIS)).status_code == 204
    assert client.get(f"{APP}/", headers=_from(PARIS, **JSON)).status_code == 200


def test_a_public_services_network_filter_refuses_a_denied_country_before_any_wake(
    make: Callable[..., Harness],
    visitor: Callable[[Harness], TestClient],
    runtime: FakeRuntime,
) -> None:
    h = make(deny_countries=["AU"])
    add_service(h, "app", access={"policy": "public", "network_filter": True})
    add_service(h, "plain")
    client = visitor(h)
    for _ in range(2):
        refused = client.get(f"{APP}/", headers=_from(SYDNEY, **JSON))
        assert refused.status_code == 403
    assert _starts(runtime) == 0
    assert client.get(f"{APP}{CHECK}", headers=_from(SYDNEY)).status_code == 403
    [denied] = events(h, "zero_trust_decision")  # weighed once: the decision is kept
    assert denied.outcome == "denied" and '"purpose": "wake"' in denied.details
    assert f"Reference: {denied.request_id}." in refused.text
    # Only the network is weighed: a script from Paris passes; without the option, Sydney too.
    script = _from(PARIS, **JSON, **{"User-Agent": "curl/8.5.0"})
    assert client.get(f"{APP}/", headers=script).status_code == 200
    assert client.get(f"{APP}{CHECK}", headers=_from(PARIS)).status_code == 204
    plain = client.get("https://plain.localhost/", headers=_from(SYDNEY, **JSON))
    assert plain.status_code == 200
    assert len(events(h, "zero_trust_decision")) == 1


def test_the_network_filter_is_for_public_services_only() -> None:
    with pytest.raises(ValidationError, match="only for policy 'public'"):
        Access.model_validate({"policy": "authenticated", "network_filter": True})
    assert Access.model_validate({"policy": "public", "network_filter": True}).network_filter


def test_an_account_without_a_second_factor_is_told_and_wakes_nothing(
    make: Callable[..., Harness],
    visitor: Callable[[Harness], TestClient],
    runtime: FakeRuntime,
) -> None:
    _h, client, name, password = _protected_app(make, visitor, "pablo")
    body = {"username": name, "password": password, "mode": "cookie"}
    signed = client.post(f"{ADMIN}/api/v1/auth/login", json=body,
                         headers={**_from(PARIS), "Origin": ADMIN})  # fmt: skip
    assert signed.status_code == 200, signed.text
    _hand_off(client, PARIS)
    for accept in (HTML, JSON):  # a browser too: no code page it could not answer
        told = client.get(f"{APP}/", headers=_from(SYDNEY, **accept))
        assert told.status_code == 403 and "your account has none" in told.text
        assert "zero_trust_step_up" in told.text or accept is HTML
    assert _starts(runtime) == 0
    # The hand-off's code step says the same if asked for it.
    asked = client.get(
        f"{ADMIN}/auth/proxy", params={"next": f"{APP}/", "step_up": "1"}, headers=_from(SYDNEY)
    )
    assert asked.status_code == 403 and "your account has none" in asked.text
