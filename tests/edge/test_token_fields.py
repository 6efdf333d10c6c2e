"""WakeDock's own tokens at the edge (edge/exclusions.py, TOKEN_FIELDS): about one random token in
500 has `--` followed later by `-` (CRS 942440: an SQL comment), and now and then another rule
trips on one (930120 on `.nsr`, 942450 on `-0xabc`). A sign-in through the edge was refused at
its code step that way. Through a real nginx + ModSecurity + CRS (test_direct_routes.py's edge,
with its stand-in WakeDock): each field passes when its one value is exactly its token's shape,
and the CRS still reads it otherwise (an attack, a second copy, another path, another name).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from edge.test_direct_routes import Edge, Recorder, edge, service, wakedock  # noqa: F401 - fixtures
from support.account import page, session_ids, signed_in
from support.clocked import clock, h  # noqa: F401 - fixtures
from support.pages import hidden, page_client, password_step
from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.auth.setup_token import SetupToken
from wakedock.clock import FakeClock
from wakedock.edge.exclusions import TOKEN_FIELDS, TokenField
from wakedock.rbac.roles import Role

# Each shape with what trips the CRS in it: `--` then `-` (942440) in every one, `-0xabc`
# (942450) in a JWT's claims and `.nsr` (930120, a file name) at the start of its signature.
URLSAFE_43 = "Tk--n-" + "A" * 37
URLSAFE_22 = "Sn--d-" + "B" * 16
JWT = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6I" + "k" * 41 + ".eyJ" + "Z29v--ZC-0xabc" + "C" * 20
    + ".nsr" + "D" * 40
)  # fmt: skip
SAMPLES = {43: URLSAFE_43, 22: URLSAFE_22}
ATTACK = "' OR '1'='1' --"
ADMIN_HOST = "localhost"
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def sample(field: TokenField) -> str:
    if field.shape.startswith("eyJ"):
        return JWT
    found = re.fullmatch(r"\[A-Za-z0-9_-\]\{(\d+)\}", field.shape)
    assert found, field.shape
    return SAMPLES[int(found.group(1))]


@dataclass(frozen=True)
class Sent:
    """How a client hands a field back: as a cookie, a query, a form or a JSON field."""

    field: TokenField
    host: str
    path: str

    @property
    def name(self) -> str:
        return self.field.target.split(":", 1)[1]

    def request(self, to: Edge, *values: str, name: str = "", path: str = "") -> int:
        name, path = name or self.name, path or self.path
        if self.field.target.startswith("REQUEST_COOKIES:"):
            cookie = "; ".join(f"{name}={v}" for v in values)
            status, _, _ = to.request(self.host, path=path, headers={"Cookie": cookie})
        elif name == "ticket":
            query = urlencode([*((name, v) for v in values), ("next", "/")])
            status, _, _ = to.request(self.host, path=f"{path}?{query}")
        elif name.startswith("json."):
            key = name.removeprefix("json.")
            # A second copy of a JSON field: the same key twice in one object.
            body = "{" + ",".join(f"{json.dumps(key)}:{json.dumps(v)}" for v in values) + "}"
            status, _, _ = to.request(self.host, "POST", path, JSON, body.encode())
        else:
            body = urlencode([(name, v) for v in values]).encode()
            status, _, _ = to.request(self.host, "POST", path, FORM, body)
        return status


def _sent(field: TokenField) -> Sent:
    path = field.paths[0] if field.paths else "/account/password"
    host = "app.localhost" if field.target == "ARGS:ticket" else ADMIN_HOST
    return Sent(field, host, "/" if field.target.startswith("REQUEST_COOKIES:") else path)


@pytest.mark.integration
@pytest.mark.security
@pytest.mark.parametrize("field", TOKEN_FIELDS, ids=lambda f: f.target)
def test_a_token_shaped_field_passes_the_crs_and_only_that(
    edge: Edge,  # noqa: F811 - the fixture
    wakedock: Recorder,  # noqa: F811 - the fixture
    field: TokenField,
) -> None:
    sent, value = _sent(field), sample(field)
    # The same value in a field of another name: the CRS refuses it (the test can fail).
    assert sent.request(edge, value, name=sent.name + "x") == 403
    assert wakedock.requests == []
    # In its own field, once, exactly the token's shape: WakeDock gets it.
    assert sent.request(edge, value) == 200
    assert len(wakedock.requests) == 1
    # Anything else in it is read by the CRS as before: an attack after the token, alone, or a
    # second copy of the field (a token and an attack; even two tokens).
    assert sent.request(edge, value + ATTACK) == 403
    assert sent.request(edge, ATTACK) == 403
    assert sent.request(edge, value, ATTACK) == 403
    assert sent.request(edge, value, value) == 403
    # A field with a common name is exempt on its own paths only.
    if field.paths:
        assert sent.request(edge, value, path="/api/v1/services") == 403
    assert len(wakedock.requests) == 1


def test_every_token_wakedock_hands_back_has_its_fields_shape(
    h: Harness,  # noqa: F811 - the fixture
    clock: FakeClock,  # noqa: F811 - the fixture
) -> None:
    """Real tokens, from the real flows (in process): each fits the shape its field admits."""
    shapes = {f.target: re.compile(f.shape) for f in TOKEN_FIELDS}
    name, password = h.create_user("tokens", Role.ADMIN)
    h.login(name, password)  # enrols MFA: the next sign-ins have a code step
    api = h.client.post("/api/v1/auth/login", json={"username": name, "password": password})
    challenge = api.json()["challenge_token"]
    assert shapes["ARGS:json.challenge_token"].fullmatch(challenge), challenge
    clock.advance(30)  # a code of a step not spent yet, each time
    verified = h.client.post(
        "/api/v1/auth/mfa/verify",
        json={"challenge_token": challenge, "code": h.totp_code(name)},
    )
    refresh = verified.json()["refresh_token"]
    assert shapes["ARGS:json.refresh_token"].fullmatch(refresh), refresh
    # The sign-in form's code step, and the browser signed in through it.
    form = password_step(page_client(h, 8443), name, password, "/account")
    assert shapes["ARGS:challenge"].fullmatch(hidden(form.text, "challenge"))
    clock.advance(30)
    browser: TestClient = signed_in(h, name, password, 8443)
    html = page(browser)
    assert shapes[f"REQUEST_COOKIES:{SESSION_COOKIE}"].fullmatch(browser.cookies[SESSION_COOKIE])
    assert shapes["ARGS:csrf_token"].fullmatch(hidden(html, "csrf_token"))
    others = session_ids(html)  # the API's and the first form's sessions, to revoke
    assert others and all(shapes["ARGS:session"].fullmatch(s) for s in others), others
    token, _ = SetupToken(h.components.clock, ttl_seconds=60).issue()
    assert shapes["ARGS:json.token"].fullmatch(token), token
    # The sign-in ticket a protected service host redeems, for this browser's session.
    principal = h.components.sessions.principal_by_secret(browser.cookies[SESSION_COOKIE])
    assert principal is not None
    ticket = h.components.proxy_access.issue_ticket(principal, "app.localhost")
    assert shapes["ARGS:ticket"].fullmatch(ticket), ticket
