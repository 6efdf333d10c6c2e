"""Slow clients against the real `wakedock serve` (loopback only): deadlines on a connection's
TLS handshake and request heads, slots given back, and a bounded slowloris (about a minute).

In the slowloris, the server runs with a small open-file limit (512) so that its connection cap
matters, and is attacked with more slow sockets than it has file descriptors, from 127.0.0.1 and
eight other loopback addresses: half never finish the TLS handshake, half finish it and trickle
header lines that never end the request head. Closed sockets are opened again, as a real attack
would. Meanwhile another client keeps asking for /api/v1/health on fresh connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from support.raw_http import (
    body_stops_arriving,
    closed_by_server,
    open_tls,
    read_answer,
)
from support.server import WakeDockProcess, wakedock_server
from support.slots import once_a_slot_is_free

pytestmark = [pytest.mark.integration, pytest.mark.security]

OPEN_FILES = 512
RESERVED = 320  # server.reserved_file_descriptors: leaves a cap of 192 connections
PER_CLIENT = 64
HEADER_TIMEOUT = 10.0  # the default server.header_timeout_seconds
ATTACK_SECONDS = 60.0
# 120 sockets from 127.0.0.1 (over the per-client limit), 60 from each of 8 others:
# 600 in all, more than the server has file descriptors.
ATTACKERS = [("127.0.0.1", 120)] + [(f"127.0.0.{n}", 60) for n in range(2, 10)]
HEALTH_CLIENT = "127.0.0.50"
# The first bytes of a TLS ClientHello record, never completed.
PARTIAL_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


@dataclass
class Observed:
    opened: int = 0
    closed_by_server: int = 0
    health: list[int | str] = field(default_factory=list)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WakeDockProcess]:
    data_dir = tmp_path_factory.mktemp("slowloris") / "data"
    env = {
        "WAKEDOCK_SERVER__RESERVED_FILE_DESCRIPTORS": str(RESERVED),
        "WAKEDOCK_SERVER__MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
    }
    with wakedock_server(data_dir, env=env, open_files=OPEN_FILES) as running:
        yield running


async def _stuck_in_handshake(port: int, source: str, seen: Observed) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    seen.opened += 1
    try:
        writer.write(PARTIAL_HELLO)
        await reader.read()  # returns (or raises) once the server closes the connection
    finally:
        writer.close()


async def _trickling_head(port: int, context: ssl.SSLContext, source: str, seen: Observed) -> None:
    reader, writer = await open_tls(port, context, source)
    seen.opened += 1
    try:
        writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for line in range(10_000):
            with contextlib.suppress(TimeoutError):
                if not await asyncio.wait_for(reader.read(1), 2.0):
                    return  # closed by the server
            writer.write(b"X-Slow-%d: x\r\n" % line)
    finally:
        writer.close()


async def _slow_socket(
    kind: str, port: int, context: ssl.SSLContext, source: str, stop: asyncio.Event, seen: Observed
) -> None:
    """One slow socket, opened again whenever the server closes it, until `stop`."""
    while True:
        try:
            if kind == "handshake":
                await _stuck_in_handshake(port, source, seen)
            else:
                await _trickling_head(port, context, source, seen)
        except (OSError, EOFError, asyncio.IncompleteReadError):
            pass  # refused, reset or cut off: closed by the server all the same
        seen.closed_by_server += 1
        if stop.is_set():
            return
        await asyncio.sleep(2.0)


async def _health_checks(server: WakeDockProcess, stop: asyncio.Event, seen: Observed) -> None:
    transport = httpx.AsyncHTTPTransport(verify=server.ssl_context(), local_address=HEALTH_CLIENT)
    limits = httpx.Limits(max_keepalive_connections=0)  # a fresh connection every time
    async with httpx.AsyncClient(transport=transport, limits=limits, timeout=5.0) as client:
        while not stop.is_set():
            try:
                reply = await client.get(f"{server.base_url}/api/v1/health")
                seen.health.append(reply.status_code)
            except httpx.HTTPError as exc:
                seen.health.append(type(exc).__name__)
            await asyncio.sleep(0.5)


async def _attack(server: WakeDockProcess, seen: Observed) -> set[asyncio.Task[None]]:
    stop = asyncio.Event()
    context = server.ssl_context()
    attackers = {
        asyncio.create_task(
            _slow_socket(
                "handshake" if n % 2 else "trickle", server.port, context, source, stop, seen
            )
        )
        for source, count in ATTACKERS
        for n in range(count)
    }
    checks = asyncio.create_task(_health_checks(server, stop, seen))
    await asyncio.sleep(ATTACK_SECONDS)
    stop.set()
    await checks
    # No more reconnections: every slow socket still open must now be closed by the server.
    _, still_open = await asyncio.wait(attackers, timeout=HEADER_TIMEOUT + 15)
    for task in still_open:
        task.cancel()
    return still_open


def test_health_answers_through_a_slowloris(server: WakeDockProcess) -> None:
    seen = Observed()
    still_open = asyncio.run(_attack(server, seen))
    failures = [status for status in seen.health if status != 200]
    assert len(seen.health) >= 20 and not failures, failures
    # Every slow socket was closed by the server, none held beyond the head deadline.
    assert not still_open, f"{len(still_open)} slow sockets were never closed"
    assert seen.closed_by_server >= sum(count for _, count in ATTACKERS)
    log = server.log()
    assert "Too many open files" not in log
    assert "Traceback" not in log
    overload = log.count("connection limit reached")
    # The cap was reached, and reported once per 10-second interval at most.
    assert overload >= 1 and overload <= ATTACK_SECONDS / 10 + 2, overload


# -- one connection at a time, with short deadlines --------------------------------------------

SHORT_BODY_TIMEOUT = 2.0
SHORT_HEADER_TIMEOUT = 2


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WakeDockProcess]:
    data_dir = tmp_path_factory.mktemp("deadlines") / "data"
    env = {
        "WAKEDOCK_SERVER__HEADER_TIMEOUT_SECONDS": str(SHORT_HEADER_TIMEOUT),
        "WAKEDOCK_SERVER__KEEP_ALIVE_TIMEOUT_SECONDS": "1",
        "WAKEDOCK_SERVER__MAX_CONNECTIONS_PER_CLIENT": "2",
        "WAKEDOCK_SERVER__BODY_TIMEOUT_SECONDS": str(SHORT_BODY_TIMEOUT),
        # A large answer to read slowly: the API description (about 100 KiB).
        "WAKEDOCK_HTTP__DOCS_ENABLED": "true",
    }
    with wakedock_server(data_dir, env=env) as running:
        yield running


def test_a_handshake_that_never_completes_is_dropped(strict_server: WakeDockProcess) -> None:
    async def stuck() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", strict_server.port)
        writer.write(PARTIAL_HELLO)
        try:
            return await closed_by_server(reader)
        finally:
            writer.close()

    # asyncio's own handshake timeout is 60 s.
    assert asyncio.run(stuck())


def test_a_second_request_head_that_stalls_is_closed(strict_server: WakeDockProcess) -> None:
    async def stall() -> bool:
        reader, writer = await open_tls(strict_server.port, strict_server.ssl_context())
        try:
            writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await read_answer(reader)).status == 200
            # The next request on the kept-alive connection starts, then trickles forever.
            writer.write(b"GET /api/v1/he")
            for _ in range(10):
                await asyncio.sleep(0.5)
                if writer.is_closing() or reader.at_eof():
                    return True
                writer.write(b"a")
            return await closed_by_server(reader)
        except OSError:
            return True
        finally:
            writer.close()

    assert asyncio.run(stall())


def test_a_body_that_stops_arriving_is_cut_off(strict_server: WakeDockProcess) -> None:
    """The application has the request and waits for its body: a client that stops sending
    must not hold the connection (a slot no eviction can free) for ever."""

    assert asyncio.run(body_stops_arriving(strict_server.port, strict_server.ssl_context()))


def test_a_client_that_stops_reading_its_answers_is_cut_off(
    strict_server: WakeDockProcess,
) -> None:
    """Eighty answers of about 100 KiB asked at once and never read: once the kernel's send
    buffer (up to 4 MiB here) is full the server's writes stall, and the connection is dropped
    well before it could deliver them all."""
    request = b"GET /api/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # Two connections per client here: one that the previous test or the request below
        # still holds while it closes makes the server refuse this one for a moment.
        deadline = time.monotonic() + 10
        while True:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", strict_server.port))
            try:
                return await asyncio.open_connection(
                    sock=sock, ssl=strict_server.ssl_context(), server_hostname="127.0.0.1"
                )
            except ConnectionResetError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def never_read() -> int:
        reader, writer = await connect()
        writer.write(request * 80)
        await asyncio.sleep(4 * SHORT_BODY_TIMEOUT)
        received = 0
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), 15):
                received += len(chunk)
        except (OSError, ssl.SSLError, TimeoutError):
            pass
        finally:
            writer.close()
        return received

    one_answer = len(httpx.get(
        f"{strict_server.base_url}/api/openapi.json", verify=strict_server.ssl_context()
    ).content)  # fmt: skip
    assert one_answer > 50_000
    assert asyncio.run(never_read()) < 60 * one_answer


def test_an_idle_keep_alive_connection_is_closed(strict_server: WakeDockProcess) -> None:
    async def idle() -> bool:
        reader, writer = await open_tls(strict_server.port, strict_server.ssl_context())
        try:
            writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await read_answer(reader)).status == 200
            return await closed_by_server(reader)
        finally:
            writer.close()

    assert asyncio.run(idle())


def test_closed_connections_give_their_slot_back(strict_server: WakeDockProcess) -> None:
    """Two connections per client here: WebSocket upgrades (refused on the admin host) and
    timed-out connections must not keep theirs."""
    context = strict_server.ssl_context()
    url = f"wss://127.0.0.1:{strict_server.port}/ws"

    def upgrade() -> None:
        with pytest.raises(InvalidStatus):  # refused on the admin host, after the upgrade
            ws_connect(url, ssl=context, open_timeout=10).close()

    # The first waits for the previous test's connections to close on the server's side.
    once_a_slot_is_free(upgrade, within=10)
    for _ in range(5):  # more than the client's two slots
        once_a_slot_is_free(upgrade)
    with httpx.Client(verify=context) as client:
        for _ in range(5):
            health = once_a_slot_is_free(
                lambda: client.get(f"{strict_server.base_url}/api/v1/health")
            )
            assert health.status_code == 200
