"""An alert webhook on loopback for the tests: a real HTTP server that keeps the JSON bodies
it is sent (the alert pipeline posts there through its SSRF guard, 127.0.0.0/8 allowed), or
refuses them while a test sets `status` to an error."""

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
    """Where to send (`url`), what arrived and was accepted (`received`, in order), how many
    posts were answered with an error (`refused`): every post while `status` is 300 or more."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 204
    refused: int = 0


@contextmanager
def webhook_receiver(path: str = "/hooks/security") -> Iterator[Webhook]:
    """A receiver on 127.0.0.1 (a free port) answering each POST with `status`, for the block."""
    hook = Webhook("")

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = hook.status
            if status < 300:
                hook.received.append(json.loads(body))
            else:
                hook.refused += 1
            self.send_response(status)
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
