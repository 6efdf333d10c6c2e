"""Relays a test puts between a client and a server, byte for byte.

`SocketRelay` (a thread per direction): a unix-socket relay to the Docker socket that a test
can cut and restore: from WakeDock's side the daemon disappears and comes back, while the real
engine keeps serving other tests. `TlsRelay` (an event loop of its own): plain TCP on loopback
to a TLS 1.3 listener, for a client that cannot speak TLS 1.3 itself (Debian 12's sqlmap
against the edge).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
from pathlib import Path

from support.apps.tcp_relay import pipe
from support.server import HOST


class _Relay:
    """Accepts on a listening socket and pipes each connection to `_connect()`'s socket."""

    def __init__(self) -> None:
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def _connect(self) -> socket.socket:
        raise NotImplementedError

    def _serve(self, server: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = self._connect()
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def _cut(self) -> None:
        """Cut every open connection."""
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()


class SocketRelay(_Relay):
    def __init__(self, listen: Path, target: str = "/var/run/docker.sock") -> None:
        super().__init__()
        self.listen = listen
        self.target = target
        self._server: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.listen}"

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.listen))
        server.listen(16)
        self._server = server
        self._serve(server)

    def stop(self) -> None:
        """Refuse new connections and cut the open ones, like a daemon going away."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen)
        self._cut()

    def _connect(self) -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.target)
        return upstream


class TlsRelay:
    """A plain-TCP listener on loopback that relays each connection to `port` over TLS 1.3
    (certificate not checked), as `socat TCP-LISTEN:p,fork OPENSSL:127.0.0.1:port,verify=0`
    would. One event loop in one thread does all the TLS: an SSL object is never read in one
    thread while another writes or closes it (OpenSSL does not allow that, and the relay's
    first version, a thread per direction, once took a test worker down with it)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        listener = socket.create_server((HOST, 0))
        self.port = int(listener.getsockname()[1])
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, sock=listener, backlog=128)
        )
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening and cut every open connection."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    async def _stop(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream = await asyncio.open_connection(
                HOST, self.target, ssl=self.context, server_hostname=HOST
            )
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream}
        try:
            await asyncio.gather(pipe(reader, upstream), pipe(upstream_reader, writer))
        finally:
            self._writers -= {writer, upstream}
