"""Fixtures: real WakeDock objects on SQLite and on a real PostgreSQL, built by factories."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from support.components import PostgresServer, RedisServer, start_postgres, start_redis
from wakedock.app import create_app
from wakedock.audit.events import RequestContext
from wakedock.auth.passwords import PasswordHasher
from wakedock.clock import Clock
from wakedock.components import Components, build_components
from wakedock.config import Settings, load_settings
from wakedock.db import transaction
from wakedock.rbac.permissions import Role

# An address from TEST-NET-3: what the app sees as the client's socket peer.
CLIENT_IP = "203.0.113.10"
FAST_HASHER_ARGS = (19456, 2, 1)  # OWASP minimum: quick, and still what production allows


def strong_password() -> str:
    return "Wd-" + secrets.token_urlsafe(18)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every test that touches the database runs on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'wakedock.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = server.create_database()
    yield server.admin_url(name)
    server.drop_database(name)


@dataclass
class Harness:
    """An app wired for one test, with handy factories."""

    components: Components
    app: FastAPI
    client: TestClient

    def create_user(
        self,
        username: str,
        role: Role = Role.VIEWER,
        *,
        password: str | None = None,
        email: str | None = None,
    ) -> tuple[str, str]:
        password = password or strong_password()
        with transaction(self.components.db) as db:
            self.components.users.create(
                db,
                RequestContext(actor="test"),
                username=username,
                password=password,
                role=role,
                email=email,
            )
        return username, password

    def login(self, username: str, password: str, **extra: Any) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password, **extra}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def token_for(self, role: Role, username: str | None = None) -> str:
        name, password = self.create_user(username or f"{role.value}-{secrets.token_hex(3)}", role)
        return str(self.login(name, password)["access_token"])

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    def factory(**sections: Any) -> Settings:
        overrides: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database": {"url": database_url},
        }
        for key, value in sections.items():
            if isinstance(value, dict):
                overrides.setdefault(key, {}).update(value)
            else:
                overrides[key] = value
        return load_settings(None, overrides)

    return factory


@pytest.fixture
def make_harness(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Harness]]:
    engines = []

    def factory(clock: Clock | None = None, client_ip: str = CLIENT_IP, **sections: Any) -> Harness:
        settings = make_settings(**sections)
        components = build_components(
            settings, clock=clock, hasher=PasswordHasher(*FAST_HASHER_ARGS)
        )
        engines.append(components.engine)
        app = create_app(components)
        client = TestClient(app, base_url="https://testserver", client=(client_ip, 50000))
        return Harness(components, app, client)

    yield factory
    for engine in engines:
        engine.dispose()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


@pytest.fixture
def client(harness: Harness) -> TestClient:
    return harness.client


@pytest.fixture
def admin_credentials(harness: Harness) -> tuple[str, str]:
    """The admin account of a test: created by the fixture, never a default account."""
    return harness.create_user("admin", Role.ADMIN, email="admin@example.com")


@pytest.fixture
def admin_token(harness: Harness, admin_credentials: tuple[str, str]) -> str:
    return str(harness.login(*admin_credentials)["access_token"])
