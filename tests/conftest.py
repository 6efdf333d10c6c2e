"""Fixtures: real WakeDock objects on SQLite and on a real PostgreSQL, built by factories."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from support.components import PostgresServer, RedisServer, start_postgres, start_redis
from support.hashing import QuickHasher
from wakedock.app import create_app
from wakedock.clock import Clock
from wakedock.components import Components, build_components
from wakedock.config import Settings, load_settings
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.mfa import totp
from wakedock.rbac.permissions import Role
from wakedock.runtime.base import ContainerRuntime

# An address from TEST-NET-3: what the app sees as the client's socket peer.
CLIENT_IP = "203.0.113.10"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "waf_expected: sends what the edge's WAF refuses on purpose (through the edge)"
    )
    config.addinivalue_line("markers", "browser: drives a real Chromium (tests/browser)")
    # WAKEDOCK_TEST_THROUGH_EDGE=1: every TestClient request through a real edge, a failure
    # for any WAF block or score (support/through_edge.py). Unset, nothing changes.
    if os.environ.get("WAKEDOCK_TEST_THROUGH_EDGE") == "1":
        from support import through_edge  # support.edge imports this module: not at the top

        config.pluginmanager.register(through_edge, "wakedock-through-edge")


# No vowels and none of the digits or symbols the policy reads as letters (4 -> a, 3 -> e, ...):
# a random password can then never spell a username or the product's name, which the policy
# refuses (a test once failed when 24 random characters happened to read "vera").
_PASSWORD_ALPHABET = "BCDFGHJKLMNPQRSTVWXZbcdfghjklmnpqrstvwxz2689-_"


def strong_password() -> str:
    return "Wd-" + "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(24))


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
    """An app wired for one test, with handy factories.

    `login` handles MFA as a user would: it answers the challenge with a TOTP code and, for a
    role that must use MFA, enrols on first login (the secrets are kept in `mfa_secrets`).
    """

    components: Components
    app: FastAPI
    client: TestClient
    mfa_secrets: dict[str, str] = field(default_factory=dict)
    backup_codes: dict[str, list[str]] = field(default_factory=dict)
    last_totp_step: dict[str, int] = field(default_factory=dict)

    def totp_code(self, username: str) -> str:
        """A valid code never used before: a later step (within the +-1 window) if needed.

        Never the previous step: on a real clock, the step can turn between making the code and
        checking it, which would leave a previous-step code outside the window."""
        now = totp.current_step(self.components.clock.now())
        step = max(now, self.last_totp_step.get(username, now - 1) + 1)
        if step > now + 1:
            raise RuntimeError("more than two TOTP codes in one 30 s step: advance the clock")
        self.last_totp_step[username] = step
        return pyotp.TOTP(self.mfa_secrets[username]).generate_otp(step)

    def enrol_mfa(self, username: str, access_token: str) -> list[str]:
        """Enrol through the API (setup + confirm); returns the backup codes."""
        setup = self.client.post("/api/v1/auth/mfa/setup", headers=self.bearer(access_token))
        assert setup.status_code == 200, setup.text
        self.mfa_secrets[username] = setup.json()["secret"]
        confirm = self.client.post(
            "/api/v1/auth/mfa/confirm",
            headers=self.bearer(access_token),
            json={"code": self.totp_code(username)},
        )
        assert confirm.status_code == 200, confirm.text
        codes: list[str] = confirm.json()["backup_codes"]
        self.backup_codes[username] = codes
        return codes

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

    def login(
        self, username: str, password: str, *, enrol: bool = True, **extra: Any
    ) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password, **extra}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body.get("requires_mfa"):
            verified = self.client.post(
                "/api/v1/auth/mfa/verify",
                json={
                    "challenge_token": body["challenge_token"],
                    "code": self.totp_code(username),
                    "mode": extra.get("mode", "token"),
                },
            )
            assert verified.status_code == 200, verified.text
            body = verified.json()
        elif (
            enrol
            and "access_token" in body
            and self.components.mfa.required_for(body["user"]["role"])
        ):
            self.enrol_mfa(username, body["access_token"])
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
            # Live discovery follows the engine in a thread of its own: on where a test asks.
            "docker": {"live_discovery": False},
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

    def factory(
        clock: Clock | None = None,
        client_ip: str = CLIENT_IP,
        runtime: ContainerRuntime | None = None,
        **sections: Any,
    ) -> Harness:
        settings = make_settings(**sections)
        components = build_components(settings, clock=clock, hasher=QuickHasher(), runtime=runtime)
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


# Under pytest-xdist (`scripts/test.sh` runs the suite on two workers), the tests that drive the
# machine's one Docker engine (containers, networks, Swarm, images) or a Chromium run one after
# the other on one worker, as they were written to: a Swarm left or an image rebuilt by one of
# them would pull the ground from under another, and Chromium's HTTP/2 connections close when
# Docker adds an interface. Everything else (in-process apps, server subprocesses on ports of
# their own, databases of their own) is spread over both workers, one test at a time.
SERIAL_DIRECTORIES = frozenset(
    {"integration", "deploy", "podman", "runtime", "sockproxy", "edge", "browser"}
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    # xdist's own `loadgroup` cannot be used: it renames items by a private attribute that
    # pytest 9 no longer reads, so its groups are silently ignored.
    from xdist.scheduler import LoadScopeScheduling

    class EngineTestsInOrder(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "engine" if _serial(nodeid) else nodeid

    return EngineTestsInOrder(config, log)


def _serial(nodeid: str) -> bool:
    top = nodeid.split("/", 2)
    return len(top) == 3 and top[0] == "tests" and top[1] in SERIAL_DIRECTORIES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # On xdist's workers, the tests that run in order come first: that longest unit then starts
    # at once, and the other worker takes the spread tests meanwhile. The order within each
    # part is the collection's (a stable sort, the same on every worker).
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: not _serial(item.nodeid))


def pytest_itemcollected(item: pytest.Item) -> None:
    # `-m browser` selects the Chromium tests (.ci/run runs them through the edge, `security`
    # ones included: `-m "not security or browser"`).
    if item.path.is_relative_to(Path(__file__).parent / "browser"):
        item.add_marker(pytest.mark.browser)
