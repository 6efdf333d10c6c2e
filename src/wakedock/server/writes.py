"""An answer's head and the start of its body in one write (server/httptools_protocol.py).

uvicorn writes the head of an answer as soon as the application starts it, and each body chunk
as it comes: for a small proxied answer, two writes where one would do, and over TLS two
records, two `send` calls and two wake-ups of the client for one answer. Between those writes
the application usually does not wait for anything (the proxy sends the head and the body it
read in one go), so the head is held back until the body's first write, or until the loop's
next turn when none followed (an answer whose body is slow to come, such as a stream, gets its
head just as soon as before, one turn of the loop later at most).
"""

from __future__ import annotations

import asyncio
from typing import Any


class HeadWithBody:
    """The transport as one request's cycle sees it: its first write (the head of the answer,
    or `100 Continue`) waits for the next one, or for the loop's next turn."""

    __slots__ = ("_held", "_loop", "_transport", "_turn")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._turn: asyncio.Handle | None = None  # None again once the first write was made

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if self._turn is not None:
                self._turn.cancel()
            self._transport.write(held + data)
        elif self._turn is None and not self._transport.is_closing():
            self._held = data
            self._turn = self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, ...: the transport's own.
        return getattr(self._transport, name)
