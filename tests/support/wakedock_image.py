"""WakeDock's image built once per test session (scripts/build-image.sh on the local Debian base
of scripts/build-base-image.sh), reused while its inputs are unchanged (a content-hash tag)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import docker
import docker.errors
import pytest

from support.components import unavailable

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "wd-image-wakedock"


def run_build_script(script: str, env: dict[str, str], what: str) -> str:
    """`scripts/<script>` with `env` added; its stdout. The test fails, with the end of the
    script's progress output, when it does."""
    built = subprocess.run(
        [str(ROOT / "scripts" / script)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"building {what} failed:\n{built.stderr[-4000:]}", pytrace=False)
    return built.stdout


def remove_stale_tags(client: docker.DockerClient, repository: str, keep: set[str]) -> None:
    """Only this suite makes `repository`'s tags: the ones of older inputs are dead weight."""
    for image in client.images.list(name=repository):
        for tag in image.tags:
            if tag.startswith(f"{repository}:") and tag not in keep:
                # Still used by a container of a concurrent run: removed next time.
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, noprune=False)


def build_image(client: docker.DockerClient) -> str:
    """The image's name, built now or earlier from the same inputs; older tags removed."""
    if shutil.which("debootstrap") is None:
        unavailable("debootstrap is not installed (apt-get install debootstrap)")
    output = run_build_script(
        "build-image.sh", {"IMAGE_REPOSITORY": REPOSITORY, "PYTHON": sys.executable}, "the image"
    )
    image = output.strip().splitlines()[-1]
    remove_stale_tags(client, REPOSITORY, {image})
    return image


def base_of(client: docker.DockerClient) -> str:
    """The local base image's name (built by build_image already, so this returns at once)."""
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-base-image.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return built.stdout.strip().splitlines()[-1]
