"""docker.network: the user-defined network WakeDock shares with the containers it manages.

WakeDock in a container cannot reach a port published on the host's 127.0.0.1 (that address is
its own container's there). With `docker.network` set, the Engine runtime attaches each
container it creates to that network and reaches it by its container name, which Docker's
embedded DNS answers on user-defined networks only. `network_problem` says why a network the
engine describes cannot serve, checked at start-up (`wakedock serve`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wakedock.errors import InvalidInput

SETTING = "docker.network"
# Docker's drivers of the predefined `host` and `none` networks.
_NO_NETWORK_DRIVERS = frozenset({"host", "null"})


class NetworkUnusable(InvalidInput):
    """The network `docker.network` names is missing or cannot carry WakeDock's traffic."""

    code = "docker_network_unusable"


def missing(name: str) -> NetworkUnusable:
    return NetworkUnusable(
        f"{SETTING}: the Docker engine has no network named {name}; create it "
        f"(docker network create {name}), attach WakeDock's own container to it, or change "
        "the setting"
    )


def network_problem(attrs: Mapping[str, Any], name: str) -> str | None:
    """Why the network `attrs` (the engine's inspect) cannot be docker.network, or None."""
    options = attrs.get("Options") or {}
    if attrs.get("Name") != name:
        return "name the network by its name, not its id"
    if (
        attrs.get("Driver") in _NO_NETWORK_DRIVERS
        or options.get("com.docker.network.bridge.default_bridge") == "true"
    ):
        return (
            "it is not a user-defined network (Docker's default bridge has no name "
            "resolution; host and none have no network of their own)"
        )
    if attrs.get("Ingress"):
        return "it is the Swarm routing mesh (ingress), which containers cannot join"
    if attrs.get("Scope") == "swarm" and not attrs.get("Attachable"):
        return "it is an overlay network standalone containers cannot join (create it --attachable)"
    if options.get("com.docker.network.bridge.enable_icc") == "false":
        return "containers on it cannot reach each other (enable_icc is false)"
    return None


def unusable(attrs: Mapping[str, Any], name: str) -> NetworkUnusable | None:
    problem = network_problem(attrs, name)
    if problem is None:
        return None
    return NetworkUnusable(f"{SETTING}: the network {name} cannot be used: {problem}")


def endpoint_host(attrs: Mapping[str, Any], network: str) -> str | None:
    """The container's name, when it is attached to `network` with an address there (it runs):
    the name Docker's embedded DNS answers on that network. None when it is not on it."""
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    attached = networks.get(network)
    if not isinstance(attached, Mapping):
        return None
    if not (attached.get("IPAddress") or attached.get("GlobalIPv6Address")):
        return None
    name = str(attrs.get("Name") or "").lstrip("/")
    return name or None
