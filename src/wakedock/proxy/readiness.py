"""Is a waking service ready? Its readiness probe, asked directly (S7.4): "running" is not ready."""

from __future__ import annotations

import asyncio

import httpx

from wakedock.services.spec import HealthcheckProbe, HttpProbe, ServiceSpec, TcpProbe


def probe_port(spec: ServiceSpec) -> int | None:
    """The port WakeDock probes itself, or None to rely on the Docker healthcheck."""
    probe = spec.readiness
    published = {p.container_port for p in spec.ports if p.protocol == "tcp"}
    if isinstance(probe, HttpProbe | TcpProbe) and probe.port in published:
        return probe.port
    return None


def upstream_port(spec: ServiceSpec) -> int | None:
    """The container port the proxy forwards to: the HTTP probe's, else the first published."""
    probe = spec.readiness
    if isinstance(probe, HttpProbe):
        return probe.port
    tcp = [p.container_port for p in spec.ports if p.protocol == "tcp"]
    if tcp:
        return tcp[0]
    return probe.port if isinstance(probe, TcpProbe) else None


async def probe_once(client: httpx.AsyncClient, spec: ServiceSpec, host: str, port: int) -> bool:
    """One attempt of the spec's HTTP or TCP probe against host:port."""
    probe = spec.readiness
    timeout = float(probe.timeout_s)
    if isinstance(probe, HttpProbe):
        try:
            reply = await client.get(f"http://{host}:{port}{probe.path}", timeout=timeout)
        except httpx.HTTPError:
            return False
        return 200 <= reply.status_code < 400
    if isinstance(probe, TcpProbe):
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True
    if isinstance(probe, HealthcheckProbe):  # pragma: no cover - probe_port() excludes it
        raise ValueError("a Docker healthcheck is read from the engine, not probed")
    raise ValueError(f"unknown probe {type(probe).__name__}")  # pragma: no cover
