"""The socket proxy under a bounded burst and malformed requests: it answers them all, refuses
what is too big or broken with a 4xx, and keeps serving."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from support.docker_images import TEST_IMAGE
from support.socket_proxy import SocketProxy
from wakedock.runtime.hardening import container_name

pytestmark = [pytest.mark.integration, pytest.mark.security]
BURST = 200


@pytest.fixture
def labelled(engine: docker.DockerClient, installation: str, network: str) -> Iterator[Any]:
    container = engine.containers.create(
        TEST_IMAGE,
        ["sleep", "300"],
        name=container_name(installation, "burst"),
        network=network,
        labels={"wakedock.managed": installation, "wakedock.service": "burst"},
    )
    yield container
    container.remove(force=True)


async def _status(proxy: SocketProxy, path: str) -> int:
    reader, writer = await asyncio.open_unix_connection(str(proxy.socket_path))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return int(answer.split(b" ", 2)[1])


async def _burst(proxy: SocketProxy, paths: list[str]) -> list[int]:
    return list(await asyncio.gather(*(_status(proxy, path) for path in paths)))


def _ping_works(proxy: SocketProxy) -> bool:
    return proxy.raw(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_a_burst_of_pings_and_inspects_is_served(proxy: SocketProxy, labelled: Any) -> None:
    paths = [
        "/_ping" if index % 2 else f"/v1.41/containers/{labelled.id}/json" for index in range(BURST)
    ]
    assert asyncio.run(_burst(proxy, paths)) == [200] * BURST
    assert proxy.process.poll() is None


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /_ping HTTP/1.1\r\nHost: docker\r\nBad Header\r\n\r\n", 400),
        (b"GET /_ping HTTP/1.1\r\nHost: docker\r\nContent-Length: -4\r\n\r\n", 400),
        (b"GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (
            b"POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Length: 2000000\r\n\r\n{",
            413,
        ),
        ("GET /containers/\u00e9/json HTTP/1.1\r\nHost: docker\r\n\r\n".encode(), 400),
        (b"GET http://docker/_ping HTTP/1.1\r\nHost: docker\r\n\r\n", 400),
        # Percent-encoded path segments name no route: nothing to decode past the rules.
        (b"GET /containers/%2e%2e/json HTTP/1.1\r\nHost: docker\r\n\r\n", 403),
    ],
)
def test_a_malformed_request_gets_an_error_and_the_next_one_works(
    proxy: SocketProxy, request_bytes: bytes, status: int
) -> None:
    answer = proxy.raw(request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head
    assert json.loads(body)["message"].startswith("socket-proxy: ")
    assert _ping_works(proxy)


def test_a_chunked_create_body_beyond_the_cap_is_refused(proxy: SocketProxy) -> None:
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"
    answer = proxy.raw(
        b"POST /containers/create HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n"
        + body
    )
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert _ping_works(proxy)


def test_a_create_that_is_not_json_is_refused(proxy: SocketProxy) -> None:
    name = f"wd-sockproxy-{secrets.token_hex(3)}"
    answer = proxy.raw(
        f"POST /containers/create?name={name} HTTP/1.1\r\nHost: docker\r\n"
        "Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{nope".encode()
    )
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert _ping_works(proxy)
