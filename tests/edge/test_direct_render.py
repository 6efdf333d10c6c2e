"""The direct routes in the rendered configuration (edge.direct_routes) and how they are found
(edge/routes.py): only running services whose readiness probe passed, on loopback."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from wakedock.clock import FakeClock
from wakedock.config import Settings
from wakedock.edge.render import EdgeOptions, render_edge, write_edge
from wakedock.edge.routes import DirectRoute, DirectRoutes
from wakedock.edge.supervisor import check_config
from wakedock.runtime.base import ContainerStatus, Endpoint, Health, State
from wakedock.services.snapshots import ServiceView
from wakedock.services.spec import ServiceSpec


def _view(
    name: str,
    policy: str = "public",
    state: str = "running",
    port: int = 80,
    *,
    network_filter: bool = False,
) -> ServiceView:
    now = datetime.now(UTC)
    spec = ServiceSpec.model_validate(
        {
            "name": name,
            "image": "nginx:1",
            "ports": [{"container_port": port}],
            "readiness": {"type": "http", "port": port, "path": "/ready"},
            "access": {"policy": policy, "network_filter": network_filter},
        }
    )
    return ServiceView(
        id=1, name=name, owner_id=None, source="api", spec=spec, writable_root_granted=False,
        runtime="engine", container_ref=f"ref-{name}", state=state, stop_reason=None,
        created_at=now, updated_at=now, last_started_at=now, last_stopped_at=None,
    )  # fmt: skip


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _options(tmp_path: Path) -> EdgeOptions:
    cert = tmp_path / "cert.pem"
    return EdgeOptions(
        out_dir=tmp_path / "edge", cert=cert, key=tmp_path / "key.pem", wakedock_ca=cert
    )


ROUTES = {
    "wiki": DirectRoute("127.0.0.1", 32768),
    "vault": DirectRoute("::1", 32769),
    "shop": DirectRoute("127.0.0.1", 32770),
}
VIEWS = [
    _view("wiki"),
    _view("vault", "authenticated"),
    _view("blog", state="stopped"),
    _view("shop", network_filter=True),
]


def test_direct_routes_only_with_the_setting(tmp_path: Path) -> None:
    off = render_edge(
        Settings(data_dir=tmp_path, edge={"direct_routes": False}),
        VIEWS,
        _options(tmp_path),
        ROUTES,
    )
    assert "edge_service_" not in off.files["nginx.conf"]
    assert "auth_request" not in off.files["nginx.conf"]
    settings = Settings(data_dir=tmp_path, edge={"direct_routes": True, "auth_cache_seconds": 7})
    nginx = render_edge(settings, VIEWS, _options(tmp_path), ROUTES).files["nginx.conf"]
    assert "server 127.0.0.1:32768;" in nginx and "server [::1]:32769;" in nginx
    blocks = {m[0]: m[1] for m in re.findall(r"# service (\S+)\n(.*?)\n    }\n", nginx, re.S)}
    assert "proxy_pass http://edge_service_wiki;" in blocks["wiki"]
    assert "auth_request" not in blocks["wiki"]
    assert "auth_request /_wakedock/edge-auth;" in blocks["vault"]
    assert "proxy_cache_valid 204 401 403 7s;" in blocks["vault"]
    # The decision is the visitor's address's too (zero trust): never shared between addresses.
    assert 'proxy_cache_key "$host|$remote_addr|' in blocks["vault"]
    # A public service with the zero-trust network filter: checked, with no cookie of WakeDock.
    assert "auth_request /_wakedock/edge-auth;" in blocks["shop"]
    assert 'proxy_cache_key "$host|$remote_addr|' in blocks["shop"]
    assert "service-cookie.conf" not in blocks["shop"] and "service-cookie.conf" in blocks["vault"]
    # A sleeping service: every request to WakeDock, as without direct routes.
    assert "edge_service_" not in blocks["blog"]
    assert "proxy_pass https://wakedock;" in blocks["blog"]
    assert "access_log syslog:server=unix:" in blocks["wiki"]


def test_nginx_accepts_direct_routes_with_and_without_the_decision_cache(
    tmp_path: Path, nginx: Path
) -> None:
    data = tmp_path / "data"
    cert, key = _certificate(tmp_path)
    # No service awake (no route at all) is a valid configuration too.
    for seconds, routes in ((5, ROUTES), (0, ROUTES), (5, {})):
        settings = Settings(
            data_dir=data, edge={"direct_routes": True, "auth_cache_seconds": seconds}
        )
        options = EdgeOptions(
            out_dir=tmp_path / f"edge{seconds}{len(routes)}", cert=cert, key=key, wakedock_ca=cert
        )
        config = render_edge(settings, VIEWS, options, routes)
        cached = "proxy_cache edge_auth;" in config.files["nginx.conf"]
        assert cached == bool(seconds and routes)
        write_edge(config)
        check_config(nginx, config)


def test_a_route_off_loopback_cannot_be_written(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, edge={"direct_routes": True})
    with pytest.raises(ValueError, match="upstream address"):
        render_edge(settings, VIEWS, _options(tmp_path), {"wiki": DirectRoute("1.2.3.4;", 80)})


@pytest.fixture
def ready_server() -> Iterator[tuple[int, list[bool]]]:
    """A local upstream whose /ready answers 200 once `ready[0]` is set, 503 before."""
    ready = [False]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200 if ready[0] else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1]), ready
    finally:
        server.shutdown()
        server.server_close()


def test_a_running_service_is_routed_once_its_probe_passes(
    ready_server: tuple[int, list[bool]],
) -> None:
    port, ready = ready_server
    lookups: list[str] = []

    def endpoint(view: ServiceView, container_port: int) -> Endpoint:
        lookups.append(view.name)
        return Endpoint("10.0.0.5" if view.name == "odd" else "127.0.0.1", port)

    def status(view: ServiceView) -> ContainerStatus:
        return ContainerStatus("c", view.name, State.RUNNING, Health.HEALTHY)

    routes = DirectRoutes(endpoint, status, FakeClock())
    views = [_view("wiki"), _view("odd"), _view("blog", state="stopped")]
    assert routes(views) == {}  # running, not ready yet (503)
    assert routes.waiting == {"wiki", "odd"}  # render again soon
    ready[0] = True
    assert routes(views) == {"wiki": DirectRoute("127.0.0.1", port)}
    assert routes.waiting == {"odd"}
    assert routes(views) == {"wiki": DirectRoute("127.0.0.1", port)}
    # The endpoint is looked up once per start (the sleeping one never); off loopback, never.
    assert lookups.count("wiki") == 1 and "blog" not in lookups
    # Stopping (the stop grace), or started again (a new port): no route until probed again.
    assert routes([replace(views[0], state="stopping")]) == {}
    ready[0] = False
    assert routes([replace(views[0], last_started_at=datetime.now(UTC))]) == {}
