"""A small local test image (no registry here): busybox imported as a rootfs."""

from __future__ import annotations

import io
import os
import shutil
import tarfile

import docker
import docker.errors

from support.components import unavailable

TEST_IMAGE = "wakedock-test/busybox:1"
_APPLETS = ("sh", "wget", "nc", "httpd", "sleep", "echo", "cat", "ls", "id", "true")


def docker_client() -> docker.DockerClient:
    """A client for the local engine, or skip (fail in CI) with the reason."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:
        unavailable(f"no Docker engine reachable ({exc}); start dockerd")
        raise AssertionError from exc  # unreachable
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
