"""The container image, built from the Dockerfile and run the way docs/deploy.md says: a
read-only root, every capability dropped, no-new-privileges, uid 10001, a noexec tmpfs on /tmp
and its data volume the only writable place. It must start, be reported healthy by its own
HEALTHCHECK, answer over TLS on 127.0.0.1, and carry nothing it should not (a compiler, wheels,
pip or its cache, a secret in its history)."""

from __future__ import annotations

import json
import re
import secrets
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import pytest

from support.docker_images import docker_client, paths_in
from support.wakedock_image import base_of, build_image

pytestmark = pytest.mark.integration

UID = 10001
DATA = "/var/lib/wakedock"


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    return docker_client()


@pytest.fixture(scope="session")
def image(engine: docker.DockerClient) -> str:
    return build_image(engine)


@dataclass
class Running:
    container: Any
    port: int

    def run(self, *command: str) -> tuple[int, str]:
        """`docker exec` as the container's user; (exit code, output)."""
        code, output = self.container.exec_run(list(command))
        return code, output.decode(errors="replace")


@pytest.fixture(scope="module")
def running(engine: docker.DockerClient, image: str) -> Iterator[Running]:
    """The image run hardened, on a network and a data volume of its own, until healthy."""
    suffix = secrets.token_hex(4)
    network = engine.networks.create(f"wd-image-net-{suffix}", driver="bridge")
    volume = engine.volumes.create(f"wd-image-data-{suffix}")
    container = None
    try:
        container = engine.containers.run(
            image,
            detach=True,
            name=f"wd-image-run-{suffix}",
            network=network.name,
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            user=str(UID),
            tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=64m"},
            volumes={volume.name: {"bind": DATA, "mode": "rw"}},
            ports={"8443/tcp": ("127.0.0.1", None)},
            # Only the interval is changed (a second, not 30): the command is the image's own.
            healthcheck={"interval": 1_000_000_000},
            mem_limit="512m",
            pids_limit=256,
        )
        _wait_healthy(container)
        port = int(container.attrs["NetworkSettings"]["Ports"]["8443/tcp"][0]["HostPort"])
        yield Running(container, port)
    finally:
        if container is not None:
            container.remove(force=True)
        volume.remove(force=True)
        network.remove()


def _wait_healthy(container: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        if state["Status"] == "exited":
            raise AssertionError(f"the container exited:\n{container.logs().decode()[-4000:]}")
        if state.get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(0.5)
    health = json.dumps(container.attrs["State"].get("Health"), indent=1)[-3000:]
    raise AssertionError(f"not healthy within {timeout} s: {health}\n{container.logs().decode()}")


def test_healthy_and_answering_over_tls_on_loopback(running: Running) -> None:
    """Docker reports the image's own HEALTHCHECK healthy; the liveness probe answers from the
    host over TLS 1.3, verified against the certificate WakeDock generated in its volume."""
    code, cert = running.run("cat", f"{DATA}/tls/cert.pem")
    assert code == 0, cert
    context = ssl.create_default_context(cadata=cert)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    url = f"https://127.0.0.1:{running.port}/api/v1/health/live"
    with urllib.request.urlopen(url, context=context, timeout=10) as answer:
        assert answer.status == 200
        assert json.load(answer) == {"status": "ok"}
    # What made Docker say healthy: the image's own command, which printed why.
    log = running.container.attrs["State"]["Health"]["Log"]
    assert any(entry["ExitCode"] == 0 and "alive" in entry["Output"] for entry in log), log


def test_runs_as_its_own_non_root_user(running: Running, engine: docker.DockerClient) -> None:
    assert running.run("id", "-u")[1].strip() == str(UID)
    assert running.run("id", "-un")[1].strip() == "wakedock"
    # The image says so itself: a `docker run` without --user is not root either.
    assert running.container.image.attrs["Config"]["User"] == f"{UID}:{UID}"
    processes = running.container.top(ps_args="-o pid,uid,args")["Processes"]
    [server] = [p for p in processes if "serve" in p[2]]
    assert server[1] == str(UID)


def test_only_the_data_volume_is_writable(running: Running) -> None:
    code, output = running.run("sh", "-c", "echo x > /probe")
    assert code != 0 and "Read-only file system" in output
    code, output = running.run("sh", "-c", "echo x > /opt/wakedock/probe")
    assert code != 0
    # /tmp is a tmpfs, writable but noexec: nothing dropped there runs.
    code, output = running.run(
        "sh", "-c", "printf '#!/bin/sh\\necho ran' > /tmp/x && chmod +x /tmp/x && /tmp/x"
    )
    assert code != 0 and "ran" not in output
    # Everything WakeDock keeps is in its data volume: database, generated keys, certificate.
    code, listing = running.run("find", DATA, "-maxdepth", "2")
    assert code == 0
    for kept in ("wakedock.db", "tls/cert.pem", "tls/key.pem", "secrets"):
        assert f"{DATA}/{kept}" in listing.split(), listing


def test_no_compiler_installer_wheels_or_caches(engine: docker.DockerClient, image: str) -> None:
    """Nothing of the build stage reached the image: compare its files with the base's."""
    files = paths_in(engine, image)
    added = files - paths_in(engine, base_of(engine))
    assert added, "the image adds nothing to its base?"
    compiler = re.compile(
        r"/(usr/|usr/local/|opt/wakedock/)?s?bin/(gcc|g\+\+|cc|c\+\+|clang|make)\b"
    )
    compilers = {f for f in files if compiler.match(f)}
    assert compilers == set()
    assert {f for f in added if f.endswith(".whl")} == set()
    assert {f for f in added if "/.cache" in f or "/tmp/" in f} == set()
    # pip stayed in the build stage's installer: the runtime virtualenv cannot install anything.
    assert not [f for f in added if re.search(r"/site-packages/pip(/|-)", f)]
    # Bytecode only where the build compiled it (the virtualenv), never written at run time.
    caches = {f for f in added if "__pycache__" in f and not f.startswith("/opt/wakedock/lib/")}
    assert caches == set()


def test_bytecode_is_compiled_reproducibly(engine: docker.DockerClient, image: str) -> None:
    """The build compiles the virtualenv once with source hashes (no timestamps): a read-only
    root needs it, and the same sources give the same files."""
    probe = (
        "import importlib.util, wakedock; "
        "print(open(importlib.util.cache_from_source(wakedock.__file__), 'rb').read(8)[4:8].hex())"
    )
    flags = engine.containers.run(
        image, entrypoint=["python", "-c", probe], command=[], network_mode="none", remove=True,
        name=f"wd-image-pyc-{secrets.token_hex(4)}",
    )  # fmt: skip
    assert flags.decode().strip() == "01000000"  # PEP 552: hash-based, unchecked


def test_oci_labels(engine: docker.DockerClient, image: str) -> None:
    labels = engine.images.get(image).labels
    assert labels["org.opencontainers.image.title"] == "WakeDock"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.source"]


@pytest.mark.security
def test_no_secrets_or_update_only_steps_in_the_history(
    engine: docker.DockerClient, image: str
) -> None:
    """What `docker history` shows to anyone holding the image: every instruction and build
    argument. No secret-shaped value, no ADD, no `apt-get update` on its own."""
    steps = [layer["CreatedBy"] for layer in engine.api.history(image)]
    text = "\n".join(steps)
    assert "COPY" in text  # the history is really read
    assert not re.search(r"password|secret|token|private key|_FILE=|api[_-]?key", text, re.I)
    assert not [s for s in steps if "#(nop) ADD" in s or re.search(r"\bADD\b", s)]
    assert not [s for s in steps if "apt-get update" in s and "install" not in s]
    env = engine.images.get(image).attrs["Config"]["Env"]
    assert not [e for e in env if re.search(r"PASSWORD|SECRET|TOKEN|KEY", e.split("=")[0])]
