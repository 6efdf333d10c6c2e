"""A service WakeDock reaches by a host name (docker.network) gets no direct route: nginx needs
an IP literal there. It goes to WakeDock, and is not `waiting` (no render would route it)."""

from __future__ import annotations

from datetime import UTC, datetime

from wakedock.clock import FakeClock
from wakedock.edge.routes import DirectRoute, DirectRoutes
from wakedock.runtime.base import ContainerStatus, Endpoint, Health, State
from wakedock.services.snapshots import ServiceView
from wakedock.services.spec import ServiceSpec


def _view(name: str) -> ServiceView:
    now = datetime.now(UTC)
    spec = ServiceSpec.model_validate(
        {
            "name": name,
            "image": "nginx:1",
            "ports": [{"container_port": 8080}],
            # Read from the engine: no probe connects anywhere in this test.
            "readiness": {"type": "healthcheck", "test": ["CMD", "true"]},
        }
    )
    return ServiceView(
        id=1, name=name, owner_id=None, source="api", spec=spec, writable_root_granted=False,
        runtime="engine", container_ref=f"ref-{name}", state="running", stop_reason=None,
        created_at=now, updated_at=now, last_started_at=now, last_stopped_at=None,
    )  # fmt: skip


def test_a_service_reached_by_name_is_left_to_wakedock() -> None:
    lookups: list[str] = []

    def endpoint(view: ServiceView, container_port: int) -> Endpoint:
        lookups.append(view.name)
        host = "wakedock-named" if view.name == "named" else "127.0.0.1"
        return Endpoint(host, 18080)

    def status(view: ServiceView) -> ContainerStatus:
        return ContainerStatus("c", view.name, State.RUNNING, Health.HEALTHY)

    routes = DirectRoutes(endpoint, status, FakeClock())
    views = [_view("named"), _view("local")]
    assert routes(views) == {"local": DirectRoute("127.0.0.1", 18080)}
    assert routes.waiting == frozenset()
    assert routes(views) == {"local": DirectRoute("127.0.0.1", 18080)}
    assert lookups.count("named") == 1  # looked up once per start, as any other
