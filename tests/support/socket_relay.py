"""Relays a test puts between a client and a server, byte for byte, one thread per direction.

`SocketRelay`: a unix-socket relay to the Docker socket that a test can cut and restore: from
WakeDock's side the daemon disappears and comes back, while the real engine keeps serving other
tests. `TlsRelay`: plain TCP on loopback to a TLS 1.3 listener, for a client that cannot speak
TLS 1.3 itself (Debian 12's sqlmap against the edge).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
from pathlib import Path

from support.server import HOST


class _Relay:
    """Accepts on a listening socket and pipes each connection to `_connect()`'s socket."""

    # A TLS socket cannot half-close: the first side to finish then ends the connection.
    half_close = True

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
            if self.half_close:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
            else:
                for sock in (sink, source):
                    with contextlib.suppress(OSError):
                        sock.close()

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


class TlsRelay(_Relay):
    """A plain-TCP listener on loopback that relays each connection to `port` over TLS 1.3
    (certificate not checked), as `socat TCP-LISTEN:p,fork OPENSSL:127.0.0.1:port,verify=0`
    would."""

    half_close = False

    def __init__(self, port: int) -> None:
        super().__init__()
        self.target = port
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self._server = socket.create_server((HOST, 0))
        self.port = int(self._server.getsockname()[1])
        self._serve(self._server)

    def close(self) -> None:
        self._server.close()
        self._cut()

    def _connect(self) -> socket.socket:
        raw = socket.create_connection((HOST, self.target), timeout=30)
        upstream = self.context.wrap_socket(raw, server_hostname=HOST)
        upstream.settimeout(None)
        return upstream
