"""The local images of the production stack (deploy/compose.yaml): PostgreSQL, Redis and the edge
from scripts/build-stack-images.sh, WakeDock and its socket proxy from the image of
support/wakedock_image.py. Built once per test session, reused while their inputs are unchanged
(content-hash tags); the tags of older inputs are removed."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from support.components import unavailable
from support.wakedock_image import build_image

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "wd-stack-images"


@dataclass(frozen=True)
class StackImages:
    wakedock: str
    edge: str
    postgres: str
    redis: str

    def environment(self) -> dict[str, str]:
        """The variables deploy/compose.yaml takes its images from."""
        return {
            "WAKEDOCK_IMAGE": self.wakedock,
            "EDGE_IMAGE": self.edge,
            "POSTGRES_IMAGE": self.postgres,
            "REDIS_IMAGE": self.redis,
        }


def _remove_stale(client: docker.DockerClient, repository: str, keep: set[str]) -> None:
    for image in client.images.list(name=repository):
        for tag in image.tags:
            if tag.startswith(f"{repository}:") and tag not in keep:
                # Still used by a container of a concurrent run: removed next time.
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, noprune=False)


def build_stack_images(client: docker.DockerClient) -> StackImages:
    """The four images' names, built now or earlier from the same inputs."""
    for tool in ("mmdebstrap", "docker-compose"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (apt-get install {tool})")
    wakedock = build_image(client)
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-stack-images.sh")],
        env={
            **os.environ,
            "STACK_REPOSITORY": REPOSITORY,
            "WAKEDOCK_IMAGE": wakedock,
            "PYTHON": sys.executable,
        },
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"building the stack's images failed:\n{built.stderr[-4000:]}", pytrace=False)
    names = dict(line.split("=", 1) for line in built.stdout.split() if "=" in line)
    images = StackImages(wakedock, names["edge"], names["postgres"], names["redis"])
    # Only this suite makes these tags: the ones of older inputs are dead weight.
    keep = {images.edge, images.postgres, images.redis, names["base"]}
    _remove_stale(client, REPOSITORY, keep)
    _remove_stale(client, f"{REPOSITORY}-edge", keep)
    return images


def free_subnet(engine: docker.DockerClient) -> str:
    """A /24 no network of this engine uses (the engine is shared): the stack's `app` network,
    whose subnet is WakeDock's trusted proxies."""
    taken = [
        ipaddress.ip_network(c["Subnet"])
        for n in engine.api.networks()
        for c in (n.get("IPAM") or {}).get("Config") or []
        if c.get("Subnet")
    ]
    while True:
        octets = secrets.randbelow(50) + 200, secrets.randbelow(256)
        subnet = ipaddress.ip_network(f"10.{octets[0]}.{octets[1]}.0/24")
        if not any(subnet.overlaps(t) for t in taken):
            return str(subnet)
