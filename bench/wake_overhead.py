"""Wake overhead: time to the first app response through WakeDock, minus a raw `docker start`
plus the first successful probe measured directly, same image, same run, alternating.

    .venv/bin/python bench/wake_overhead.py [--wakes 20]

Needs a Docker engine; builds the proxy tests' Python image (tests/support/docker_images.py).
The containers run on a user-defined bridge network of their own, removed at the end; every
request goes to 127.0.0.1. The WakeDock side uses one kept-alive HTTPS connection, so the
figure is the wake path (routing, start, readiness, proxying), not a TLS handshake.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import wakedock_command, wakedock_server
from support.docker_images import ensure_python_image
from support.engine import app_spec
from wakedock.runtime.docker_engine import DockerEngineRuntime
from wakedock.services.launch import launch_of
from wakedock.services.spec import ServiceSpec

SOCKET = "unix:///var/run/docker.sock"


def raw_wake(client: docker.DockerClient, ref: str) -> float:
    """docker start, then GET / every 2 ms until the app answers: the floor WakeDock adds to."""
    started = time.perf_counter()
    container = client.containers.get(ref)
    container.start()
    container.reload()
    port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    with httpx.Client(timeout=1) as http:
        while True:
            try:
                if http.get(f"http://127.0.0.1:{port}/").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.002)
    elapsed = time.perf_counter() - started
    container.stop(timeout=5)
    return elapsed


def wait_exited(client: docker.DockerClient, installation: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = client.containers.list(
            all=True,
            filters={"label": [f"wakedock.managed={installation}", "wakedock.service=app"]},
        )
        if found and found[0].status == "exited":
            return
        time.sleep(0.1)
    raise TimeoutError("the idle reaper did not stop the service")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wakes", type=int, default=20)
    args = parser.parse_args()
    client = docker.from_env()
    image = ensure_python_image(client)
    installation = f"wd-bench-{secrets.token_hex(3)}"
    network = client.networks.create(f"{installation}-net", driver="bridge")
    raw_runtime = DockerEngineRuntime(base_url=SOCKET, installation=f"{installation}-raw")
    raw_spec = app_spec(image, "raw", str(network.name), idle_timeout_s=2)
    raw_ref = raw_runtime.create(launch_of(ServiceSpec.model_validate(raw_spec), {}))

    def prepare(data_dir: Path, env: dict[str, str]) -> None:
        path = data_dir.parent / "app.yaml"
        path.write_text(yaml.safe_dump(app_spec(image, "app", str(network.name), idle_timeout_s=2)))
        subprocess.run(wakedock_command("service", "add", str(path)), env=env, check=True)

    env = {
        "WAKEDOCK_DOCKER__INSTALLATION": installation,
        "WAKEDOCK_PROXY__REAPER_INTERVAL_SECONDS": "0.1",
    }
    raw: list[float] = []
    woken: list[float] = []
    try:
        with (
            wakedock_server(env, prepare) as server,
            httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=60) as http,
        ):
            http.get("/api/v1/health")  # open the kept-alive connection
            for n in range(args.wakes):
                raw.append(raw_wake(client, raw_ref))
                started = time.perf_counter()
                reply = http.get("/", headers={"Host": "app.localhost"})
                woken.append(time.perf_counter() - started)
                if reply.status_code != 200:
                    raise RuntimeError(f"wake {n}: HTTP {reply.status_code}: {reply.text[:200]}")
                wait_exited(client, installation)
                print(
                    f"wake {n + 1:>2}: raw {raw[-1] * 1000:7.1f} ms   through WakeDock "
                    f"{woken[-1] * 1000:7.1f} ms",
                    flush=True,
                )
    finally:
        raw_runtime.remove(raw_ref)
        for container in client.containers.list(
            all=True, filters={"label": f"wakedock.managed={installation}"}
        ):
            container.remove(force=True)
        network.remove()
    raw_median, woken_median = statistics.median(raw), statistics.median(woken)
    paired = statistics.median(w - r for w, r in zip(woken, raw, strict=True))
    print(f"\n{args.wakes} wakes, image {image}")
    print(f"raw docker start + first probe: median {raw_median * 1000:.1f} ms")
    print(f"first response through WakeDock: median {woken_median * 1000:.1f} ms")
    print(f"overhead (difference of medians): {(woken_median - raw_median) * 1000:.1f} ms")
    print(f"overhead (median of paired differences): {paired * 1000:.1f} ms   target <= 50 ms")
    print(f"ratio WakeDock / raw: {woken_median / raw_median:.2f}")


if __name__ == "__main__":
    main()
