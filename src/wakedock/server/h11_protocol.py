"""The guarded connection (server/protocol.py) read by h11, uvicorn's pure-Python parser: the
fallback when httptools is not installed, or chosen with `server.http_parser: h11`."""

from __future__ import annotations

from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from wakedock.server.protocol import ConnectionGuards, Refusal

# The head is handed to h11 in slices: h11 checks its size limit only while the head is
# incomplete, so a head over the limit arriving in one read would otherwise pass.
_HEAD_SLICE = 4096


class _Parser(h11.Connection):
    """h11, remembering why it refused a request (its hint is 431 for a head too large)."""

    refusal: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = exc
            raise


class GuardedH11Protocol(ConnectionGuards, H11Protocol):
    def _set_up(self) -> None:
        self._parser = _Parser(h11.SERVER, self.rules.max_header_bytes)
        self.conn = self._parser

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _owes_body(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY

    def _between_requests(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def _read(self, data: bytes) -> None:
        while len(data) > _HEAD_SLICE and self.conn.their_state is h11.IDLE:
            H11Protocol.data_received(self, data[:_HEAD_SLICE])
            data = data[_HEAD_SLICE:]
            if self._lingering:
                return
        H11Protocol.data_received(self, data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._upgrade(lambda: H11Protocol.handle_websocket_upgrade(self, event))

    def send_400_response(self, msg: str) -> None:
        refusal = self._parser.refusal
        self._refuse(too_large=refusal is not None and refusal.error_status_hint == 431)

    def _write_refusal(self, refusal: Refusal) -> None:
        response = h11.Response(
            status_code=refusal.status, headers=refusal.headers, reason=refusal.reason
        )
        try:
            for event in (response, h11.Data(data=refusal.body), h11.EndOfMessage()):
                output = self.conn.send(event)
                if output:
                    self.transport.write(output)
        except h11.LocalProtocolError:
            pass  # an answer had already begun: nothing more can be said
