"""Turn a Docker stats sample into `ContainerStats` as the docker CLI does (cgroup v1 and v2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wakedock.runtime.base import ContainerStats


def _cpu_percent(sample: Mapping[str, Any]) -> float:
    cpu = sample.get("cpu_stats") or {}
    pre = sample.get("precpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage", 0)
    pre_total = (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system = cpu.get("system_cpu_usage", 0)
    pre_system = pre.get("system_cpu_usage", 0)
    cpu_delta = total - pre_total
    system_delta = system - pre_system
    if cpu_delta <= 0 or system_delta <= 0:
        return 0.0
    # cgroup v2 has no per-CPU usage list; `online_cpus` is there on both.
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    return round(float(cpu_delta) / float(system_delta) * max(int(online), 1) * 100.0, 2)


def _memory_bytes(memory: Mapping[str, Any]) -> int:
    usage = int(memory.get("usage") or 0)
    details = memory.get("stats") or {}
    # Page cache the kernel can drop is not "used": cgroup v1 names it total_inactive_file,
    # cgroup v2 inactive_file (docker CLI's calculateMemUsageUnixNoCache).
    if "total_inactive_file" in details:
        cache = int(details["total_inactive_file"])
    else:
        cache = int(details.get("inactive_file") or 0)
    return usage - cache if cache < usage else usage


def stats_from_sample(sample: Mapping[str, Any]) -> ContainerStats:
    """The CPU %, memory and network totals of one `GET /containers/{id}/stats?stream=0` sample."""
    memory = sample.get("memory_stats") or {}
    networks = (sample.get("networks") or {}).values()
    return ContainerStats(
        cpu_percent=_cpu_percent(sample),
        memory_bytes=_memory_bytes(memory),
        memory_limit_bytes=int(memory.get("limit") or 0),
        network_rx_bytes=sum(int(n.get("rx_bytes") or 0) for n in networks),
        network_tx_bytes=sum(int(n.get("tx_bytes") or 0) for n in networks),
    )
