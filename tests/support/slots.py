"""The server's per-client connection cap, seen from a client making one connection after
another: its previous connections count until the server has seen them close."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
from websockets.exceptions import InvalidMessage

T = TypeVar("T")


def once_a_slot_is_free(attempt: Callable[[], T], within: float = 5.0) -> T:
    """`attempt()`, tried again while the server closes the connection unanswered (the
    per-client cap's refusal): the server frees a slot when it has seen the previous
    connection close, which a busy machine delays by a moment. A slot never given back keeps
    failing, and the last failure is raised after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return attempt()
        except (InvalidMessage, EOFError, ConnectionError, ssl.SSLError, httpx.TransportError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
