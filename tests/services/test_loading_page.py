"""`loading_page` in a service's spec, through the API: a theme, and for a custom one a template
uploaded through the files API into the service's own folder, checked when the spec is saved."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.rbac.permissions import Role
from wakedock.services.spec import ServiceSpec

SPEC = {"image": "wakedock-test/busybox:1", "readiness": {"type": "tcp", "port": 80}}
CUSTOM = {"theme": "custom", "template": "blog/loading.html"}


@pytest.fixture
def h(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(runtime=FakeRuntime())


@pytest.fixture
def alice(h: Harness) -> dict[str, str]:
    """A developer who owns the service `blog` (default theme)."""
    auth = h.bearer(h.token_for(Role.DEVELOPER, "alice"))
    created = h.client.post("/api/v1/services", json={"name": "blog", **SPEC}, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["loading_page"] == {"theme": "default", "template": None}
    return auth


def patch(h: Harness, auth: dict[str, str], loading_page: object) -> tuple[int, dict[str, object]]:
    service_id = h.components.services.get("blog").id
    answer = h.client.patch(
        f"/api/v1/services/{service_id}", json={"loading_page": loading_page}, headers=auth
    )
    return answer.status_code, answer.json()


def test_the_owner_uploads_a_template_and_chooses_it(h: Harness, alice: dict[str, str]) -> None:
    put = h.client.put("/api/v1/files/blog/loading.html", content=b"<h1>{{ display_name }}</h1>",
                       headers=alice)  # fmt: skip
    assert put.status_code == 200, put.text
    status, body = patch(h, alice, CUSTOM)
    assert status == 200, body
    assert body["spec"]["loading_page"] == CUSTOM
    # Stored with the spec: read back after the change, and the dark theme in turn.
    assert h.components.services.get("blog").spec.loading_page.template == "blog/loading.html"
    status, body = patch(h, alice, {"theme": "dark"})
    assert status == 200 and body["spec"]["loading_page"]["theme"] == "dark"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such file"),
        (b"x" * (64 * 1024 + 1), "larger than 65536 bytes"),
        (b"\xff\xfe<h1>", "not UTF-8"),
        (b"<h1>{{ display_name </h1>", "does not parse"),
    ],
)
def test_a_template_that_cannot_be_used_is_refused_on_save(
    h: Harness, alice: dict[str, str], content: bytes | None, says: str
) -> None:
    if content is not None:
        put = h.client.put("/api/v1/files/blog/loading.html", content=content, headers=alice)
        assert put.status_code == 200, put.text
    status, body = patch(h, alice, CUSTOM)
    assert status == 422
    assert body["code"] == "invalid_spec" and says in str(body["detail"])
    assert h.components.services.get("blog").spec.loading_page.theme == "default"


@pytest.mark.parametrize(
    "loading_page",
    [
        {"theme": "custom"},
        {"theme": "dark", "template": "blog/loading.html"},
        {"theme": "neon"},
        # Attacks on purpose (the edge's WAF refuses them first: its job), as in the API.
        pytest.param({"theme": "custom", "template": "/etc/passwd"}, marks=pytest.mark.security),
        pytest.param(
            {"theme": "custom", "template": "blog/../other/loading.html"},
            marks=pytest.mark.security,
        ),
        {"theme": "custom", "template": "blog/./loading.html"},
        {"theme": "custom", "template": "loading.html"},
        {"theme": "custom", "template": "blog\\loading.html"},
        {"theme": "custom", "template": "blog/loading.html", "script": "x"},
    ],
)
def test_malformed_choices_are_refused(
    h: Harness, alice: dict[str, str], loading_page: object
) -> None:
    status, body = patch(h, alice, loading_page)
    assert status == 422 and body["code"] == "invalid_spec", body


@pytest.mark.security
def test_a_template_of_another_services_folder_is_refused(h: Harness) -> None:
    """Bob cannot have his service show (and so read through the preview) Alice's files."""
    alice = h.bearer(h.token_for(Role.DEVELOPER, "alice"))
    bob = h.bearer(h.token_for(Role.DEVELOPER, "bob"))
    for name, auth in (("blog", alice), ("shop", bob)):
        created = h.client.post("/api/v1/services", json={"name": name, **SPEC}, headers=auth)
        assert created.status_code == 201
    h.client.put("/api/v1/files/blog/loading.html", content=b"<p>alice's</p>", headers=alice)
    answer = h.client.patch(
        f"/api/v1/services/{h.components.services.get('shop').id}",
        json={"loading_page": {"theme": "custom", "template": "blog/loading.html"}},
        headers=bob,
    )
    assert answer.status_code == 422
    assert answer.json()["fields"] == ["loading_page"]
    assert h.components.services.get("shop").spec.loading_page.theme == "default"
    # Not even an admin can point a service at another one's folder.
    admin = h.bearer(h.token_for(Role.ADMIN))
    created = h.client.post(
        "/api/v1/services",
        json={"name": "wiki", **SPEC, "loading_page": {"theme": "custom",
                                                         "template": "blog/loading.html"}},
        headers=admin,
    )  # fmt: skip
    assert created.status_code == 422


def test_the_spec_model_checks_the_folder_itself() -> None:
    with pytest.raises(ValidationError, match="service's folder"):
        ServiceSpec.model_validate({"name": "shop", **SPEC, "loading_page": CUSTOM})
    spec = ServiceSpec.model_validate({"name": "blog", **SPEC, "loading_page": CUSTOM})
    assert spec.loading_page.template == "blog/loading.html"
