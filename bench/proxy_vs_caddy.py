"""Proxying an awake service: WakeDock's built-in proxy against Caddy's reverse_proxy, same
upstream, same certificate, same run, interleaved rounds (issue #14).

    PYTHONPATH=src .venv/bin/python bench/proxy_vs_caddy.py [--seconds 5] [--rounds 3]
        [--before-src /path/to/other/checkout/src]

The upstream is a real container (Caddy's static file server in a scratch image, serving a
1 KiB and a 100 KiB file), a WakeDock service woken once before measuring. Caddy runs on the
host with `reverse_proxy` to the container's published port and WakeDock's own certificate.
wrk (TLS 1.3, `Host: app.localhost`) drives 8 and 64 connections for each file, the targets
alternating in every round; medians over rounds, ratios WakeDock / Caddy from the same rounds.
`--before-src` adds a second WakeDock started from another source tree (e.g. main before the
lean upstream client), measured in the same rounds; `--workers N` adds one with
`server.workers: N` (and a Redis of its own for the attempt budgets), also in the same rounds.
Every request goes to 127.0.0.1; the container is on a user-defined network of its own, its
port published on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import docker
import yaml

from common import (
    HOST,
    Server,
    WrkResult,
    median,
    preamble,
    process_cpu_seconds,
    run_wrk,
    wakedock_command,
    wakedock_server,
)
from support.components import start_redis
from support.server import free_port, wait_port  # tests/ is on the path (common.py)
from support.workers import wait_workers

CADDY = Path(os.environ.get("CADDY", str(Path(sys.executable).parent / "caddy")))
FILES = {"1k": 1024, "100k": 100 * 1024}
SERVICE_HOST = "app.localhost"


def static_image(client: docker.DockerClient) -> str:
    """A scratch image: the Caddy binary serving /srv (the two files) on :8080."""
    binary = CADDY.read_bytes()
    tag = hashlib.sha256(binary).hexdigest()[:12]
    image = f"wakedock-bench/static:{tag}"
    try:
        client.images.get(image)
        return image
    except docker.errors.ImageNotFound:
        pass
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data, mode in [
            ("caddy", binary, 0o755),
            *((f"srv/{n}.bin", b"w" * size, 0o644) for n, size in FILES.items()),
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        for directory in ("tmp", "etc", "proc", "sys", "dev"):
            entry = tarfile.TarInfo(directory)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(entry)
    client.api.import_image_from_data(
        archive.getvalue(),
        repository="wakedock-bench/static",
        tag=tag,
        changes=[
            "ENV XDG_CONFIG_HOME=/tmp XDG_DATA_HOME=/tmp HOME=/tmp",
            'CMD ["/caddy", "file-server", "--listen", ":8080", "--root", "/srv"]',
        ],
    )
    return image


def service_spec(image: str, network: str) -> dict[str, object]:
    return {
        "name": "app",
        "image": image,
        "network_mode": network,
        "ports": [{"container_port": 8080}],
        "readiness": {"type": "http", "port": 8080, "path": "/1k.bin", "interval_s": 1},
        "access": {"policy": "public"},
        "idle_timeout_s": 86400,
        # Not the default half a core: the upstream must not be what limits both proxies.
        "limits": {"cpus": 2, "memory_mb": 256},
    }


@contextmanager
def wakedock(
    image: str,
    network: str,
    src: Path | None,
    *,
    https: bool,
    workers: int = 1,
    redis_url: str | None = None,
) -> Iterator[tuple[Server, str]]:
    """A WakeDock (from `src` if given) with the service awake; yields it and its installation."""
    installation = f"wd-bench-{secrets.token_hex(3)}"
    extra = {"WAKEDOCK_DOCKER__INSTALLATION": installation}
    if src is not None:
        extra["PYTHONPATH"] = str(src)
    if workers > 1 and redis_url is not None:
        extra["WAKEDOCK_SERVER__WORKERS"] = str(workers)
        extra["WAKEDOCK_RATE_LIMIT__STORAGE_URL"] = redis_url

    def add_service(data_dir: Path, env: dict[str, str]) -> None:
        spec = data_dir.parent / "app.yaml"
        spec.write_text(yaml.safe_dump(service_spec(image, network)))
        subprocess.run(wakedock_command("service", "add", str(spec)), env=env, check=True)

    try:
        # Several workers start one after the other on a busy machine: more patience.
        with wakedock_server(extra, add_service, https=https, ready_timeout=240) as server:
            if workers > 1:
                wait_workers(server, workers)
            wake(server)
            yield server, installation
    finally:
        client = docker.from_env()
        for container in client.containers.list(
            all=True, filters={"label": f"wakedock.managed={installation}"}
        ):
            container.remove(force=True)


def wake(server: Server) -> None:
    request = urllib.request.Request(
        f"{server.base_url}/1k.bin", headers={"Host": SERVICE_HOST, "Accept": "*/*"}
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            context = server.ssl_context() if server.https else None
            with urllib.request.urlopen(request, timeout=90, context=context) as r:
                if r.status == 200 and len(r.read()) == FILES["1k"]:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the service did not wake")


def published_port(installation: str) -> int:
    client = docker.from_env()
    [container] = client.containers.list(
        filters={"label": [f"wakedock.managed={installation}", "wakedock.service=app"]}
    )
    binding = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
    if binding["HostIp"] != HOST:
        raise RuntimeError(f"the upstream is published on {binding['HostIp']}, not {HOST}")
    return int(binding["HostPort"])


@contextmanager
def caddy(server: Server, upstream_port: int) -> Iterator[tuple[int, int]]:
    """Caddy on the host: reverse_proxy to the container; HTTPS with WakeDock's certificate
    when WakeDock serves HTTPS, plain HTTP when it does. Yields its port and process id."""
    if not CADDY.exists():
        raise SystemExit(f"no Caddy binary at {CADDY} (set CADDY=...)")
    root = Path(tempfile.mkdtemp(prefix="wd-bench-caddy-"))
    port = free_port()
    tls = server.data_dir / "tls"
    if server.https:
        site = f"https://{SERVICE_HOST}:{port}, https://{HOST}:{port}"
        tls_line = f"\ttls {tls / 'cert.pem'} {tls / 'key.pem'}\n"
    else:
        site, tls_line = f"http://:{port}", ""
    (root / "Caddyfile").write_text(
        "{\n\tadmin off\n\tauto_https disable_redirects\n\tpersist_config off\n"
        f"\tdefault_sni {SERVICE_HOST}\n\tlog {{\n\t\tlevel ERROR\n\t}}\n}}\n"
        f"{site} {{\n\tbind {HOST}\n{tls_line}"
        f"\treverse_proxy {HOST}:{upstream_port}\n}}\n"
    )
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(root),
        "XDG_DATA_HOME": str(root),
        "HOME": str(root),
    }
    log = open(root / "caddy.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(CADDY), "run", "--config", str(root / "Caddyfile"), "--adapter", "caddyfile"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    try:
        wait_port(port)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(10)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", default="8,64")
    parser.add_argument("--before-src", type=Path, help="a second WakeDock from this src/")
    parser.add_argument("--workers", type=int, default=1, help="also a WakeDock with N workers")
    parser.add_argument(
        "--http",
        action="store_true",
        help="both front doors on plain HTTP (wrk 4.1.0 counts no answer from WakeDock's TLS)",
    )
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    client = docker.from_env()
    image = static_image(client)
    network = client.networks.create(f"wd-bench-{secrets.token_hex(3)}-net", driver="bridge")
    try:
        with ExitStack() as stack:
            server, installation = stack.enter_context(
                wakedock(image, str(network.name), None, https=not args.http)
            )
            scheme = "http" if args.http else "https"
            targets = {"wakedock": (f"{scheme}://{HOST}:{server.port}", server.process.pid)}
            if args.before_src is not None:
                before, _ = stack.enter_context(
                    wakedock(
                        image, str(network.name), args.before_src.resolve(), https=not args.http
                    )
                )
                targets["before"] = (f"{scheme}://{HOST}:{before.port}", before.process.pid)
            if args.workers > 1:
                redis = start_redis()
                stack.callback(redis.stop)
                several, _ = stack.enter_context(
                    wakedock(
                        image,
                        str(network.name),
                        None,
                        https=not args.http,
                        workers=args.workers,
                        redis_url=redis.url,
                    )
                )
                targets[f"workers={args.workers}"] = (
                    f"{scheme}://{HOST}:{several.port}",
                    several.process.pid,
                )
            caddy_port, caddy_pid = stack.enter_context(caddy(server, published_port(installation)))
            targets["caddy"] = (f"{scheme}://{HOST}:{caddy_port}", caddy_pid)
            measure(targets, connections, args)
    finally:
        network.remove()


def measure(
    targets: dict[str, tuple[str, int]], connections: list[int], args: argparse.Namespace
) -> None:
    """wrk on every target in turn, each round; `targets`: name -> (URL, process id). Besides
    wrk's figures, the CPU time the target's process used per request (from /proc): unlike
    requests/s it hardly moves when other jobs share the machine."""
    preamble()
    print(
        f"wrk -t{args.threads} -d{args.seconds}s --latency -H 'Host: {SERVICE_HOST}', "
        f"{args.rounds} interleaved rounds, medians; targets: {', '.join(targets)} "
        f"({next(iter(targets.values()))[0].split(':')[0]})\n",
        flush=True,
    )
    cases = [(name, c) for name in FILES for c in connections]
    results: dict[tuple[str, int, str], list[WrkResult]] = {}
    cpu_ms: dict[tuple[str, int, str], list[float]] = {}
    names = list(targets)
    for round_number in range(args.rounds):
        for name, conns in cases:
            order = names if round_number % 2 == 0 else names[::-1]
            for target in order:
                url, pid = targets[target]
                cpu_before = process_cpu_seconds(pid)
                result = run_wrk(
                    f"{url}/{name}.bin",
                    threads=min(args.threads, conns),
                    connections=conns,
                    seconds=args.seconds,
                    headers={"Host": SERVICE_HOST},
                )
                per_request = 1000 * (process_cpu_seconds(pid) - cpu_before) / result.requests
                results.setdefault((name, conns, target), []).append(result)
                cpu_ms.setdefault((name, conns, target), []).append(per_request)
                print(
                    f"round {round_number + 1} {name:>4} c={conns:<3} {target:<10} "
                    f"{result.rps:9.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms  timeouts {result.timeouts}  "
                    f"CPU {per_request:.3f} ms/request",
                    flush=True,
                )
    print("\nmedians")
    header = f"{'file':>5} {'conns':>5} {'target':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
    print(
        header + f" {'timeouts':>8} {'req/s vs Caddy':>14} {'p99 vs Caddy':>12} {'CPU ms/req':>10}"
    )
    for name, conns in cases:
        caddy_rps = median([r.rps for r in results[(name, conns, "caddy")]])
        caddy_p99 = median([r.p99_ms for r in results[(name, conns, "caddy")]])
        for target in names:
            runs = results[(name, conns, target)]
            rps, p99 = median([r.rps for r in runs]), median([r.p99_ms for r in runs])
            p50 = median([r.p50_ms for r in runs])
            lost = sum(r.timeouts for r in runs)
            cpu = median(cpu_ms[(name, conns, target)])
            print(
                f"{name:>5} {conns:>5} {target:<10} {rps:9.0f} {p50:8.2f} {p99:8.2f} "
                f"{lost:>8} {rps / caddy_rps:>14.2f} {p99 / caddy_p99:>12.2f} {cpu:>10.3f}"
            )


if __name__ == "__main__":
    main()
