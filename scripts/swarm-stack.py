#!/usr/bin/env python3
"""Render the production stack (deploy/compose.yaml, written for docker-compose) for
`docker stack deploy`, with the Swarm override (deploy/compose.swarm.yaml) on top (docs/swarm.md).

What Swarm reads differently, translated here:
- `mem_limit`, `cpus`, `pids_limit` -> `deploy.resources.limits` (memory, cpus, pids);
  `restart: on-failure:N` -> `deploy.restart_policy`;
- `tmpfs:` (a container key Swarm ignores) -> `type: tmpfs` mounts with their size (a Swarm
  tmpfs is nosuid,nodev,noexec, root's, with the mode of the image's directory: the CLI passes
  no uid, gid or mode, so a directory a non-root user must write needs a volume instead, as
  deploy/compose.swarm.yaml does); `shm_size` -> a tmpfs on /dev/shm;
- `group_add: [G]` with `user: U:_` -> `user: U:G` (a Swarm service has no supplementary groups);
- short-syntax `secrets:` -> long syntax owned by the service's user, mode 0400 (docker-compose
  bind-mounts the files, whose owners scripts/stack-secrets.sh sets; Swarm has no owner but this);
- a read-only bind of a relative file (`./postgres/pg_hba.conf:...:ro`) -> a Swarm config (a bind
  needs the file on every node);
- `${VAR:?message}` with a `-` in the message -> a message without (the CLI misreads it);
- `ports: ADDR:PUBLISHED:TARGET` -> `mode: host` (Swarm cannot bind one address: see the warning);
- every network an overlay; every service `endpoint_mode: dnsrr` unless the override says
  otherwise (the virtual IP needs the engine's iptables rules);
- dropped, with a warning on stderr: `security_opt` (Swarm ignores it; no-new-privileges needs
  API 1.44), `depends_on` (Swarm starts everything at once: restart policies do the waiting),
  `container_name`, `group_add` once folded.
Relative file paths are made absolute (from the compose file's directory), so the output can be
deployed from anywhere: `scripts/swarm-stack.py | docker stack deploy -c - wakedock`.

The overrides are merged first, in order: mappings key by key (a `null` removes the key),
anything else replaced. Usage:
    python scripts/swarm-stack.py [--compose deploy/compose.yaml]
        [--override deploy/compose.swarm.yaml [--override more.yaml ...]] [-o OUTPUT]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OVERRIDE = ROOT / "deploy" / "compose.swarm.yaml"
_SIZE = re.compile(r"^(\d+)([kmg]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# Service keys `docker stack deploy` ignores or refuses, and why (printed when dropped).
_DROPPED = {
    "security_opt": "Swarm ignores it (no-new-privileges: ContainerSpec.Privileges, API 1.44)",
    "depends_on": "Swarm starts every service at once; restart policies do the waiting",
    "container_name": "Swarm names the tasks",
    "restart": "translated to deploy.restart_policy",
}


def merged(base: Any, override: Any) -> Any:
    """`override` on top of `base`: mappings key by key (None removes), the rest replaced."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    result = dict(base)
    for key, value in override.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


def size_bytes(text: str) -> int:
    found = _SIZE.match(str(text).strip())
    if found is None:
        raise ValueError(f"not a size: {text!r}")
    return int(found.group(1)) * _UNITS[found.group(2).lower()]


def _absolute(path: str, directory: Path) -> str:
    """A relative path made absolute from `directory`; inside `${VAR:-default}`, the default."""
    if "${" in path:
        return re.sub(r"(\$\{\w+:?-)\./", lambda m: f"{m.group(1)}{directory}/", path)
    return path if path.startswith("/") else str((directory / path).resolve())


def _restart_policy(restart: str) -> dict[str, Any]:
    condition, _, attempts = str(restart).partition(":")
    policy: dict[str, Any] = {
        "condition": {"always": "any", "unless-stopped": "any", "no": "none"}.get(
            condition, condition
        )
    }
    if attempts:
        policy["max_attempts"] = int(attempts)
    return policy


def _tmpfs(entry: str) -> dict[str, Any]:
    target, _, options = entry.partition(":")
    mount: dict[str, Any] = {"type": "tmpfs", "target": target}
    for option in options.split(","):
        key, _, value = option.partition("=")
        if key == "size":
            mount["tmpfs"] = {"size": size_bytes(value)}
    return mount


def _port(entry: Any, warn: list[str], name: str) -> Any:
    if not isinstance(entry, str):
        return entry
    # Colons inside ${VAR:-default} are not separators.
    parts = re.findall(r"(?:\$\{[^}]*\}|[^:])+", entry)
    target, _, protocol = parts[-1].partition("/")
    published = parts[-2] if len(parts) >= 2 else target
    if len(parts) == 3:
        warn.append(
            f"{name}: port {entry}: Swarm cannot bind an address ({parts[0]}); "
            f"{published} is published on every interface of the node running the task"
        )
    return {
        "target": int(target),
        "published": published if "${" in published else int(published),
        "protocol": protocol or "tcp",
        "mode": "host",
    }


def _owner(user: Any) -> tuple[str, str] | None:
    uid, _, gid = str(user or "").partition(":")
    return (uid, gid or uid) if uid.isdigit() else None


def _required(value: Any) -> Any:
    """`${VAR:?message}` with a message the Docker CLI reads (CLI 28 cuts the value at a `-` in
    the message: `${IMAGE:?see build-image.sh}` became the image `image.sh}`)."""
    if isinstance(value, dict):
        return {key: _required(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_required(item) for item in value]
    if isinstance(value, str) and ":?" in value:
        return re.sub(
            r"\$\{(\w+):\?[^}]*-[^}]*\}",
            lambda m: f"${{{m.group(1)}:?{m.group(1)} is required (docs/swarm.md)}}",
            value,
        )
    return value


def service(
    name: str, spec: dict[str, Any], directory: Path, configs: dict[str, Any], warn: list[str]
) -> dict[str, Any]:
    """One service of the compose file, as `docker stack deploy` reads it."""
    spec = dict(spec)
    deploy = dict(spec.pop("deploy", None) or {})
    deploy.setdefault("endpoint_mode", "dnsrr")
    limits = dict((deploy.get("resources") or {}).get("limits") or {})
    for key, field in (("mem_limit", "memory"), ("cpus", "cpus"), ("pids_limit", "pids")):
        if key in spec:
            value = spec.pop(key)
            limits.setdefault(field, str(value) if field == "cpus" else value)
    if limits:
        deploy["resources"] = {**(deploy.get("resources") or {}), "limits": limits}
    if "restart" in spec:
        deploy.setdefault("restart_policy", _restart_policy(spec["restart"]))
    groups = spec.pop("group_add", None) or []
    if groups:
        uid = str(spec.get("user", "")).partition(":")[0]
        if len(groups) != 1 or not uid:
            raise ValueError(f"{name}: group_add needs one group and a user")
        spec["user"] = f"{uid}:{groups[0]}"
    volumes: list[Any] = []
    for volume in spec.pop("volumes", None) or []:
        source, _, rest = volume.partition(":") if isinstance(volume, str) else ("", "", "")
        target, _, mode = rest.partition(":")
        if source.startswith(".") and "ro" in mode.split(","):
            config = f"{name}_{Path(source).name}".replace(".", "_")
            configs[config] = {"file": _absolute(source, directory)}
            spec.setdefault("configs", []).append({"source": config, "target": target})
        elif source.startswith("."):
            volumes.append(f"{_absolute(source, directory)}:{rest}")
        else:
            volumes.append(volume)
    volumes += [_tmpfs(entry) for entry in spec.pop("tmpfs", None) or []]
    if "shm_size" in spec:
        shm = size_bytes(spec.pop("shm_size"))
        # The container's own /dev/shm, sized as docker-compose sizes it.
        volumes.append({"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": shm}})  # noqa: S108
    if volumes:
        spec["volumes"] = volumes
    owner = _owner(spec.get("user"))
    secrets: list[Any] = []
    for secret in spec.get("secrets") or []:
        if isinstance(secret, str) and owner is not None:
            secret = {"source": secret, "uid": owner[0], "gid": owner[1], "mode": 0o400}
        secrets.append(secret)
    if secrets:
        spec["secrets"] = secrets
    if "ports" in spec:
        spec["ports"] = [_port(entry, warn, name) for entry in spec["ports"]]
    for key, why in _DROPPED.items():
        if spec.pop(key, None) is not None and key != "restart":
            warn.append(f"{name}: {key} dropped: {why}")
    spec["deploy"] = deploy
    return spec


def render(compose: Path, overrides: list[Path]) -> tuple[dict[str, Any], list[str]]:
    """The stack file for `docker stack deploy`, and the warnings about what changed."""
    document = yaml.safe_load(compose.read_text())
    for override in overrides:
        document = merged(document, yaml.safe_load(override.read_text()) or {})
    directory = compose.resolve().parent
    warn: list[str] = []
    configs: dict[str, Any] = dict(document.get("configs") or {})
    services = {
        name: service(name, spec, directory, configs, warn)
        for name, spec in (document.get("services") or {}).items()
    }
    stack: dict[str, Any] = {"services": _required(services)}
    networks = {
        name: {**(spec or {}), "driver": (spec or {}).get("driver", "overlay")}
        for name, spec in (document.get("networks") or {}).items()
    }
    if networks:
        stack["networks"] = networks
    if document.get("volumes"):
        stack["volumes"] = document["volumes"]
    secrets = {
        name: {**spec, "file": _absolute(spec["file"], directory)} if "file" in spec else spec
        for name, spec in (document.get("secrets") or {}).items()
    }
    if secrets:
        stack["secrets"] = secrets
    if configs:
        stack["configs"] = {
            name: {**spec, "file": _absolute(spec["file"], directory)} if "file" in spec else spec
            for name, spec in configs.items()
        }
    return stack, warn


class _Dumper(yaml.SafeDumper):
    """No anchors or aliases in the output: each service reads whole."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compose", type=Path, default=ROOT / "deploy" / "compose.yaml")
    parser.add_argument(
        "--override",
        type=Path,
        action="append",
        help="merged in order (default: deploy/compose.swarm.yaml); repeat for more",
    )
    parser.add_argument("--no-override", action="store_true")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    overrides = [] if args.no_override else args.override or [DEFAULT_OVERRIDE]
    stack, warn = render(args.compose, overrides)
    sources = " + ".join(path.name for path in [args.compose, *overrides])
    header = f"# Rendered by scripts/swarm-stack.py from {sources}: edit those, not this.\n"
    text = header + yaml.dump(stack, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    for line in warn:
        print(f"swarm-stack: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
