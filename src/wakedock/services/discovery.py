"""Discovery (S6.4): a container labelled `wakedock.enable=true` configures itself with labels.

    wakedock.name           service name (default: the container name, made a DNS label)
    wakedock.display_name   name shown on loading pages
    wakedock.host           extra host names, comma-separated
    wakedock.port           the container port WakeDock's proxy reaches
    wakedock.readiness      http:<port>[/path] | tcp:<port> | healthcheck
    wakedock.idle_timeout   seconds (or 30s, 15m, 2h)
    wakedock.wake_timeout   seconds (or 30s, 2m)
    wakedock.access         public | authenticated | roles:<role>[,<role>...]
    wakedock.stop_method    stop | pause
    wakedock.loading_page   default | dark (custom templates: services defined through WakeDock)

Labels are validated exactly like an API spec; a container with invalid labels is reported and
left alone, never half-configured.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from wakedock.runtime.base import DiscoveredWorkload
from wakedock.services.spec import ServiceSpec

PREFIX = "wakedock."
_DURATION = re.compile(r"^(?P<value>[0-9]{1,6})(?P<unit>[smh]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
_READINESS = re.compile(r"^(?P<type>http|tcp):(?P<port>[0-9]{1,5})(?P<path>/\S*)?$")


class InvalidLabels(ValueError):
    """The labels do not describe a valid service; the message says which and why."""


def service_name(workload: DiscoveredWorkload) -> str:
    explicit = workload.labels.get(f"{PREFIX}name")
    if explicit is not None:
        return explicit
    cleaned = re.sub(r"[^a-z0-9-]+", "-", workload.name.lower().lstrip("/")).strip("-")
    return cleaned[:63].strip("-") or "unnamed"


def _seconds(label: str, value: str) -> int:
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise InvalidLabels(f"{label}: expected seconds such as 300, 30s, 15m or 2h")
    return int(match["value"]) * _UNITS[match["unit"]]


def _readiness(workload: DiscoveredWorkload, port: int | None) -> dict[str, Any]:
    label = workload.labels.get(f"{PREFIX}readiness")
    if label is None or label == "healthcheck":
        test = workload.healthcheck
        if test and test[0] in ("CMD", "CMD-SHELL") and len(test) >= 2:
            return {"type": "healthcheck", "test": list(test)}
        if label is None and port is not None:
            return {"type": "tcp", "port": port}
        raise InvalidLabels(
            f"{PREFIX}readiness: the container has no healthcheck; set http:<port>[/path] "
            "or tcp:<port>"
        )
    match = _READINESS.fullmatch(label)
    if match is None:
        raise InvalidLabels(
            f"{PREFIX}readiness: expected http:<port>[/path], tcp:<port> or healthcheck"
        )
    probe: dict[str, Any] = {"type": match["type"], "port": int(match["port"])}
    if match["type"] == "http":
        probe["path"] = match["path"] or "/"
    return probe


def _access(value: str) -> dict[str, Any]:
    if value in ("public", "authenticated"):
        return {"policy": value}
    if value.startswith("roles:"):
        return {"policy": "roles", "roles": [r.strip() for r in value[6:].split(",") if r.strip()]}
    raise InvalidLabels(f"{PREFIX}access: expected public, authenticated or roles:<role>,...")


def spec_from_labels(workload: DiscoveredWorkload) -> ServiceSpec:
    """The ServiceSpec a labelled container describes; InvalidLabels naming the bad label."""
    labels = workload.labels
    raw: dict[str, Any] = {"name": service_name(workload), "image": workload.image}
    port: int | None = None
    if (value := labels.get(f"{PREFIX}port")) is not None:
        if not value.isdigit():
            raise InvalidLabels(f"{PREFIX}port: expected a port number")
        port = int(value)
        raw["ports"] = [{"container_port": port}]
    raw["readiness"] = _readiness(workload, port)
    if (value := labels.get(f"{PREFIX}display_name")) is not None:
        raw["display_name"] = value
    if (value := labels.get(f"{PREFIX}host")) is not None:
        raw["hosts"] = [h.strip() for h in value.split(",") if h.strip()]
    if (value := labels.get(f"{PREFIX}idle_timeout")) is not None:
        raw["idle_timeout_s"] = _seconds(f"{PREFIX}idle_timeout", value)
    if (value := labels.get(f"{PREFIX}wake_timeout")) is not None:
        raw["wake_timeout_s"] = _seconds(f"{PREFIX}wake_timeout", value)
    if (value := labels.get(f"{PREFIX}access")) is not None:
        raw["access"] = _access(value)
    if (value := labels.get(f"{PREFIX}stop_method")) is not None:
        raw["stop_method"] = value
    if (value := labels.get(f"{PREFIX}loading_page")) is not None:
        if value not in ("default", "dark"):
            raise InvalidLabels(f"{PREFIX}loading_page: expected default or dark")
        raw["loading_page"] = {"theme": value}
    try:
        return ServiceSpec.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise InvalidLabels(f"labels give an invalid {', '.join(fields)}") from None
