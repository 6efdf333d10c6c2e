"""One lazily connected Docker client, and the mapping of engine failures to errors users act on.

Shared by both runtimes: an unreachable daemon (socket gone, refused, timed out, 5xx) becomes
RuntimeUnavailable (503) and the next call reconnects; a request the engine refuses (4xx other
than "not found", which callers handle) becomes a 409/422 quoting the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import docker
import docker.errors
import requests.exceptions

from wakedock.errors import Conflict, InvalidInput
from wakedock.runtime.base import RuntimeUnavailable

T = TypeVar("T")
UNREACHABLE = "the Docker daemon cannot be reached; service operations are unavailable"


class EngineRefused(InvalidInput):
    status_code = 422
    code = "docker_refused"


class EngineConflict(Conflict):
    code = "docker_conflict"


class EngineClient:
    def __init__(self, base_url: str, timeout: int = 30) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._client: docker.DockerClient | None = None

    def call(self, action: Callable[[docker.DockerClient], T]) -> T:
        """Run `action` with the client, mapping engine failures (see the module docstring)."""
        try:
            if self._client is None:
                self._client = docker.DockerClient(base_url=self._base_url, timeout=self._timeout)
            return action(self._client)
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError as exc:
            status = exc.status_code
            if status is None or status >= 500:
                self._client = None
                raise RuntimeUnavailable(UNREACHABLE) from exc
            explanation = str(exc.explanation or exc)[:300]
            if status == 409:
                raise EngineConflict(f"the Docker engine refused: {explanation}") from exc
            raise EngineRefused(f"the Docker engine refused: {explanation}") from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            self._client = None
            raise RuntimeUnavailable(UNREACHABLE) from exc
