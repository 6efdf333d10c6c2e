"""The guarded connection (server/protocol.py) read by httptools (llhttp, in C): several times
cheaper per request than h11, and chosen whenever it is installed (`server.http_parser`).

httptools has no limit on the size of a request head, so the head is counted here: it is fed
to the parser no further than `max_header_bytes`, and a head still incomplete at that point is
answered 431, as h11's own limit is on the other parser.
"""

from __future__ import annotations

import asyncio
from typing import Literal, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from wakedock.server.protocol import ConnectionGuards, Refusal
from wakedock.server.writes import HeadWithBody

# Where the client is in its current request, as the parser's callbacks report it.
_Reading = Literal["head", "body", "done"]


class GuardedHttpToolsProtocol(ConnectionGuards, HttpToolsProtocol):
    def _set_up(self) -> None:
        self._reading: _Reading = "head"
        self._head_bytes = 0  # of the head now arriving
        self._too_large = False

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _owes_body(self) -> bool:
        return self._reading == "body"

    def _between_requests(self) -> bool:
        return self._reading != "body"

    def _read(self, data: bytes) -> None:
        limit = self.rules.max_header_bytes
        while data and self._reading != "body":
            room = limit - self._head_bytes
            if room <= 0:
                self._too_large = True
                self.send_400_response("request head too large")
                return
            chunk, data = data[:room], data[room:]
            self._head_bytes += len(chunk)
            HttpToolsProtocol.data_received(self, chunk)
            if self._lingering or self._upgraded or self.transport.is_closing():
                return
        if data:
            HttpToolsProtocol.data_received(self, data)

    # The parser's callbacks, as uvicorn's, with where the request stands.

    def on_message_begin(self) -> None:
        self._reading = "head"
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading = "body"
        self._head_bytes = 0
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:  # a new request's cycle
            cycle.transport = cast("asyncio.Transport", HeadWithBody(self.transport, self.loop))

    def on_message_complete(self) -> None:
        self._reading = "done"
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def handle_websocket_upgrade(self) -> None:
        self._upgrade(lambda: HttpToolsProtocol.handle_websocket_upgrade(self))

    def send_400_response(self, msg: str) -> None:
        self._refuse(too_large=self._too_large)

    def _write_refusal(self, refusal: Refusal) -> None:
        if self._answering():
            # A body the parser refused midway: the application sees the client gone, and
            # whatever it still sends is dropped rather than written after this answer.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            if self.cycle.response_started:
                return  # an answer had already begun: nothing more can be said
        head = [b"HTTP/1.1 %d %s\r\n" % (refusal.status, refusal.reason)]
        head += [b"%s: %s\r\n" % (name, value) for name, value in refusal.headers]
        self.transport.write(b"".join([*head, b"\r\n", refusal.body]))
