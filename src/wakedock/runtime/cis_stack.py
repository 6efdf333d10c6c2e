"""What `wakedock cis-check` reads from the engine beyond managed services: an image (section 4)
and the containers of WakeDock's own stack (section 5).

A stack is the containers labelled by Compose (`com.docker.compose.project`) or by
`docker stack deploy` (`com.docker.stack.namespace`) with one project name: WakeDock, its
database, cache, edge and socket proxy. They get the same section 5 checks as managed services,
with one documented exception: the socket proxy, labelled `wakedock.role=socket-proxy`, is the one
container that may mount the Docker socket, read-only. For it 5.32 is INFO with that reason; any
other container mounting the socket, or the proxy mounting it writable, FAILs 5.32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

import docker

from wakedock.runtime.cis import CheckResult, check_container
from wakedock.runtime.cis_images import Finding, ImageFacts, Verdict

STACK_LABELS = ("com.docker.compose.project", "com.docker.stack.namespace")
ROLE_LABEL = "wakedock.role"
SOCKET_PROXY_ROLE = "socket-proxy"
SOCKET_CHECK = "5.32"


class _EngineApi(Protocol):
    """The slice of docker-py's low-level client used here (its stubs leave these untyped)."""

    def inspect_image(self, image: str) -> dict[str, Any]: ...
    def history(self, image: str) -> list[dict[str, Any]]: ...
    def containers(self, *, all: bool, filters: Mapping[str, Any]) -> list[dict[str, Any]]: ...
    def inspect_container(self, container: str) -> dict[str, Any]: ...


def image_facts(client: docker.DockerClient, name: str) -> ImageFacts:
    """An image's `Config` and its history's `CreatedBy` lines, oldest first."""
    api = cast(_EngineApi, client.api)
    attrs = api.inspect_image(name)
    history = api.history(name)
    created = tuple(str(entry.get("CreatedBy") or "") for entry in reversed(history))
    return ImageFacts(name, attrs.get("Config") or {}, created)


def stack_containers(client: docker.DockerClient, project: str) -> list[dict[str, Any]]:
    """`docker inspect` of every container (running or not) of the named Compose project or
    Swarm stack, by name."""
    api = cast(_EngineApi, client.api)
    ids: set[str] = set()
    for label in STACK_LABELS:
        found = api.containers(all=True, filters={"label": f"{label}={project}"})
        ids.update(str(c["Id"]) for c in found)
    attrs = [api.inspect_container(container_id) for container_id in ids]
    return sorted(attrs, key=lambda a: str(a.get("Name", "")))


def _socket_mounts(attrs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in attrs.get("Mounts") or [] if "docker.sock" in str(m.get("Source"))]


def is_socket_proxy(attrs: Mapping[str, Any]) -> bool:
    """The container says it is the stack's socket proxy."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return labels.get(ROLE_LABEL) == SOCKET_PROXY_ROLE


def _finding(result: CheckResult) -> Finding:
    verdict = Verdict.PASS if result.passed else Verdict.WARN if result.advisory else Verdict.FAIL
    return Finding(result.id, result.title, verdict, result.detail)


def _socket_exception(attrs: Mapping[str, Any], finding: Finding) -> Finding:
    if finding.id != SOCKET_CHECK or finding.verdict is not Verdict.FAIL:
        return finding
    if not is_socket_proxy(attrs):
        return finding
    writable = [str(m.get("Destination")) for m in _socket_mounts(attrs) if m.get("RW", True)]
    if writable:
        reason = f"the socket proxy mounts the Docker socket writable at {', '.join(writable)}"
        return Finding(finding.id, finding.title, Verdict.FAIL, reason)
    reason = (
        "accepted exception: the socket proxy is the one container allowed the Docker socket, "
        "read-only; it filters every request before the engine sees it"
    )
    return Finding(finding.id, finding.title, Verdict.INFO, reason)


def check_stack_container(attrs: Mapping[str, Any]) -> list[Finding]:
    """Section 5 (and the advisories) for one container of WakeDock's own stack."""
    return [_socket_exception(attrs, _finding(result)) for result in check_container(attrs)]


def check_stack(containers: list[dict[str, Any]]) -> list[tuple[str, list[Finding]]]:
    """Each stack container's name and findings. Only one socket proxy is accepted: a second
    container claiming the role with the socket mounted FAILs 5.32 (the label is not proof)."""
    checked = []
    proxies = 0
    for attrs in containers:
        findings = check_stack_container(attrs)
        if any(f.id == SOCKET_CHECK and f.verdict is Verdict.INFO for f in findings):
            proxies += 1
            if proxies > 1:
                reason = "a second container claims to be the socket proxy and mounts the socket"
                findings = [
                    Finding(f.id, f.title, Verdict.FAIL, reason) if f.id == SOCKET_CHECK else f
                    for f in findings
                ]
        checked.append((str(attrs.get("Name", "")).lstrip("/"), findings))
    return checked


def check_managed_container(attrs: Mapping[str, Any]) -> list[Finding]:
    """Section 5 for a managed service's container: no exception, the socket always FAILs."""
    return [_finding(result) for result in check_container(attrs)]
