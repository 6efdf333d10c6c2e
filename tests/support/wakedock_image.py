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


def build_image(client: docker.DockerClient) -> str:
    """The image's name, built now or earlier from the same inputs; older tags removed."""
    if shutil.which("debootstrap") is None:
        unavailable("debootstrap is not installed (apt-get install debootstrap)")
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh")],
        env={**os.environ, "IMAGE_REPOSITORY": REPOSITORY, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"building the image failed:\n{built.stderr[-4000:]}", pytrace=False)
    image = built.stdout.strip().splitlines()[-1]
    # Only this suite makes these tags: the ones of older inputs are dead weight.
    for old in client.images.list(name=REPOSITORY):
        for tag in old.tags:
            if tag.startswith(f"{REPOSITORY}:") and tag != image:
                # Still used by a container of a concurrent run: removed next time.
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, noprune=False)
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
