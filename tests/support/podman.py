"""Debian's `podman system service` as a subprocess: the Docker-compatible API on a unix socket
in a temporary directory, with its own storage, run directory and network configuration there
(never Docker's data, never the host's /etc/containers/networks), and the busybox test image
loaded into it from the Docker engine (no registry here)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker

from support.components import unavailable
from support.docker_images import TEST_IMAGE
from support.socket_proxy import answers_ping


@dataclass
class Podman:
    root: Path
    socket_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def command(self, *args: str) -> list[str]:
        """`podman` with this service's storage: for the CLI steps (loading an image)."""
        return [*_podman_flags(self.root), *args]


def _podman_flags(root: Path) -> list[str]:
    # cgroupfs and file events: this machine has no systemd to hand cgroups or a journal to.
    return [
        "podman",
        "--root",
        str(root / "storage"),
        "--runroot",
        str(root / "run"),
        "--tmpdir",
        str(root / "tmp"),
        "--network-config-dir",
        str(root / "networks"),
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
    ]


def start_podman(root: Path, docker_engine: docker.DockerClient) -> Iterator[Podman]:
    """Run the service under `root` until the generator is closed; the test image is loaded."""
    if shutil.which("podman") is None:
        unavailable("podman is not installed (apt-get install podman)")
    for sub in ("storage", "run", "tmp", "networks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # The same image the Docker tests use, byte for byte: `docker save | podman load`.
    saved = b"".join(docker_engine.images.get(TEST_IMAGE).save(named=True))
    subprocess.run(
        [*_podman_flags(root), "load"], input=saved, check=True, capture_output=True, timeout=120
    )
    # `podman load` names it localhost/wakedock-test/busybox:1, but the Docker-compatible API
    # resolves the short name the specs use as Docker does, to docker.io/...: tag it so.
    subprocess.run(
        [*_podman_flags(root), "tag", f"localhost/{TEST_IMAGE}", f"docker.io/{TEST_IMAGE}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    socket_path = root / "podman.sock"
    log = (root / "service.log").open("wb")
    process = subprocess.Popen(
        [*_podman_flags(root), "system", "service", "--time=0", f"unix://{socket_path}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CONTAINERS_CONF": str(_containers_conf(root))},
    )
    service = Podman(root, socket_path, process)
    stop = threading.Event()
    timer = threading.Thread(target=_run_healthchecks, args=(root, stop), daemon=True)
    try:
        deadline = time.monotonic() + 30
        while not answers_ping(socket_path):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"podman service did not start: {_tail(root)}")
            time.sleep(0.2)
        timer.start()
        yield service
    finally:
        stop.set()
        if timer.is_alive():
            timer.join(30)
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
        # Whatever a failed test left behind, in this service's own storage and network
        # directory only: its containers (and their conmon processes), then its bridges.
        for args in (("rm", "--all", "--force", "--time=0"), ("network", "prune", "--force")):
            subprocess.run([*_podman_flags(root), *args], capture_output=True, timeout=60)
        # The storage driver mounts its own directory (private propagation): unmount it so the
        # temporary directory can be removed; it is only ever this service's.
        overlay = str(root / "storage" / "overlay")
        with open("/proc/mounts", encoding="utf-8") as mounts:
            if any(line.split()[1] == overlay for line in mounts):
                subprocess.run(["umount", overlay], capture_output=True, timeout=30)


def _run_healthchecks(root: Path, stop: threading.Event) -> None:
    """What systemd does for Podman on a normal host: run each running container's healthcheck
    every second. Podman 4.3 schedules healthchecks only as transient systemd timers; this
    machine (and CI) has no systemd, so without this a container stays "starting" forever."""
    flags = _podman_flags(root)
    while not stop.wait(1):
        running = subprocess.run(
            [*flags, "ps", "--quiet", "--no-trunc", "--filter", "status=running"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        for container in running.stdout.split():
            # A container without a healthcheck just answers an error: nothing to run.
            subprocess.run(
                [*flags, "healthcheck", "run", container], capture_output=True, timeout=30
            )


def _containers_conf(root: Path) -> Path:
    """The service's settings. Rootful Podman raises a container's open-files and process limits
    to its own maxima (1048576, 4194304) where Docker leaves the daemon's; a host (or CI sandbox)
    without CAP_SYS_RESOURCE then refuses every start ("error setting rlimit type 7" or "6").
    Open files: this process's own hard limit. Processes: 4096, below what runc may set here
    (the test containers have a pids limit of 256 anyway)."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limits = f'"nofile={files}:{files}", "nproc=4096:4096"'
    conf = root / "containers.conf"
    conf.write_text(f"[containers]\ndefault_ulimits = [{limits}]\n")
    return conf


def _tail(root: Path) -> str:
    return (root / "service.log").read_text(errors="replace")[-2000:]
