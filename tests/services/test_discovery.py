"""Label discovery and start-up reconciliation, on the in-memory runtime."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.rbac.permissions import Role
from wakedock.runtime.base import DiscoveredWorkload, State
from wakedock.services.discovery import InvalidLabels, spec_from_labels
from wakedock.services.models import Service

CONTEXT = RequestContext(actor="system:reconcile")


def workload(labels: dict[str, str], **extra: object) -> DiscoveredWorkload:
    return DiscoveredWorkload(
        "ref1",
        "My_Blog",
        "wakedock-test/busybox:1",
        State.STOPPED,
        labels,
        **extra,  # type: ignore[arg-type]
    )


def test_labels_configure_the_service() -> None:
    spec = spec_from_labels(
        workload(
            {
                "wakedock.enable": "true",
                "wakedock.host": "blog.example.com, www.example.com",
                "wakedock.port": "8080",
                "wakedock.readiness": "http:8080/healthz",
                "wakedock.idle_timeout": "15m",
                "wakedock.wake_timeout": "45",
                "wakedock.access": "roles:admin,operator",
                "wakedock.display_name": "My <b>Blog</b>",
            }
        )
    )
    assert spec.name == "my-blog"
    assert spec.hosts == ["blog.example.com", "www.example.com"]
    assert spec.idle_timeout_s == 900 and spec.wake_timeout_s == 45
    assert spec.readiness.type == "http" and spec.readiness.path == "/healthz"
    assert spec.access.policy == "roles" and spec.access.roles == ["admin", "operator"]
    assert spec.display_name == "My <b>Blog</b>"


def test_a_label_chooses_the_dark_loading_page() -> None:
    labels = {"wakedock.enable": "true", "wakedock.port": "80", "wakedock.loading_page": "dark"}
    assert spec_from_labels(workload(labels)).loading_page.theme == "dark"
    assert (
        spec_from_labels(
            workload({**labels, "wakedock.loading_page": "default"})
        ).loading_page.theme
        == "default"
    )


def test_readiness_defaults_to_the_containers_own_healthcheck_then_its_port() -> None:
    own = spec_from_labels(workload({"wakedock.enable": "true"}, healthcheck=("CMD", "true")))
    assert own.readiness.type == "healthcheck"
    by_port = spec_from_labels(workload({"wakedock.enable": "true", "wakedock.port": "80"}))
    assert by_port.readiness.type == "tcp" and by_port.readiness.port == 80


@pytest.mark.parametrize(
    ("labels", "named"),
    [
        ({}, "wakedock.readiness"),
        ({"wakedock.readiness": "exec:rm -rf /"}, "wakedock.readiness"),
        ({"wakedock.port": "80; reboot"}, "wakedock.port"),
        ({"wakedock.idle_timeout": "forever", "wakedock.port": "80"}, "wakedock.idle_timeout"),
        ({"wakedock.access": "everyone", "wakedock.port": "80"}, "wakedock.access"),
        ({"wakedock.name": "<script>", "wakedock.port": "80"}, "name"),
        ({"wakedock.host": "a b.com", "wakedock.port": "80"}, "hosts"),
        ({"wakedock.loading_page": "custom", "wakedock.port": "80"}, "wakedock.loading_page"),
    ],
)
def test_invalid_labels_are_refused_by_name(labels: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidLabels, match=named.replace(".", r"\.")):
        spec_from_labels(workload({"wakedock.enable": "true", **labels}))


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    return make_harness(runtime=runtime)


def test_reconcile_discovers_labelled_containers_only(h: Harness, runtime: FakeRuntime) -> None:
    runtime.add_foreign(
        "blog", {"wakedock.enable": "true", "wakedock.port": "80"}, state=State.RUNNING
    )
    runtime.add_foreign("bystander", {"com.example": "x"}, state=State.RUNNING)
    runtime.add_foreign("broken", {"wakedock.enable": "true"})
    report = h.components.reconciler.run(CONTEXT)
    assert report.discovered == ["blog"]
    assert report.problems and report.problems[0].startswith("broken:")
    token = h.token_for(Role.OPERATOR)
    listed = h.client.get("/api/v1/services", headers=h.bearer(token)).json()
    assert [(s["name"], s["source"], s["state"]) for s in listed] == [
        ("blog", "discovered", "running")
    ]
    # Running it again changes nothing and audits nothing new.
    assert h.components.reconciler.run(CONTEXT).discovered == []


def test_discovered_services_are_operated_but_configured_by_labels(
    h: Harness, runtime: FakeRuntime
) -> None:
    ref = runtime.add_foreign("blog", {"wakedock.enable": "true", "wakedock.port": "80"})
    h.components.reconciler.run(CONTEXT)
    operator = h.token_for(Role.OPERATOR)
    developer = h.token_for(Role.DEVELOPER)
    [service] = h.client.get("/api/v1/services", headers=h.bearer(operator)).json()
    base = f"/api/v1/services/{service['id']}"
    # No owner: a developer cannot operate it; an operator can.
    assert h.client.post(f"{base}/start", headers=h.bearer(developer)).status_code == 403
    assert h.client.post(f"{base}/start", headers=h.bearer(operator)).status_code == 200
    assert runtime.containers[ref].state is State.RUNNING
    patched = h.client.patch(base, json={"idle_timeout_s": 60}, headers=h.bearer(operator))
    assert patched.status_code == 409 and patched.json()["code"] == "configured_by_labels"
    assert h.client.delete(base, headers=h.bearer(operator)).status_code == 409


def test_a_discovered_service_goes_once_its_container_is_unlabelled_or_gone(
    h: Harness, runtime: FakeRuntime
) -> None:
    unlabelled = runtime.add_foreign("blog", {"wakedock.enable": "true", "wakedock.port": "80"})
    runtime.add_foreign("shop", {"wakedock.enable": "true", "wakedock.port": "80"})
    h.components.reconciler.run(CONTEXT)
    operator = h.bearer(h.token_for(Role.OPERATOR))
    ids = {s["name"]: s["id"] for s in h.client.get("/api/v1/services", headers=operator).json()}
    runtime.containers[unlabelled].labels.pop("wakedock.enable")  # the owner opted out
    runtime.containers = {r: c for r, c in runtime.containers.items() if c.name != "shop"}
    for name in ("blog", "shop"):
        assert h.client.delete(f"/api/v1/services/{ids[name]}", headers=operator).status_code == 204
    assert h.client.get("/api/v1/services", headers=operator).json() == []
    # The owner's container is never removed by WakeDock.
    assert unlabelled in runtime.containers


def test_container_removed_by_hand_becomes_missing_then_start_recreates_it(
    h: Harness, runtime: FakeRuntime
) -> None:
    token = h.token_for(Role.OPERATOR)
    body = {
        "name": "app",
        "image": "wakedock-test/busybox:1",
        "readiness": {"type": "tcp", "port": 80},
    }
    sid = h.client.post("/api/v1/services", json=body, headers=h.bearer(token)).json()["id"]
    runtime.containers.clear()  # `docker rm -f` behind WakeDock's back
    report = h.components.reconciler.run(CONTEXT)
    assert report.missing == ["app"]
    status = h.client.get(f"/api/v1/services/{sid}/status", headers=h.bearer(token)).json()
    assert status["state"] == "missing" and status["stop_reason"] == "missing"
    started = h.client.post(f"/api/v1/services/{sid}/start", headers=h.bearer(token))
    assert started.status_code == 200 and started.json()["state"] == "running"
    assert len(runtime.containers) == 1


def test_reconcile_adopts_a_container_left_by_an_interrupted_create(
    h: Harness, runtime: FakeRuntime
) -> None:
    token = h.token_for(Role.OPERATOR)
    body = {
        "name": "app",
        "image": "wakedock-test/busybox:1",
        "readiness": {"type": "tcp", "port": 80},
    }
    sid = h.client.post("/api/v1/services", json=body, headers=h.bearer(token)).json()["id"]
    [ref] = runtime.containers
    with transaction(h.components.db) as db:
        row = db.get(Service, sid)
        assert row is not None
        row.container_ref = None
    report = h.components.reconciler.run(CONTEXT)
    assert report.adopted == ["app"]
    assert h.components.services.get(sid).container_ref == ref
