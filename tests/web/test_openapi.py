"""The OpenAPI description is what the server really answers: schemathesis runs over the whole
API (in process, on SQLite and PostgreSQL) as an MFA-enrolled admin and as a viewer, and checks
that no answer is a server error and that every status, content type and body is the one the
description declares.

The fuzzer has its own accounts and may not end its own session halfway: the routes that would
(logout, its password, its MFA, disabling or deleting itself) are left out of the run here and
tested on their own elsewhere (tests/security, tests/mfa, tests/users).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import CLIENT_IP, Harness
from support.components import PostgresServer
from support.fake_runtime import FakeRuntime
from support.hashing import QuickHasher
from wakedock.app import create_app
from wakedock.components import build_components
from wakedock.config import load_settings
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Bounded: a few minutes for the whole run on a small machine.
EXAMPLES = 25

# Routes that end the caller's own session or lock it out: tested on their own, not fuzzed.
SELF_DESTRUCTIVE = {
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/password"),
    ("POST", "/api/v1/auth/mfa/disable"),
    ("DELETE", "/api/v1/auth/sessions/{session_id}"),
}
# Routes on a user id: allowed, except on the fuzzer's own accounts.
ON_A_USER = re.compile(r"^/api/v1/users/\{user_id\}")


@dataclass
class FuzzWorld:
    harness: Harness
    tokens: dict[str, str]
    own_ids: set[int]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzWorld]:
    root = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{root / 'wakedock.db'}"
    server: PostgresServer | None = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres")
        name = server.create_database()
        url = server.admin_url(name)
    settings_ = load_settings(
        None,
        {
            "data_dir": root / "data",
            "database": {"url": url},
            "http": {"docs_enabled": True},
            "auth": {"registration_enabled": True},
            # Secrets the fuzzer writes stay in this test's folder.
            "secrets": {"directory": root / "secrets"},
        },
    )
    components = build_components(settings_, hasher=QuickHasher(), runtime=FakeRuntime())
    app = create_app(components)
    client = TestClient(app, base_url="https://testserver", client=(CLIENT_IP, 50000))
    harness = Harness(components, app, client)
    tokens, own_ids = {}, set()
    for role in (Role.ADMIN, Role.VIEWER):
        name, password = harness.create_user(f"fuzz-{role.value}", role)
        body = harness.login(name, password)  # the admin enrols MFA: a full session
        tokens[role.value] = body["access_token"]
        own_ids.add(body["user"]["id"])
    yield FuzzWorld(harness, tokens, own_ids)
    components.engine.dispose()
    if server is not None:
        server.drop_database(name)


def _touches_own_account(case: Any, world: FuzzWorld) -> bool:
    if not ON_A_USER.match(case.path) or case.method == "GET":
        return False
    value = (case.path_parameters or {}).get("user_id")
    return isinstance(value, int) and value in world.own_ids


def _fuzz(operation: Any, mode: GenerationMode, world: FuzzWorld) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],  # report the first failure as found, unshrunk: quicker
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        assume(not _touches_own_account(case, world))
        # Each case as a viewer (refused writes, allowed reads), then as an admin.
        for role in ("viewer", "admin"):
            case.call_and_validate(headers=world.auth(role), checks=CHECKS)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_answers_as_described(fuzz_world: FuzzWorld, mode: GenerationMode) -> None:
    loaded = schemathesis.openapi.from_asgi("/api/openapi.json", fuzz_world.harness.app)
    failures, fuzzed = [], 0
    for result in loaded.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SELF_DESTRUCTIVE:
            continue
        fuzzed += 1
        try:
            _fuzz(operation, mode, fuzz_world)
        except Unsatisfiable:
            # Nothing to make invalid: no parameters, or only free text (a file path).
            assert mode is GenerationMode.NEGATIVE, operation.label
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - report every operation
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert fuzzed > 40
    assert failures == [], "\n\n".join(failures)


def test_the_description_names_every_error_and_both_login_bodies(fuzz_world: FuzzWorld) -> None:
    document = fuzz_world.harness.app.openapi()
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert set(login["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
    }
    assert {"400", "401", "403", "413", "429", "503"} <= set(login["responses"])
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                where = f"{method} {path} {status}"
                if status == "204":
                    assert "content" not in answer, where
                elif int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]
                    # The health report is the health check's answer whatever its status (503:
                    # a component is down); every other error is the one ErrorOut shape.
                    shape = "HealthReport" if where == "get /api/v1/health 503" else "ErrorOut"
                    assert schema == {"$ref": f"#/components/schemas/{shape}"}, where
    assert "HTTPValidationError" not in document["components"]["schemas"]
    # A PATCH of a service reads its body itself (to answer `invalid_spec`) and is described
    # by its shape: every field of a spec, none required, nothing else.
    patch = document["paths"]["/api/v1/services/{service_id}"]["patch"]
    body = patch["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ServicePatch"}
    described = document["components"]["schemas"]["ServicePatch"]
    spec = document["components"]["schemas"]["ServiceSpec"]
    assert set(described["properties"]) == set(spec["properties"])
    assert described.get("required", []) == []
    assert described["additionalProperties"] is False


def test_the_description_is_served_only_when_enabled(tmp_path: Path) -> None:
    settings_ = load_settings(None, {"data_dir": tmp_path / "data"})
    components = build_components(settings_, runtime=FakeRuntime())
    client = TestClient(create_app(components), base_url="https://testserver")
    assert client.get("/api/openapi.json").status_code == 404
    components.engine.dispose()
