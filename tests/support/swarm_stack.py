"""deploy/swarm-test.yaml deployed with `docker stack deploy` on the single-node test Swarm, and
its front door on 127.0.0.1 (docs/swarm.md).

Swarm publishes a port on every interface or not at all, so the stack publishes nothing; the
front door is a plain container outside the stack, on the stack's attachable `front` network,
publishing 127.0.0.1:<random> and relaying each TCP connection to WakeDock's HTTPS port (TLS
ends in WakeDock, as it would behind a TCP load balancer). Everything is named `wd-swarm-*`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx

from support.swarm import LOOPBACK

ROOT = Path(__file__).resolve().parents[2]
STACK_FILE = ROOT / "deploy" / "swarm-test.yaml"
TESTAPP = ROOT / "tests" / "support" / "apps" / "testapp.py"
DOCKER = os.environ.get("DOCKER_CLI", "docker")
# WakeDock's HTTPS port in the image (WAKEDOCK_SERVER__PORT).
HTTPS_PORT = 8443
# A TCP relay (stdlib only): each connection to :8443 is piped to $UPSTREAM.
RELAY = """
import asyncio, os
host, port = os.environ["UPSTREAM"].rsplit(":", 1)

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def handle(reader, writer):
    try:
        upstream = await asyncio.open_connection(host, int(port))
    except OSError as exc:
        print("upstream unreachable:", exc, flush=True)
        writer.close()
        return
    await asyncio.gather(pipe(reader, upstream[1]), pipe(upstream[0], writer))

async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", 8443, backlog=1024)
    print("relaying to", host, port, flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


@dataclass(frozen=True)
class SwarmStack:
    """A deployed stack: its name (also WakeDock's installation), the front door's port on
    127.0.0.1 and the certificate WakeDock generated (to verify TLS against)."""

    name: str
    port: int
    certificate: str

    def service(self, short: str) -> str:
        """The Swarm service name of one of the stack's services (`app` -> `<stack>_app`)."""
        return f"{self.name}_{short}"

    def client(self, **options: Any) -> httpx.Client:
        context = ssl.create_default_context(cadata=self.certificate)
        return httpx.Client(base_url=f"https://{LOOPBACK}:{self.port}", verify=context, **options)

    def async_client(self, **options: Any) -> httpx.AsyncClient:
        context = ssl.create_default_context(cadata=self.certificate)
        return httpx.AsyncClient(
            base_url=f"https://{LOOPBACK}:{self.port}", verify=context, **options
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


def _stack_env(name: str, wakedock_image: str, app_image: str, idle_timeout: int) -> dict[str, str]:
    return {
        **os.environ,
        "WAKEDOCK_IMAGE": wakedock_image,
        "APP_IMAGE": app_image,
        "TESTAPP": str(TESTAPP),
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "INSTALLATION": name,
        "IDLE_TIMEOUT": str(idle_timeout),
    }


def _certificate(client: docker.DockerClient, name: str) -> str:
    """WakeDock's generated certificate, read from its task container on this node."""
    found: list[str] = []

    def read() -> bool:
        for container in task_containers(client, f"{name}_wakedock"):
            code, output = container.exec_run(["cat", "/var/lib/wakedock/tls/cert.pem"])
            if code == 0 and b"BEGIN CERTIFICATE" in output:
                found.append(output.decode())
                return True
        return False

    wait_for("WakeDock's certificate", read, timeout=120, interval=0.5)
    return found[0]


def _healthy(stack: SwarmStack) -> bool:
    try:
        with stack.client(timeout=3) as http:
            answer = http.get("/api/v1/health/live", headers={"Host": "localhost"})
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


@contextlib.contextmanager
def deployed_stack(
    client: docker.DockerClient, *, wakedock_image: str, app_image: str, idle_timeout: int
) -> Iterator[SwarmStack]:
    """`docker stack deploy` of deploy/swarm-test.yaml and its front door, until WakeDock
    answers on 127.0.0.1; everything removed after (stack, front door, data volume)."""
    name = f"wd-swarm-{secrets.token_hex(3)}"
    front = None
    try:
        deployed = subprocess.run(
            [DOCKER, "stack", "deploy", "--detach=true", "-c", str(STACK_FILE), name],
            env=_stack_env(name, wakedock_image, app_image, idle_timeout),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if deployed.returncode != 0:
            raise AssertionError(f"docker stack deploy failed:\n{deployed.stderr}")
        front = client.containers.run(
            app_image,
            ["python3", "-c", RELAY],
            name=f"{name}-front",
            detach=True,
            network=f"{name}_front",
            ports={f"{HTTPS_PORT}/tcp": (LOOPBACK, None)},
            environment={"UPSTREAM": f"wakedock:{HTTPS_PORT}"},
            user="65534:65534",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit="64m",
            pids_limit=64,
        )
        front.reload()
        port = int(front.attrs["NetworkSettings"]["Ports"][f"{HTTPS_PORT}/tcp"][0]["HostPort"])
        stack = SwarmStack(name, port, _certificate(client, name))
        wait_for("WakeDock answering through the front door", lambda: _healthy(stack), 120)
        yield stack
    finally:
        if front is not None:
            front.remove(force=True)
        _remove_stack(client, name)


def _remove_stack(client: docker.DockerClient, name: str) -> None:
    """`docker stack rm`, then wait for its task containers and networks to go (the data
    volume can be removed only then)."""
    subprocess.run([DOCKER, "stack", "rm", name], capture_output=True, timeout=60, check=False)

    def gone() -> bool:
        containers = client.containers.list(
            all=True, filters={"label": f"com.docker.stack.namespace={name}"}
        )
        return not containers and not client.networks.list(filters={"name": f"{name}_"})

    wait_for(f"stack {name} removed", gone, timeout=90, interval=0.5)
    with contextlib.suppress(docker.errors.NotFound):
        client.volumes.get(f"{name}_data").remove(force=True)
