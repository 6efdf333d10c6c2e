"""How WakeDock recognises its own workloads, on the Engine and on Swarm alike.

A workload is this installation's when it carries `wakedock.managed=<installation>` (WakeDock
created it) or `wakedock.enable=true` (its owner opted in). Every other workload is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping

MANAGED_LABEL = "wakedock.managed"
SERVICE_LABEL = "wakedock.service"
OPT_IN_LABEL = "wakedock.enable"


def is_managed(labels: Mapping[str, str], installation: str) -> bool:
    """Created by this WakeDock installation, or explicitly opted in by its owner."""
    return labels.get(MANAGED_LABEL) == installation or labels.get(OPT_IN_LABEL) == "true"


def is_opted_in(labels: Mapping[str, str]) -> bool:
    """Labelled `wakedock.enable=true` by its owner (what discovery lists)."""
    return labels.get(OPT_IN_LABEL) == "true"


def managed_labels(installation: str, service: str) -> dict[str, str]:
    """The labels WakeDock puts on what it creates for `service`."""
    return {MANAGED_LABEL: installation, SERVICE_LABEL: service}


def created_for(labels: Mapping[str, str], installation: str, service: str) -> bool:
    """Created by this installation for `service` (an opted-in workload is not)."""
    return labels.get(SERVICE_LABEL) == service and labels.get(MANAGED_LABEL) == installation
