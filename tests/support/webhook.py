"""An alert webhook on loopback for the tests: a real HTTP server that keeps the JSON bodies
it is sent (the alert pipeline posts there through its SSRF guard, 127.0.0.0/8 allowed)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Webhook:
    """Where to send (`url`) and what arrived (`received`, in order)."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def webhook_receiver(path: str = "/hooks/security") -> Iterator[Webhook]:
    """A receiver on 127.0.0.1 (a free port) answering 204 to each POST, for the block."""
    hook = Webhook("")

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
