"""The edge's cost: nginx + ModSecurity + OWASP CRS (paranoia level 2) in front of an awake
service, with and without WakeDock behind it; same upstream, same certificate, same run,
interleaved rounds (issue #14, part 2).

    PYTHONPATH=src .venv/bin/python bench/edge.py [--seconds 5] [--rounds 3]

Targets, each answering the same 1 KiB file of the same container (Caddy's static file server
in a scratch image, as bench/proxy_vs_caddy.py):

- `baseline`: nginx + ModSecurity + the CRS, the edge's own rendered configuration
  (`render_edge`: same nginx settings, same ModSecurity and CRS files) with its upstream pointed
  straight at the container's published port: what the WAF costs with no WakeDock at all.
- `baseline-cookie`: the same baseline sent the same Cookie header as `edge-protected` (WakeDock's
  service host cookie, a signed token of about 400 characters): what the CRS costs on that
  request alone, with no WakeDock and no access check.
- `nginx-no-waf`: the same with `modsecurity off`: nginx, TLS and the proxy hop alone.
- `edge-public`: `wakedock edge run` in front of `wakedock serve`, a public service.
- `edge-protected`: the same edge, a service for signed-in users, with a valid proxy cookie.
- `wakedock`: `wakedock serve` alone, the public service (no edge): how much is WakeDock's.

While every location of the edge proxies to WakeDock (before nginx routes awake services to
their upstream itself), `edge-*` is nginx, then WakeDock, then the container. wrk (TLS 1.3)
drives 8 and 64 connections; medians over rounds, ratios against the baseline from the same
rounds. Every request goes to 127.0.0.1; the container is on a user-defined network of its own,
its port published on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import docker
import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import (
    HOST,
    Server,
    WrkResult,
    code_line,
    machine_line,
    median,
    process_cpu_seconds,
    quiet_check,
    run_wrk,
    strong_password,
    wakedock_command,
)
from proxy_vs_caddy import FILES, published_port, service_spec, static_image
from support.edge import TRUSTED, edge_in_front
from support.server import free_port, serve, wait_port
from wakedock.config import Settings
from wakedock.edge.render import CONF_NAME, EdgeOptions, render_edge, write_edge
from wakedock.edge.upkeep import children

# A target: its port, the headers each request carries, the pids whose CPU it costs.
Target = tuple[int, dict[str, str], Callable[[], list[int]]]

PUBLIC_HOST = "app.localhost"
PROTECTED_HOST = "vault.localhost"
USER = "bench"


@contextmanager
def wakedock(
    image: str, network: str, *, direct: bool
) -> Iterator[tuple[Server, str, dict[str, str]]]:
    """WakeDock with a public service `app` and a signed-in-users one `vault`, both awake;
    yields it, its installation and the cookie that opens `vault`."""
    installation = f"wd-bench-{secrets.token_hex(3)}"
    root = Path(tempfile.mkdtemp(prefix="wd-bench-edge-"))
    data_dir = root / "data"
    # Production defaults, plus the edge as a trusted proxy (docs/edge.md).
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAKEDOCK_")}
    env |= {"WAKEDOCK_DATA_DIR": str(data_dir), "WAKEDOCK_DOCKER__INSTALLATION": installation}
    env |= TRUSTED
    # nginx proxies the awake services itself (docs/edge.md), or every request goes to WakeDock.
    env["WAKEDOCK_EDGE__DIRECT_ROUTES"] = "true" if direct else "false"
    public = service_spec(image, network)
    protected = {**public, "name": "vault", "access": {"policy": "authenticated"}}
    password = strong_password()
    try:
        for spec in (public, protected):
            path = root / f"{spec['name']}.yaml"
            path.write_text(yaml.safe_dump(spec))
            subprocess.run(wakedock_command("service", "add", str(path)), env=env, check=True)
        subprocess.run(
            wakedock_command("user", "create", USER, "--role", "viewer", "--password-stdin"),
            input=password + "\n",
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
        with serve(data_dir, env, host=HOST, log_path=root / "server.log") as server:
            cookie = proxy_cookie(server, password)
            wake(server, {"Host": PUBLIC_HOST})
            wake(server, {"Host": PROTECTED_HOST, **cookie})
            yield server, installation, cookie
    finally:
        client = docker.from_env()
        for container in client.containers.list(
            all=True, filters={"label": f"wakedock.managed={installation}"}
        ):
            container.remove(force=True)
        shutil.rmtree(root, ignore_errors=True)


def proxy_cookie(server: Server, password: str) -> dict[str, str]:
    """What a browser holds after signing in for `vault`: a cookie sign-in on the admin host,
    the hand-off's ticket, redeemed on the service host for its own cookie."""
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=60) as http:
        signed_in = http.post(
            "/api/v1/auth/login", json={"username": USER, "password": password, "mode": "cookie"}
        )
        signed_in.raise_for_status()
        handoff = http.get("/auth/proxy", params={"next": f"https://{PROTECTED_HOST}/"})
        ticket_url = urlsplit(handoff.headers["location"])
        if ticket_url.hostname != PROTECTED_HOST:
            raise RuntimeError(f"unexpected hand-off: {handoff.status_code} {ticket_url}")
        redeemed = http.get(
            f"{ticket_url.path}?{ticket_url.query}", headers={"Host": PROTECTED_HOST}
        )
        set_cookie = redeemed.headers.get("set-cookie", "")
        if redeemed.status_code != 303 or not set_cookie:
            raise RuntimeError(f"the ticket was not redeemed: {redeemed.status_code}")
        return {"Cookie": set_cookie.split(";", 1)[0]}


def wake(server: Server, headers: dict[str, str]) -> None:
    request = urllib.request.Request(
        f"{server.base_url}/1k.bin", headers={"Accept": "*/*", **headers}
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=90, context=server.ssl_context()) as r:
                if r.status == 200 and len(r.read()) == FILES["1k"]:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the service of {headers['Host']} did not wake")


@contextmanager
def baseline(server: Server, upstream_port: int, *, waf: bool = True) -> Iterator[tuple[int, int]]:
    """The edge's configuration, rendered for a "WakeDock" at the container's address over
    plain HTTP (the container speaks HTTP): nginx + ModSecurity + CRS straight to it. Without
    `waf`, the same with `modsecurity off`: what nginx and TLS cost alone."""
    root = Path(tempfile.mkdtemp(prefix="wd-bench-baseline-"))
    port = free_port()
    tls = server.data_dir / "tls"
    settings = Settings(server={"host": HOST, "port": upstream_port}, data_dir=root)
    options = EdgeOptions(
        out_dir=root / "edge",
        cert=tls / "cert.pem",
        key=tls / "key.pem",
        wakedock_ca=tls / "cert.pem",
        listen=f"{HOST}:{port}",
        wakedock_http=True,
    )
    config = render_edge(settings, [], options)
    if not waf:
        files = dict(config.files)
        files[CONF_NAME] = files[CONF_NAME].replace("modsecurity on;", "modsecurity off;")
        config = replace(config, files=files)
    write_edge(config)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen(
        [nginx, "-p", str(options.out_dir), "-c", str(options.conf_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port, process.pid
    finally:
        process.terminate()  # nginx's fast shutdown
        process.wait(30)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(options.temp_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", default="8,64")
    parser.add_argument(
        "--through-wakedock",
        action="store_true",
        help="edge.direct_routes off: the edge sends every request to WakeDock",
    )
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    client = docker.from_env()
    image = static_image(client)
    network = client.networks.create(f"wd-bench-{secrets.token_hex(3)}-net", driver="bridge")
    try:
        with ExitStack() as stack:
            direct = not args.through_wakedock
            server, installation, cookie = stack.enter_context(
                wakedock(image, str(network.name), direct=direct)
            )
            edge = stack.enter_context(edge_in_front(server.data_dir, server, server.env))
            if direct:
                wait_direct_routes(server.data_dir / "edge" / CONF_NAME, ("app", "vault"))
            upstream = published_port(installation)
            base, base_pid = stack.enter_context(baseline(server, upstream))
            plain, plain_pid = stack.enter_context(baseline(server, upstream, waf=False))
            # Whose CPU a target's requests cost: nginx (master and workers), WakeDock.
            wakedock_pid = server.process.pid

            def edge_pids() -> list[int]:
                return [wakedock_pid, *children(edge.process.pid)]

            targets: dict[str, Target] = {
                "baseline": (base, {"Host": PUBLIC_HOST}, lambda: [base_pid]),
                "baseline-cookie": (base, {"Host": PUBLIC_HOST, **cookie}, lambda: [base_pid]),
                "nginx-no-waf": (plain, {"Host": PUBLIC_HOST}, lambda: [plain_pid]),
                "edge-public": (edge.port, {"Host": PUBLIC_HOST}, edge_pids),
                "edge-protected": (edge.port, {"Host": PROTECTED_HOST, **cookie}, edge_pids),
                "wakedock": (server.port, {"Host": PUBLIC_HOST}, lambda: [wakedock_pid]),
            }
            measure(targets, connections, args)
    finally:
        network.remove()


def wait_direct_routes(conf: Path, services: tuple[str, ...], timeout: float = 60) -> None:
    """Until the edge's configuration proxies each service straight to its container."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = conf.read_text() if conf.exists() else ""
        if all(f"upstream edge_service_{name} " in text for name in services):
            print(f"direct routes rendered for {', '.join(services)}", flush=True)
            return
        time.sleep(0.5)
    raise SystemExit(f"the edge rendered no direct route for {services} in {timeout:g} s")


def measure(
    targets: dict[str, Target],
    connections: list[int],
    args: argparse.Namespace,
) -> None:
    print(code_line())
    print(machine_line())
    quiet_check()
    print(
        f"wrk -t{args.threads} -d{args.seconds}s --latency, 1 KiB answer, TLS 1.3, "
        f"{args.rounds} interleaved rounds, medians; targets: {', '.join(targets)}\n",
        flush=True,
    )
    results: dict[tuple[int, str], list[WrkResult]] = {}
    # CPU per request of the target's processes (a busy machine moves req/s far more).
    cpu: dict[tuple[int, str], list[float]] = {}
    names = list(targets)
    for round_number in range(args.rounds):
        for conns in connections:
            order = names if round_number % 2 == 0 else names[::-1]
            for target in order:
                port, headers, pids = targets[target]
                processes = pids()
                cpu_before = sum(process_cpu_seconds(pid) for pid in processes)
                result = run_wrk(
                    f"https://{HOST}:{port}/1k.bin",
                    threads=min(args.threads, conns),
                    connections=conns,
                    seconds=args.seconds,
                    headers=headers,
                )
                cpu_ms = (
                    1000
                    * (sum(process_cpu_seconds(pid) for pid in processes) - cpu_before)
                    / max(1, result.requests)
                )
                results.setdefault((conns, target), []).append(result)
                cpu.setdefault((conns, target), []).append(cpu_ms)
                print(
                    f"round {round_number + 1} c={conns:<3} {target:<15} "
                    f"{result.rps:9.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms  CPU {cpu_ms:5.2f} ms/req  "
                    f"timeouts {result.timeouts}",
                    flush=True,
                )
    print("\nmedians")
    print(
        f"{'conns':>5} {'target':<15} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'timeouts':>8} "
        f"{'req/s vs baseline':>17} {'p99 vs baseline':>15} {'CPU ms/req':>10} {'CPU vs base':>11}"
    )
    for conns in connections:
        base_rps = median([r.rps for r in results[(conns, "baseline")]])
        base_p99 = median([r.p99_ms for r in results[(conns, "baseline")]])
        base_cpu = median(cpu[(conns, "baseline")])
        for target in names:
            runs = results[(conns, target)]
            rps, p99 = median([r.rps for r in runs]), median([r.p99_ms for r in runs])
            p50 = median([r.p50_ms for r in runs])
            lost = sum(r.timeouts for r in runs)
            print(
                f"{conns:>5} {target:<15} {rps:9.0f} {p50:8.2f} {p99:8.2f} {lost:>8} "
                f"{rps / base_rps:>17.2f} {p99 / base_p99:>15.2f} "
                f"{median(cpu[(conns, target)]):>10.2f} "
                f"{median(cpu[(conns, target)]) / base_cpu:>11.2f}"
            )
    # The protected service against the same request through the stock rules (docstring).
    print()
    for conns in connections:
        cookie_rps = median([r.rps for r in results[(conns, "baseline-cookie")]])
        cookie_p99 = median([r.p99_ms for r in results[(conns, "baseline-cookie")]])
        runs = results[(conns, "edge-protected")]
        rps, p99 = median([r.rps for r in runs]), median([r.p99_ms for r in runs])
        cookie_cpu = median(cpu[(conns, "baseline-cookie")])
        protected_cpu = median(cpu[(conns, "edge-protected")])
        print(
            f"c={conns}: edge-protected vs baseline-cookie: req/s {rps / cookie_rps:.2f}x, "
            f"p99 {p99 / cookie_p99:.2f}x, CPU per request {protected_cpu / cookie_cpu:.2f}x"
        )


if __name__ == "__main__":
    main()
