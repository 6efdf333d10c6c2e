"""Every admin route has a body limit: the configured default, or the route's own (files 1 MiB,
logins 16 KiB). The 1 GiB attacks on the real server are in integration/test_request_limits.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from conftest import Harness
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security


def _chunks(total: int) -> Iterator[bytes]:  # no Content-Length: a chunked body
    for _ in range(total // 1024):
        yield b"x" * 1024


def test_the_default_limit_is_configurable(make_harness: Callable[..., Harness]) -> None:
    client = make_harness(http={"max_body_bytes": 2048}).client
    declared = client.post("/api/v1/auth/refresh", content=b"x" * 3000)
    streamed = client.post("/api/v1/auth/refresh", content=_chunks(3072))
    for refused in (declared, streamed):
        assert refused.status_code == 413
        assert refused.json() == {
            "detail": "request body larger than 2048 bytes",
            "code": "payload_too_large",
        }
        assert refused.headers["x-content-type-options"] == "nosniff"
    # Under the limit the route itself answers.
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": "x"}).status_code == 401


def test_authenticated_routes_are_limited_too(harness: Harness) -> None:
    token = harness.token_for(Role.ADMIN)
    huge = {"username": "x", "password": "y" * (100 * 1024), "role": "viewer"}
    response = harness.client.post("/api/v1/users", headers=harness.bearer(token), json=huge)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_the_files_api_keeps_its_own_larger_limit(harness: Harness) -> None:
    token = harness.token_for(Role.OPERATOR)
    content = b"z" * (512 * 1024)  # over the 64 KiB default, under the files' 1 MiB
    written = harness.client.put(
        "/api/v1/files/demo/big.bin", headers=harness.bearer(token), content=_chunks(len(content))
    )
    assert written.status_code == 200
    assert written.json()["size"] == len(content)
