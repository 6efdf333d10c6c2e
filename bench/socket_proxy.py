"""The socket proxy's cost per Engine API call: `GET /_ping` and a labelled container's inspect,
direct to the engine and through `wakedock socket-proxy`, in interleaved rounds (medians), and
the proxy's own CPU time per call (from /proc). Needs the local engine.

    PYTHONPATH=src python bench/socket_proxy.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.docker_images import TEST_IMAGE, ensure_test_image
from support.socket_proxy import start_socket_proxy

CALLS = 300
ROUNDS = 5
INSTALLATION = "wd-sockproxy-bench"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_call_ms(client: docker.DockerClient, container_id: str) -> tuple[float, float]:
    started = time.perf_counter()
    for _ in range(CALLS):
        client.api.ping()
    ping = (time.perf_counter() - started) / CALLS * 1000
    started = time.perf_counter()
    for _ in range(CALLS):
        client.api.inspect_container(container_id)
    return ping, (time.perf_counter() - started) / CALLS * 1000


def main() -> None:
    engine = docker.from_env()
    ensure_test_image(engine)
    container = engine.containers.create(
        TEST_IMAGE,
        ["true"],
        name=f"{INSTALLATION}-inspected",
        labels={"wakedock.managed": INSTALLATION, "wakedock.service": "inspected"},
    )
    with tempfile.TemporaryDirectory(prefix="wdsp") as directory:
        proxies = start_socket_proxy(Path(directory), "--installation", INSTALLATION)
        proxy = next(proxies)
        try:
            through = docker.DockerClient(base_url=proxy.url)
            direct: list[tuple[float, float]] = []
            proxied: list[tuple[float, float]] = []
            cpu: list[float] = []
            for _ in range(ROUNDS):
                direct.append(_per_call_ms(engine, container.id))
                before = _cpu_seconds(proxy.process.pid)
                proxied.append(_per_call_ms(through, container.id))
                cpu.append((_cpu_seconds(proxy.process.pid) - before) / (2 * CALLS) * 1000)
            for index, what in enumerate(("ping", "inspect")):
                d = statistics.median(r[index] for r in direct)
                p = statistics.median(r[index] for r in proxied)
                print(f"{what}: direct {d:.2f} ms, through the proxy {p:.2f} ms ({p / d:.2f}x)")
            print(f"proxy CPU per call (median of rounds): {statistics.median(cpu):.2f} ms")
        finally:
            proxies.close()
            container.remove(force=True)


if __name__ == "__main__":
    main()
