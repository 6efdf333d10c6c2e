"""The production stack (deploy/compose.yaml + deploy/compose.swarm.yaml, rendered by
scripts/swarm-stack.py) deployed with `docker stack deploy` on the single-node test Swarm, an
owner's app stack at 0 replicas on its services network, and a front door on 127.0.0.1
(docs/swarm.md).

The images are the production stack's own (support/stack_images.py), its secrets those of
scripts/stack-secrets.sh. One test override (`test_override`) goes on top of the Swarm one:
Swarm publishes a port on every interface or not at all (the renderer's `mode: host`), and this
machine publishes on loopback only, so the edge's port is not published; its `front` network is
made attachable instead, and the front door, a plain container outside the stack publishing
127.0.0.1:<random>, relays each TCP connection to the edge's port (TLS ends in the edge, as
behind a TCP load balancer). Every object is named `<PREFIX><hex>...` (WAKEDOCK_SWARM_PREFIX,
default `wd-swarm-`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import yaml

from support.stack_images import StackImages, free_subnet
from support.swarm import LOOPBACK

ROOT = Path(__file__).resolve().parents[2]
RENDERER = ROOT / "scripts" / "swarm-stack.py"
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
SWARM_OVERRIDE = ROOT / "deploy" / "compose.swarm.yaml"
TESTAPP = ROOT / "tests" / "support" / "apps" / "testapp.py"
DOCKER = os.environ.get("DOCKER_CLI", "docker")
PREFIX = os.environ.get("WAKEDOCK_SWARM_PREFIX", "wd-swarm-")
# The edge's HTTPS port in its container (deploy/compose.yaml).
HTTPS_PORT = 8443
# The front door, a TCP relay (stdlib only): each connection to :8443 is piped to $UPSTREAM.
RELAY = ROOT / "tests" / "support" / "apps" / "tcp_relay.py"


def test_override(reaper_interval: int) -> dict[str, Any]:
    """What the test changes on top of deploy/compose.swarm.yaml: no published port (Swarm
    would bind every interface), `front` attachable for the front door, a fast idle reaper."""
    return {
        "services": {
            "edge": {"ports": None},
            "wakedock": {
                "environment": {"WAKEDOCK_PROXY__REAPER_INTERVAL_SECONDS": str(reaper_interval)}
            },
        },
        "networks": {"front": {"attachable": True}},
    }


def owner_stack(services_network: str, idle_timeout: int) -> dict[str, Any]:
    """The owner's own stack: the test app at 0 replicas with WakeDock's discovery labels, on
    WakeDock's services network (external to it). Deployed with TESTAPP and APP_IMAGE set."""
    return {
        "services": {
            "app": {
                "image": "${APP_IMAGE}",
                "command": ["python3", "/srv/testapp.py"],
                "user": "65534:65534",
                "read_only": True,
                "cap_drop": ["ALL"],
                "environment": {"NAME": "swarm-app"},
                "configs": [{"source": "testapp", "target": "/srv/testapp.py", "mode": 0o444}],
                "networks": ["services"],
                "deploy": {
                    "endpoint_mode": "dnsrr",
                    # Asleep until a visit: WakeDock scales it 0 -> 1, and back when idle.
                    "replicas": 0,
                    "labels": {
                        "wakedock.enable": "true",
                        "wakedock.name": "app",
                        "wakedock.access": "public",
                        "wakedock.port": "8080",
                        "wakedock.readiness": "http:8080/",
                        "wakedock.idle_timeout": str(idle_timeout),
                        "wakedock.wake_timeout": "90",
                    },
                    # A thread per connection (tests/support/apps/testapp.py): 200 at once.
                    "resources": {"limits": {"cpus": "0.5", "memory": "128M", "pids": 512}},
                    "restart_policy": {"condition": "on-failure", "max_attempts": 5},
                },
            }
        },
        "configs": {"testapp": {"file": "${TESTAPP}"}},
        "networks": {"services": {"external": True, "name": services_network}},
    }


@dataclass(frozen=True)
class SwarmStack:
    """A deployed production stack: its name, the owner's stack's, the front door's port on
    127.0.0.1 and WakeDock's certificate (the edge's, from scripts/stack-secrets.sh)."""

    name: str
    owner: str
    port: int
    certificate: Path

    def service(self, short: str) -> str:
        """The Swarm service name of one of the stack's services (`edge` -> `<stack>_edge`);
        `app` is the owner's."""
        return f"{self.owner if short == 'app' else self.name}_{short}"

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certificate))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return context

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(
            base_url=f"https://{LOOPBACK}:{self.port}", verify=self._context(), **options
        )

    def async_client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"https://{LOOPBACK}:{self.port}", verify=self._context(), **options
        )


def replicas(client: docker.DockerClient, service: str) -> int:
    """The service's desired replicas, as the engine has them."""
    spec = client.api.inspect_service(service)["Spec"]
    return int(spec["Mode"]["Replicated"]["Replicas"])


def running_tasks(client: docker.DockerClient, service: str) -> int:
    tasks = client.api.tasks(filters={"service": service, "desired-state": "running"})
    return sum(1 for task in tasks if task["Status"]["State"] == "running")


def task_containers(client: docker.DockerClient, service: str) -> list[Any]:
    """The service's task containers on this node (the Swarm has one node)."""
    return client.containers.list(filters={"label": f"com.docker.swarm.service.name={service}"})


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.25) -> float:
    """Poll `check()` until true; the seconds it took. AssertionError naming `what` after."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start


def render(directory: Path, reaper_interval: int) -> Path:
    """scripts/swarm-stack.py on deploy/compose.yaml, deploy/compose.swarm.yaml and the test
    override; the stack file's path."""
    override = directory / "compose.test.yaml"
    override.write_text(yaml.safe_dump(test_override(reaper_interval)))
    output = directory / "stack.yaml"
    rendered = subprocess.run(
        [sys.executable, str(RENDERER), "--compose", str(COMPOSE_FILE),
         "--override", str(SWARM_OVERRIDE), "--override", str(override), "-o", str(output)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if rendered.returncode != 0:
        raise AssertionError(f"scripts/swarm-stack.py failed:\n{rendered.stderr}")
    return output


def _deploy(path: Path, name: str, environment: dict[str, str]) -> None:
    deployed = subprocess.run(
        [DOCKER, "stack", "deploy", "--detach=true", "-c", str(path), name],
        env=environment, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if deployed.returncode != 0:
        raise AssertionError(f"docker stack deploy {name} failed:\n{deployed.stderr}")


def _healthy(stack: SwarmStack) -> bool:
    """WakeDock ready through the front door and the edge (nginx + ModSecurity + CRS)."""
    try:
        with stack.client(timeout=3) as http:
            answer = http.get("/api/v1/health", headers={"Host": "localhost"})
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False
    components = answer.json()["components"]
    return components["database"] == components["container_engine"] == "ok"


def _logs(client: docker.DockerClient, name: str) -> str:
    """The last lines of each of the stack's tasks, for a failure's message."""
    lines = []
    for container in client.containers.list(
        all=True, filters={"label": f"com.docker.stack.namespace={name}"}
    ):
        tail = container.logs(tail=15).decode(errors="replace")
        lines.append(f"--- {container.name} ({container.status})\n{tail}")
    return "\n".join(lines)[-8000:]


@contextlib.contextmanager
def deployed_stack(
    client: docker.DockerClient,
    *,
    images: StackImages,
    app_image: str,
    directory: Path,
    idle_timeout: int,
    reaper_interval: int = 1,
) -> Iterator[SwarmStack]:
    """The production stack deployed with `docker stack deploy`, the owner's app stack, and
    the front door, until WakeDock answers through the edge on 127.0.0.1 and knows the app;
    everything removed after (stacks, front door, volumes)."""
    name = f"{PREFIX}{secrets.token_hex(3)}"
    owner = f"{name}-owner"
    services_network = f"{name}-services"
    secrets_dir = directory / "secrets"
    subprocess.run(
        [str(ROOT / "scripts" / "stack-secrets.sh"), str(secrets_dir)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    environment = {
        **os.environ,
        **images.environment(),
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "WAKEDOCK_SECRETS_DIR": str(secrets_dir),
        "WAKEDOCK_APP_SUBNET": free_subnet(client),
        "WAKEDOCK_ADMIN_URL": "https://localhost",
        "WAKEDOCK_SERVICES_NETWORK": services_network,
        "APP_IMAGE": app_image,
        "TESTAPP": str(TESTAPP),
    }
    front = None
    try:
        _deploy(render(directory, reaper_interval), name, environment)
        app_file = directory / "owner.yaml"
        app_file.write_text(yaml.safe_dump(owner_stack(services_network, idle_timeout)))
        _deploy(app_file, owner, environment)
        front = client.containers.run(
            app_image,
            ["python3", "-c", RELAY.read_text()],
            name=f"{name}-front",
            detach=True,
            network=f"{name}_front",
            ports={f"{HTTPS_PORT}/tcp": (LOOPBACK, None)},
            environment={"UPSTREAM": f"edge:{HTTPS_PORT}"},
            user="65534:65534",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit="64m",
            pids_limit=64,
        )
        front.reload()
        port = int(front.attrs["NetworkSettings"]["Ports"][f"{HTTPS_PORT}/tcp"][0]["HostPort"])
        stack = SwarmStack(name, owner, port, secrets_dir / "wakedock_tls_cert")
        try:
            wait_for("WakeDock ready through the edge", lambda: _healthy(stack), 150, 1)
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n{_logs(client, name)}") from None
        # The owner's app was deployed after WakeDock started: live discovery (the service
        # events the socket proxy judges, docs/socket-proxy.md) finds it, with no reconcile.
        [wakedock] = task_containers(client, stack.service("wakedock"))
        wait_for("the owner's app discovered live", lambda: _discovered(wakedock, "app"), 60, 1)
        yield stack
    finally:
        if front is not None:
            front.remove(force=True)
        _remove_stack(client, owner)
        _remove_stack(client, name)


def _discovered(wakedock: Any, service: str) -> bool:
    """Whether `wakedock service list` in WakeDock's task lists `service` as discovered."""
    code, output = wakedock.exec_run(["wakedock", "service", "list"])
    rows = [line.split() for line in output.decode(errors="replace").splitlines()[1:]]
    return code == 0 and any(row[1:3] == [service, "discovered"] for row in rows)


def _remove_stack(client: docker.DockerClient, name: str) -> None:
    """`docker stack rm`, then wait for its task containers and networks to go (its volumes
    can be removed only then)."""
    subprocess.run([DOCKER, "stack", "rm", name], capture_output=True, timeout=60, check=False)

    def gone() -> bool:
        label = f"com.docker.stack.namespace={name}"
        containers = client.api.containers(all=True, filters={"label": label})
        return not containers and not client.api.networks(filters={"label": label})

    wait_for(f"stack {name} removed", gone, timeout=90, interval=0.5)
    for volume in client.api.volumes(filters={"name": f"{name}_"})["Volumes"] or []:
        if volume["Name"].startswith(f"{name}_"):
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_volume(volume["Name"], force=True)
