"""Service files per service: a developer reaches only the folders of services it owns."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.rbac.permissions import Role

SPEC = {"image": "wakedock-test/busybox:1", "readiness": {"type": "tcp", "port": 80}}


@pytest.fixture
def h(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(runtime=FakeRuntime())


def test_developers_reach_only_their_services_files(h: Harness) -> None:
    alice = h.bearer(h.token_for(Role.DEVELOPER, "alice"))
    bob = h.bearer(h.token_for(Role.DEVELOPER, "bob"))
    operator = h.bearer(h.token_for(Role.OPERATOR))
    assert (
        h.client.post("/api/v1/services", json={"name": "blog", **SPEC}, headers=alice).status_code
        == 201
    )

    put = h.client.put("/api/v1/files/blog/compose.yaml", content=b"services: {}\n", headers=alice)
    assert put.status_code == 200, put.text
    assert (
        h.client.get("/api/v1/files/blog/compose.yaml", headers=alice).content == b"services: {}\n"
    )

    for path in ("blog/compose.yaml", "ghost/x.env", "top-level.txt"):
        assert h.client.get(f"/api/v1/files/{path}", headers=bob).status_code == 403
        assert h.client.put(f"/api/v1/files/{path}", content=b"x", headers=bob).status_code == 403
    # Escaping one's own folder is still a refused (and audited) path.
    escape = h.client.put("/api/v1/files/blog/../other/x", content=b"x", headers=alice)
    assert escape.status_code in (400, 403, 404)
    assert h.client.get("/api/v1/files/blog/compose.yaml", headers=operator).status_code == 200
    viewer = h.bearer(h.token_for(Role.VIEWER))
    assert h.client.get("/api/v1/files/blog/compose.yaml", headers=viewer).status_code == 403
