"""The engine's event stream, reduced to what discovery follows: which opted-in workload was
created, removed or renamed (a Swarm service also updated, its labels may have changed).

`open_changes` opens `GET /events` (blocking, no read timeout: the engine writes only when
something happens) and returns an `EngineEvents` (a `WorkloadChanges`) to iterate in one
thread and to `close()` from another. A lost connection ends the iteration: the caller reconnects.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from wakedock.runtime.base import WorkloadChange

log = logging.getLogger("wakedock.runtime")

# What changes a workload's discovered service: its existence, its name, its labels. Starts and
# stops are WakeDock's own operations (or read live by the status API): not followed.
# Podman's Docker-compatible API reports a removed container as `remove` where Docker says
# `destroy` (docs/podman.md): both are followed, or a deleted container's service would stay.
CONTAINER_ACTIONS = ("create", "destroy", "remove", "rename")
SERVICE_ACTIONS = ("create", "update", "remove")


class EngineEvents:
    """An open event stream; iterate it once, `close()` it from any thread."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[WorkloadChange]:
        try:
            for raw in self._stream:
                if not isinstance(raw, dict):
                    continue
                actor = raw.get("Actor") or {}
                ref = str(actor.get("ID") or raw.get("id") or "")
                action = str(raw.get("Action") or raw.get("status") or "")
                if ref:
                    yield WorkloadChange(ref=ref, action=action)
        except Exception as exc:  # noqa: BLE001 - any transport failure ends the stream
            # A cut connection surfaces as whichever urllib3/requests/socket error the read
            # was in: all mean "reconnect", which the caller does when the iteration ends.
            log.debug("the engine's event stream ended: %s", type(exc).__name__)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()


def open_changes(api: Any, kind: str, label: str | None) -> EngineEvents:
    """Open the event stream of `kind` ("container" or "service") workloads, only those
    carrying `label` (`key=value`) when given: a container event carries the container's
    labels, a service event does not (every service event is passed on, and looked up)."""
    actions = CONTAINER_ACTIONS if kind == "container" else SERVICE_ACTIONS
    filters: dict[str, list[str]] = {"type": [kind], "event": list(actions)}
    if label is not None:
        filters["label"] = [label]
    return EngineEvents(api.events(filters=filters, decode=True))
