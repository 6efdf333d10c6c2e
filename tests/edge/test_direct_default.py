"""Direct routes by default (`edge.direct_routes: auto`): which renders include them, and the
edge's registration that tells `wakedock serve` to wait the stop grace (cluster/edges.py,
edge/presence.py). End to end with nginx, Docker and `wakedock serve`: test_direct_attach.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Harness
from edge.test_direct_render import ROUTES, VIEWS, _options
from wakedock.cluster.edges import EdgeRegistry
from wakedock.config import Settings
from wakedock.edge.cli import EdgeTools, renderer
from wakedock.edge.presence import EdgePresence


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/wakedock.db"


def _tools(settings: Settings, registry: EdgeRegistry | None = None) -> EdgeTools:
    return EdgeTools(
        settings,
        lambda: VIEWS,
        lambda event, context: None,
        Path("cert.pem"),
        Path("key.pem"),
        True,
        lambda views: ROUTES,  # type: ignore[arg-type]
        registry=registry,
    )


def _routed(tools: EdgeTools, tmp_path: Path, presence: EdgePresence | None = None) -> bool:
    return (
        "edge_service_wiki" in renderer(tools, _options(tmp_path), presence)().files["nginx.conf"]
    )


def test_a_one_shot_render_has_direct_routes_only_when_asked_for(tmp_path: Path) -> None:
    # `edge render`: no supervisor reloads nginx when a service stops, nothing registers.
    assert Settings(data_dir=tmp_path).edge.direct_routes == "auto"
    assert not _routed(_tools(Settings(data_dir=tmp_path)), tmp_path)
    assert _routed(_tools(Settings(data_dir=tmp_path, edge={"direct_routes": True})), tmp_path)
    assert not _routed(_tools(Settings(data_dir=tmp_path, edge={"direct_routes": False})), tmp_path)


def test_a_supervised_edge_routes_directly_while_registered(
    tmp_path: Path, make_harness: Callable[..., Harness]
) -> None:
    h = make_harness()
    registry = EdgeRegistry(h.components.db, h.components.clock)
    tools = _tools(h.components.settings, registry)
    presence = EdgePresence(registry, "edge-host:7", heartbeat_seconds=60)
    assert registry.attached() == []
    assert not _routed(tools, tmp_path, presence)  # not registered yet: no route
    presence.start()
    try:
        assert [edge.holder for edge in registry.attached()] == ["edge-host:7"]
        assert presence.fresh
        assert _routed(tools, tmp_path, presence)
    finally:
        presence.stop()
    assert registry.attached() == []  # released: serve stops without the grace
    assert not _routed(tools, tmp_path, presence)


def test_an_edge_that_cannot_register_renders_no_direct_route(tmp_path: Path) -> None:
    class Away(EdgeRegistry):
        def __init__(self) -> None:
            pass

        def prune(self) -> None:
            raise ConnectionError("database away")

        def register(self, holder: str, ttl_seconds: float = 10) -> None:
            raise ConnectionError("database away")

        def release(self, holder: str) -> None:
            raise ConnectionError("database away")

    presence = EdgePresence(Away(), "edge-host:8", heartbeat_seconds=60)
    presence.start()
    try:
        assert not presence.fresh
        assert not _routed(_tools(Settings(data_dir=tmp_path), Away()), tmp_path, presence)
    finally:
        presence.stop()
