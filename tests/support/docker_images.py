"""A small local test image (no registry here): busybox imported as a rootfs."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import pytest

from support.components import unavailable

TEST_IMAGE = "wakedock-test/busybox:1"
_APPLETS = ("sh", "wget", "nc", "httpd", "sleep", "echo", "cat", "ls", "id", "true")


def docker_client() -> docker.DockerClient:
    """A client for the local engine, or skip (fail in CI) with the reason.

    Refuses to hand out a client while the engine runs without its `docker0` bridge: published
    ports would then be forwarded over the default route, off the machine.
    """
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:
        unavailable(f"no Docker engine reachable ({exc}); start dockerd")
        raise AssertionError from exc  # unreachable
    if not os.path.exists("/sys/class/net/docker0"):
        pytest.fail(
            "the Docker engine runs without its docker0 bridge: restart dockerd before any "
            "container test (traffic to published ports could leave the machine)",
            pytrace=False,
        )
    return client


def ensure_test_image(client: docker.DockerClient) -> str:
    """Build `TEST_IMAGE` from the host's static busybox, once."""
    try:
        client.images.get(TEST_IMAGE)
        return TEST_IMAGE
    except docker.errors.ImageNotFound:
        pass
    busybox = shutil.which("busybox")
    if busybox is None:
        unavailable("busybox is not installed (apt-get install busybox-static)")
        raise AssertionError
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(os.path.realpath(busybox), arcname="bin/busybox")
        for applet in _APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        for directory in ("tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
    client.api.import_image_from_data(
        archive.getvalue(), repository="wakedock-test/busybox", tag="1"
    )
    return TEST_IMAGE


APPS_DIR = os.path.join(os.path.dirname(__file__), "apps")
_STDLIB_SKIP = ("test", "idlelib", "tkinter", "ensurepip", "lib2to3", "turtledemo", "__pycache__")


def _python_files() -> tuple[str, str, list[str]]:
    """The host's system Python: interpreter, stdlib directory, shared libraries it needs."""
    interpreter = os.path.realpath(shutil.which("python3", path="/usr/bin:/bin") or "")
    if not interpreter or not os.path.exists(interpreter):
        unavailable("no system python3 in /usr/bin to build the proxy test image")
    probe = subprocess.run(
        [interpreter, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    stdlib = probe.stdout.strip()
    libraries = {interpreter}
    dynload = os.path.join(stdlib, "lib-dynload")
    for binary in [interpreter, *[os.path.join(dynload, f) for f in os.listdir(dynload)]]:
        linked = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
        for line in linked.stdout.splitlines():
            path = line.split("=>")[-1].split("(")[0].strip()
            if path.startswith("/"):
                libraries.add(path)
    return interpreter, stdlib, sorted(libraries - {interpreter})


def ensure_python_image(client: docker.DockerClient) -> str:
    """An image with the host's Python and `apps/testapp.py` (tag: a hash of the app)."""
    with open(os.path.join(APPS_DIR, "testapp.py"), "rb") as source:
        app = source.read()
    tag = hashlib.sha256(app).hexdigest()[:12]
    image = f"wakedock-test/pyapp:{tag}"
    try:
        client.images.get(image)
        return image
    except docker.errors.ImageNotFound:
        pass
    interpreter, stdlib, libraries = _python_files()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(interpreter, arcname="usr/bin/python3")
        for library in libraries:
            tar.add(os.path.realpath(library), arcname=library.lstrip("/"))
        tar.add(
            stdlib,
            arcname=stdlib.lstrip("/"),
            filter=lambda info: (
                None if any(part in _STDLIB_SKIP for part in info.name.split("/")) else info
            ),
        )
        info = tarfile.TarInfo("app/testapp.py")
        info.size = len(app)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(app))
        for directory in ("tmp", "etc", "proc", "sys", "dev"):
            entry = tarfile.TarInfo(directory)
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(entry)
    client.api.import_image_from_data(
        archive.getvalue(),
        repository="wakedock-test/pyapp",
        tag=tag,
        changes=['CMD ["/usr/bin/python3", "-u", "/app/testapp.py"]'],
    )
    return image


def output_of(client: docker.DockerClient, image: str, command: list[str], **options: Any) -> bytes:
    """All a throwaway container writes on stdout; it must exit 0.

    Not `containers.run(..., remove=True)`: docker-py removes the container before it reads the
    log stream it follows, which cuts a long output short when the engine is busy (the CI
    failure where an image "added" half of its base's files; docker/docker-py#2427).
    """
    container = client.containers.create(image, command, **options)
    try:
        container.start()
        status = container.wait(timeout=120)["StatusCode"]
        if status != 0:
            errors = container.logs(stdout=False, stderr=True).decode(errors="replace")
            raise AssertionError(f"{command} in {image} exited with {status}: {errors[-2000:]}")
        return bytes(container.logs(stdout=True, stderr=False))
    finally:
        container.remove(force=True)


class _Chunks(io.RawIOBase):
    """A byte stream read from an iterator of chunks (docker-py's export)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = chunk
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


def paths_in(client: docker.DockerClient, image: str) -> set[str]:
    """Every path of `image`'s filesystem, absolute: `docker export` of a container created from
    it and never started (the engine adds only its own mount points, /etc/hosts and the like)."""
    container = client.containers.create(image, ["true"], network_mode="none")
    try:
        stream = io.BufferedReader(_Chunks(iter(container.export())), buffer_size=1 << 20)
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            return {"/" + member.name.removeprefix("./").rstrip("/") for member in archive}
    finally:
        container.remove(force=True)
