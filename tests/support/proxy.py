"""Fixtures shared by the proxy tests: a real local upstream app, the in-memory runtime pointing
at it, one SQLite database per test, and a helper adding a service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.upstream import local_upstream
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role
from wakedock.services.snapshots import Actor
from wakedock.services.spec import ServiceSpec


@pytest.fixture(scope="module")
def upstream_port() -> Iterator[int]:
    with local_upstream(NAME="upstream") as port:
        yield port


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # The proxy is what these tests are about: one database backend is enough.
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


@pytest.fixture
def runtime(upstream_port: int) -> FakeRuntime:
    fake = FakeRuntime()
    fake.default_endpoint = ("127.0.0.1", upstream_port)
    return fake


def add_service(h: Harness, name: str = "app", **extra: Any) -> None:
    """A public service on port 8080 probed with GET / (override any field with `extra`)."""
    spec = ServiceSpec.model_validate(
        {
            "name": name,
            "image": "wakedock-test/busybox:1",
            "ports": [{"container_port": 8080}],
            "readiness": {"type": "http", "port": 8080, "path": "/"},
            "access": {"policy": "public"},
            **extra,
        }
    )
    h.components.services.create(
        Actor("test", Role.ADMIN), spec, RequestContext(actor="test"), owner_id=None
    )
