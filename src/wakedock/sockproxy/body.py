"""Read a create body as the engine will: Go's JSON decoder matches field names ignoring case.

`{"privileged": true}` sets HostConfig.Privileged in the engine, so every field name the checks
look at is folded to its canonical spelling here, and a later duplicate wins as it does in Go.
Go also folds two non-ASCII letters (the Kelvin sign to k, the long s to s): a body with any
non-ASCII field name is refused rather than guessed at.
"""

from __future__ import annotations

import json
from typing import Any

_CANONICAL = (
    "Args",
    "Binds",
    "CapAdd",
    "CapDrop",
    "CapabilityAdd",
    "CapabilityDrop",
    "Config",
    "ContainerSpec",
    "DNSConfig",
    "Devices",
    "EndpointSpec",
    "EndpointsConfig",
    "Env",
    "ForceUpdate",
    "Healthcheck",
    "HostConfig",
    "HostIp",
    "HostPort",
    "Image",
    "Init",
    "IpcMode",
    "Isolation",
    "Labels",
    "Memory",
    "MemorySwap",
    "Mode",
    "Mounts",
    "Name",
    "NanoCpus",
    "NetworkMode",
    "NetworkingConfig",
    "Networks",
    "NoNewPrivileges",
    "PathOnHost",
    "PidMode",
    "PidsLimit",
    "Placement",
    "PortBindings",
    "Ports",
    "Privileged",
    "Privileges",
    "ReadOnly",
    "ReadonlyRootfs",
    "Replicated",
    "Resources",
    "RestartPolicy",
    "RollbackConfig",
    "Runtime",
    "SecurityOpt",
    "Source",
    "StopGracePeriod",
    "StopSignal",
    "Target",
    "TaskTemplate",
    "Tmpfs",
    "Type",
    "UTSMode",
    "UpdateConfig",
    "VolumeOptions",
)
_BY_FOLDED = {name.lower(): name for name in _CANONICAL}


class UnreadableBody(ValueError):
    """Not JSON, or field names the engine could read otherwise than the checks."""


def _fold(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    folded: dict[str, Any] = {}
    for key, value in pairs:
        if not key.isascii():
            raise UnreadableBody("a field name is not ASCII")
        canonical = _BY_FOLDED.get(key.lower(), key)
        folded.pop(canonical, None)  # the later one wins, in Go's order
        folded[canonical] = value
    return folded


def parse_body(raw: bytes) -> Any:
    """The JSON body with the field names the checks read in their canonical spelling."""
    try:
        return json.loads(raw or b"null", object_pairs_hook=_fold)
    except UnreadableBody:
        raise
    except ValueError:
        raise UnreadableBody("not JSON") from None
