"""Numbers in paths and query strings are checked at the edge: a value no row can have, or one
beyond what the database can compare (64 bits on SQLite, 32-bit keys on PostgreSQL), is a 422,
never a 500. The walk covers every route with an integer parameter, so a new one is covered too.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from conftest import CLIENT_IP, Harness
from support.routes import api_routes, integer_params
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security

OUT_OF_RANGE = [2**64, 2**63, -1, -(2**63) - 1]
# Ids no row can have: every integer in a path is a row id, and the key columns are 32-bit
# INTEGERs on PostgreSQL.
BEYOND_KEYS = [2**31, 2**63]
# Path integers that are not 32-bit keys: an audit event's sequence is a 64-bit column, so
# 2**31 is a sequence a long-lived trail reaches (its page answers it as any other); 2**63 and
# beyond are still refused.
SEQUENCES = {("/admin/audit/{seq}", "seq")}


def _cases(harness: Harness) -> list[tuple[str, str, str, str]]:
    cases = []
    for route in api_routes(harness.app):
        for where, name in integer_params(route.dependant):
            for method in sorted(route.methods):
                cases.append((method, route.path, where, name))
    return cases


def _client(harness: Harness) -> TestClient:
    # A 500 must show up as the status a client would see, not as a raised exception.
    return TestClient(
        harness.app,
        base_url="https://testserver",
        client=(CLIENT_IP, 50000),
        raise_server_exceptions=False,
    )


def _url(path: str, where: str, name: str, value: int) -> str:
    # The other path parameters get a harmless valid value.
    filled = re.sub(r"\{(\w+)(:path)?\}", lambda m: str(value) if m[1] == name else "1", path)
    return f"{filled}?{name}={value}" if where == "query" else filled


def test_every_integer_parameter_refuses_impossible_values(
    harness: Harness, admin_token: str
) -> None:
    cases = _cases(harness)
    # The walk must find the parameters the outside testing reported.
    found = {(path, name) for _, path, _, name in cases}
    assert {
        ("/api/v1/services/{service_id}", "service_id"),
        ("/api/v1/users/{user_id}", "user_id"),
        ("/api/v1/users", "offset"),
        ("/api/v1/audit", "cursor"),
        ("/api/v1/auth/sessions", "user_id"),
    } <= found
    client, wrong = _client(harness), []
    for method, path, where, name in cases:
        beyond = [] if (path, name) in SEQUENCES else BEYOND_KEYS
        for value in OUT_OF_RANGE + (beyond if where == "path" else []):
            reply = client.request(
                method, _url(path, where, name, value), headers=harness.bearer(admin_token)
            )
            body = reply.json()
            if reply.status_code != 422 or body.get("code") != "validation_error":
                wrong.append(f"{method} {path} {name}={value}: {reply.status_code}")
            elif str(value) in reply.text:
                wrong.append(f"{method} {path} {name}={value}: value echoed")
    assert wrong == []


@pytest.mark.parametrize("value", BEYOND_KEYS)
def test_an_id_beyond_the_keys_is_422_for_a_viewer_too(harness: Harness, value: int) -> None:
    # The reported case: a viewer could trigger the 500 on reads.
    token = harness.token_for(Role.VIEWER)
    for url in (f"/api/v1/services/{value}", f"/api/v1/services/{value}/status"):
        reply = _client(harness).get(url, headers=harness.bearer(token))
        assert reply.status_code == 422, (url, reply.text)


def test_the_largest_possible_id_is_a_plain_404(harness: Harness, admin_token: str) -> None:
    for url in ("/api/v1/services/2147483647", "/api/v1/users/2147483647"):
        reply = _client(harness).get(url, headers=harness.bearer(admin_token))
        assert reply.status_code == 404, (url, reply.text)
