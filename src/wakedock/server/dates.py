"""The `Date` header, exactly once on every response.

uvicorn adds its own `Date` to every response, even one that already has one: a proxied answer
then carried two (the upstream's and uvicorn's). The server turns uvicorn's off and this
middleware adds one only where the application wrote none, so a proxied answer keeps the
upstream's own date and WakeDock's own answers are dated as before.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class DateHeader:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._second = -1
        self._value = b""

    def _now(self) -> bytes:
        # One formatting per second, as uvicorn does, not one per response.
        second = int(time.time())
        if second != self._second:
            self._value = formatdate(second, usegmt=True).encode()
            self._second = second
        return self._value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(key.lower() == b"date" for key, _ in headers):
                    headers.append((b"date", self._now()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, dated)
