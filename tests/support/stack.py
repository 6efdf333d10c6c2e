"""The production stack, deploy/compose.yaml (and an override file), run with Debian's
docker-compose 1.29 from the local images (support/stack_images.py) and secret files written by
scripts/stack-secrets.sh, as tests/deploy/test_stack*.py use it."""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import pyotp

from support.login import access_token, bearer, login
from support.server import free_port
from support.stack_images import ROOT, free_subnet

COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
OPENBAO_OVERRIDE = ROOT / "deploy" / "compose.openbao.yaml"
PROJECT_LABEL = "com.docker.compose.project"
# The stack's first admin (tests/deploy: test_stack.py creates it, the `admin` fixture enrols it).
ADMIN = "stackadmin"
ADMIN_PASSWORD = "quiet-harbour-lantern-87"
STACK_SERVICES = {"edge", "wakedock", "socket-proxy", "postgres", "redis", "openbao"}


@dataclass
class Stack:
    project: str
    environment: dict[str, str]
    secrets_dir: Path
    port: int
    engine: docker.DockerClient
    files: tuple[Path, ...] = field(default=(COMPOSE_FILE,))
    # With the OpenBao override: where scripts/stack-openbao-init.sh keeps its keys.
    openbao_keys: Path | None = None

    @property
    def services_network(self) -> str:
        return self.environment["WAKEDOCK_SERVICES_NETWORK"]

    def compose(self, *args: str, stdin: str = "", timeout: float = 300) -> str:
        """`docker-compose -p <project> -f deploy/compose.yaml [-f ...] <args>`; its output."""
        files = [option for path in self.files for option in ("-f", str(path))]
        done = subprocess.run(
            ["docker-compose", "-p", self.project, *files, *args],
            input=stdin,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def exec(self, service: str, script: str, stdin: str = "") -> str:
        """A shell script run in the service's container (on its internal networks)."""
        return self.compose("exec", "-T", service, "sh", "-c", script, stdin=stdin)

    def containers(self) -> dict[str, dict[str, Any]]:
        """`docker inspect` of the project's containers, by compose service name."""
        found = self.engine.api.containers(
            all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}
        )
        attrs = [self.engine.api.inspect_container(c["Id"]) for c in found]
        return {a["Config"]["Labels"]["com.docker.compose.service"]: a for a in attrs}

    def client(self) -> httpx.Client:
        """An HTTPS client of the edge, trusting WakeDock's certificate, speaking TLS 1.3 only,
        and resending an idempotent request once when a reused connection closes before any
        answer, as browsers do (see `ResendOnStaleConnection`)."""
        context = ssl.create_default_context(cafile=str(self.secrets_dir / "wakedock_tls_cert"))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        transport = ResendOnStaleConnection(httpx.HTTPTransport(verify=context))
        return httpx.Client(
            base_url=f"https://localhost:{self.port}", transport=transport, timeout=30
        )


class ResendOnStaleConnection(httpx.BaseTransport):
    """Resends a GET or HEAD once when the server closed the connection without answering.

    The edge reloads nginx after a service changes (a wake does); the old workers finish what
    they are answering and then close their idle keep-alive connections. A request sent on one
    of those at that moment meets a closed connection: browsers and curl resend it on a new
    one, httpx does not. Anything else (a refused connection, a timeout, an answer cut short
    after it began, any other method) is raised as it is."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.resent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return self.inner.handle_request(request)
        except httpx.RemoteProtocolError as exc:
            if request.method not in {"GET", "HEAD"} or "without sending a response" not in str(
                exc
            ):
                raise
            self.resent += 1
            return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def wait_healthy(stack: Stack, services: int, timeout: float = 180) -> None:
    """Until the project's `services` containers are all healthy; fails with their logs."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {
            name: (a["State"].get("Health") or {}).get("Status", a["State"]["Status"])
            for name, a in stack.containers().items()
        }
        if len(states) == services and set(states.values()) == {"healthy"}:
            return
        if any(a["State"]["Status"] == "exited" for a in stack.containers().values()):
            break
        time.sleep(1)
    logs = stack.compose("logs", "--tail", "30")
    raise AssertionError(f"the stack is not healthy: {states}\n{logs[-6000:]}")


def on_services_network(stack: Stack, service: str | None = None) -> list[dict[str, Any]]:
    """The containers WakeDock made on the stack's services network (of one service)."""
    labels = ["wakedock.managed=wakedock"] + ([f"wakedock.service={service}"] if service else [])
    found = stack.engine.api.containers(
        all=True, filters={"label": labels, "network": stack.services_network}
    )
    return list(found)


@contextmanager
def running_stack(
    engine: docker.DockerClient,
    secrets_dir: Path,
    *,
    prefix: str,
    images: dict[str, str],
    files: tuple[Path, ...] = (COMPOSE_FILE,),
    services: int = 5,
    before_up: Callable[[Stack], None] | None = None,
) -> Iterator[Stack]:
    """The stack up and healthy, published on a free port of 127.0.0.1, a project named
    `<prefix>-<random>`; `before_up` runs first (after the secret files are written). Brought
    down with its volumes after."""
    subprocess.run(
        [str(ROOT / "scripts" / "stack-secrets.sh"), str(secrets_dir)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    environment = {
        **os.environ,
        **images,
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "WAKEDOCK_SECRETS_DIR": str(secrets_dir),
        "WAKEDOCK_PUBLISH_ADDRESS": "127.0.0.1",
        "WAKEDOCK_PUBLISH_PORT": str(port),
        "WAKEDOCK_APP_SUBNET": free_subnet(engine),
        "WAKEDOCK_ADMIN_URL": f"https://localhost:{port}",
        "WAKEDOCK_SERVICES_NETWORK": f"{prefix}-services-{secrets.token_hex(4)}",
    }
    project = f"{prefix}-{secrets.token_hex(4)}"
    running = Stack(project, environment, secrets_dir, port, engine, files)
    try:
        if before_up is not None:
            before_up(running)
        running.compose("up", "-d", timeout=400)
        wait_healthy(running, services)
        yield running
    finally:
        # What a failed test left on the services network (its name is this run's own) would
        # keep `down` from removing it.
        for container in on_services_network(running):
            engine.api.remove_container(container["Id"], force=True)
        running.compose("down", "-v", "--remove-orphans", timeout=120)


def init_openbao(stack: Stack) -> str:
    """scripts/stack-openbao-init.sh on the stack's OpenBao, as docs/deploy.md runs it; its
    progress output."""
    if stack.openbao_keys is None:
        raise AssertionError("the stack has no OpenBao keys directory")
    done = subprocess.run(
        [
            str(ROOT / "scripts" / "stack-openbao-init.sh"),
            str(stack.openbao_keys),
            str(stack.secrets_dir),
        ],
        env={**stack.environment, "COMPOSE_PROJECT_NAME": stack.project},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"stack-openbao-init.sh failed:\n{done.stdout}{done.stderr}")
    return done.stderr


def enrolled_admin(stack: Stack, username: str, password: str) -> dict[str, str]:
    """An admin of the stack's WakeDock (`wakedock user create` in its container unless it
    signs in already), signed in and MFA enrolled through the edge (the role may do nothing
    else before): its bearer header."""
    with stack.client() as client:
        exists = login(client, username, password).status_code == 200
    if not exists:
        create_admin(stack, username, password)
    with stack.client() as client:
        auth = bearer(access_token(client, username, password))
        secret = client.post("/api/v1/auth/mfa/setup", headers=auth).json()["secret"]
        code = pyotp.TOTP(secret).now()
        confirmed = client.post("/api/v1/auth/mfa/confirm", headers=auth, json={"code": code})
    if confirmed.status_code != 200:
        raise AssertionError(f"MFA enrolment failed: {confirmed.text}")
    return auth


def create_admin(stack: Stack, username: str, password: str) -> None:
    """`wakedock user create --role admin` in WakeDock's container."""
    subprocess.run(
        ["docker", "exec", "-i", stack.containers()["wakedock"]["Id"], "wakedock", "user",
         "create", username, "--role", "admin", "--email", f"{username}@example.com",
         "--password-stdin"],
        input=password + "\n", capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
