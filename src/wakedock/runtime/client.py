"""One lazily connected Docker client, and the mapping of engine failures to errors users act on.

Shared by both runtimes. Only a daemon that cannot be reached (socket gone, refused, timed out)
is RuntimeUnavailable (503 + Retry-After); the next call reconnects. Whatever the engine itself
answered says what it said: a conflict (409, or a 5xx about a port already in use) is
EngineConflict, another refusal (4xx other than "not found", which callers handle) EngineRefused
(422), any other engine failure EngineFailed (502). The engine's words are shortened and
stripped of anything that may be a secret (the environment handed over, `NAME=value` pairs,
credentials in URLs), and logged once per failed call; an unreachable daemon is logged once
per outage, and again when it is back.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import docker
import docker.errors
import requests.exceptions

from wakedock.errors import Conflict, InvalidInput, WakeDockError
from wakedock.runtime.base import RuntimeUnavailable

log = logging.getLogger("wakedock.runtime")
T = TypeVar("T")
UNREACHABLE = "the Docker daemon cannot be reached; service operations are unavailable"
# Engine answers in the 5xx range that are really a conflict with something else on the host.
_CONFLICTS = ("address already in use", "port is already allocated", "is already in use")
_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=(\S+)")
_URL_CREDENTIALS = re.compile(r"//[^/@\s]*@")
_MAX_DETAIL = 300
# A value shorter than this is too common to redact without mangling the message.
_MIN_HIDDEN = 4


class EngineRefused(InvalidInput):
    status_code = 422
    code = "docker_refused"


class EngineConflict(Conflict):
    code = "docker_conflict"


class EngineFailed(WakeDockError):
    """The engine answered, but could not do what was asked (an engine-side 5xx)."""

    status_code = 502
    code = "docker_error"


def redact(text: str, hidden: Iterable[str] = ()) -> str:
    """Engine text made fit to show: one line, short, with the `hidden` values (e.g. a
    container's environment), `NAME=value` pairs and URL credentials replaced by ***."""
    text = " ".join(text.split())
    for value in sorted({v for v in hidden if len(v) >= _MIN_HIDDEN}, key=len, reverse=True):
        text = text.replace(value, "***")
    text = _URL_CREDENTIALS.sub("//***@", _ASSIGNMENT.sub(r"\1=***", text))
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def engine_says(exc: docker.errors.APIError, hidden: Iterable[str] = ()) -> str:
    """What the engine answered, redacted (see `redact`)."""
    return redact(str(exc.explanation or exc), hidden)


def engine_error(exc: docker.errors.APIError, hidden: Iterable[str] = ()) -> WakeDockError:
    """The error a user sees for an answer of the engine (not for an unreachable daemon)."""
    status = exc.status_code or 500
    said = engine_says(exc, hidden)
    if status == 409 or (status >= 500 and any(c in said.lower() for c in _CONFLICTS)):
        return EngineConflict(f"the Docker engine reported a conflict: {said}")
    if status < 500:
        return EngineRefused(f"the Docker engine refused: {said}")
    return EngineFailed(f"the Docker engine failed: {said}")


class EngineClient:
    def __init__(self, base_url: str, timeout: int = 30) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._reachable = True
        self._reachable_lock = threading.Lock()

    def call(self, action: Callable[[docker.DockerClient], T], hidden: Iterable[str] = ()) -> T:
        """Run `action` with the client, mapping engine failures (see the module docstring).

        `hidden`: values (e.g. the environment handed to a container) never to be repeated
        from an engine message.
        """
        try:
            if self._client is None:
                self._client = docker.DockerClient(base_url=self._base_url, timeout=self._timeout)
            result = action(self._client)
        except docker.errors.NotFound:
            self._reached()
            raise
        except docker.errors.APIError as exc:
            if exc.response is None:  # no answer at all: the daemon is not there
                raise self._unreachable(exc) from exc
            self._reached()
            error = engine_error(exc, hidden)
            log.warning("Docker engine answered %s: %s", exc.status_code, error.detail)
            raise error from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._unreachable(exc) from exc
        self._reached()
        return result

    def _unreachable(self, exc: Exception) -> RuntimeUnavailable:
        self._client = None
        with self._reachable_lock:
            first, self._reachable = self._reachable, False
        if first:
            # Once per outage: every call meanwhile fails the same way.
            log.warning(
                "the Docker engine at %s cannot be reached (%s); service operations answer "
                "503 until it is back",
                self._base_url,
                type(exc).__name__,
            )
        return RuntimeUnavailable(UNREACHABLE)

    def _reached(self) -> None:
        if self._reachable:
            return
        with self._reachable_lock:
            back, self._reachable = not self._reachable, True
        if back:
            log.warning("the Docker engine at %s is reachable again", self._base_url)
